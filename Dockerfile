# The redis-maint sidecar image.
#
#   docker build -t redis-maint .                          # online: python:3.11-slim-bookworm, wheels built here
#   scripts/build-image.sh redis-maint:latest              # offline: a local Debian base, wheels from the host
#
# Stage 1 builds (or takes pre-built) wheels and installs them into /opt/venv; the final stage
# gets only that venv: no compiler, no pip, no build tools.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
COPY . /src
# build/wheelhouse (scripts/build-image.sh) holds every wheel when no registry is reachable from
# a build container; without it, pip builds the wheels here from the registry.
RUN set -eu; \
    python3 -m venv /opt/venv; \
    if ls /src/build/wheelhouse/*.whl >/dev/null 2>&1; then \
        wheels=/src/build/wheelhouse; \
    else \
        wheels=/wheels; /opt/venv/bin/pip wheel --no-cache-dir --wheel-dir "$wheels" /src; \
    fi; \
    /opt/venv/bin/pip install --no-cache-dir --no-index --find-links "$wheels" redis-maint; \
    /opt/venv/bin/pip uninstall --yes pip setuptools wheel >/dev/null 2>&1 || true; \
    /opt/venv/bin/redis-maint --help >/dev/null; \
    /opt/venv/bin/python -c "import tempfile; from redis_maint.history import db; db.engine_for('sqlite:///' + tempfile.mkdtemp() + '/h.db')"

FROM ${BASE_IMAGE}
# Redis's data files belong to gid 1000 in redis:7-alpine: our primary group reads them.
# The Docker socket's group differs per host: pass its gid as DOCKER_GID here or via compose `group_add`.
ARG UID=10001
ARG REDIS_GID=1000
ARG DOCKER_GID=999
# `backups restore --online` loads the restored dataset into a throwaway redis-server that the live
# Redis replicates from. Debian ships the server binary in redis-tools as redis-check-rdb: the name it
# is started under picks the mode. The offline base has redis-tools already (build-base-image.sh).
RUN set -eu; \
    if ! command -v redis-check-rdb >/dev/null; then \
        apt-get update -qq; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-tools >/dev/null; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    ln -sf "$(command -v redis-check-rdb)" /usr/local/bin/redis-server; \
    # redis-tools may have made a `redis` group of its own (another gid): ours is then `redis-data`.
    getent group "$REDIS_GID" >/dev/null \
        || groupadd --gid "$REDIS_GID" "$(getent group redis >/dev/null && echo redis-data || echo redis)"; \
    getent group "$DOCKER_GID" >/dev/null || groupadd --gid "$DOCKER_GID" docker; \
    useradd --uid "$UID" --gid "$REDIS_GID" --groups "$DOCKER_GID" --no-create-home \
        --home-dir /var/lib/redis-maint --shell /usr/sbin/nologin redis-maint; \
    mkdir -p /var/lib/redis-maint/check /data; \
    chown -R "$UID:$REDIS_GID" /var/lib/redis-maint
COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    REDIS_MAINT_HISTORY_URL=sqlite:////var/lib/redis-maint/history.db \
    REDIS_MAINT_DATA_DIR=/data \
    REDIS_MAINT_STATE_DIR=/var/lib/redis-maint \
    REDIS_MAINT_HTTP__BIND=0.0.0.0 \
    REDIS_MAINT_HTTP__PORT=9187

# Relative paths in the settings (./var/...) land in the history volume.
WORKDIR /var/lib/redis-maint
VOLUME /var/lib/redis-maint
USER ${UID}
EXPOSE 9187

# /healthz describes the sidecar (scheduler, history, stuck runs), not Redis. No curl needed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('REDIS_MAINT_HTTP__PORT', '9187'), timeout=4)"]

ENTRYPOINT ["redis-maint"]
CMD ["daemon"]
