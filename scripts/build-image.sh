#!/usr/bin/env bash
# Build the redis-maint image where no registry is reachable from a build container.
#
#   scripts/build-image.sh [TAG]          # TAG default: redis-maint:latest
#
# 1. the base: $BASE_IMAGE when set, else a local Debian 12 + Python image (build-base-image.sh);
# 2. the wheels, on the host: the project's wheel, then every dependency as a binary wheel for
#    the image's Python (3.11, manylinux), into build/wheelhouse (kept while pyproject is unchanged);
# 3. `docker build` with the legacy builder (Debian's docker.io has no buildx), which installs
#    them offline. Needs a running engine (scripts/ensure-dockerd.sh).
set -euo pipefail

TAG="${1:-redis-maint:latest}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
WHEELHOUSE="$ROOT/build/wheelhouse"
BUILD_VENV="$ROOT/build/wheel-venv"

say() { echo "build-image: $*" >&2; }

wheels_stamp() {
    # The wheelhouse is rebuilt when the dependencies or the project's code change.
    (cd "$ROOT" && cat pyproject.toml && find config jobs redis_maint scheduler.py -name '*.py' -o -name '*.toml' |
        sort | xargs sha256sum) | sha256sum | awk '{print $1}'
}

matching_pip() {
    # pip evaluates markers (python_full_version < "3.11.3") with the interpreter that runs it,
    # whatever --python-version says: use a Python of the image's exact version when there is one
    # (Debian's /usr/bin/python3 for the local bookworm base).
    local want=$1 py
    for py in /usr/bin/python3 "$ROOT/.venv/bin/python"; do
        if [ -x "$py" ] && [ "$("$py" -c 'import platform; print(platform.python_version())')" = "$want" ]; then
            if [ "$py" = /usr/bin/python3 ]; then
                [ -x "$BUILD_VENV/bin/pip" ] || /usr/bin/python3 -m venv "$BUILD_VENV"
                echo "$BUILD_VENV/bin/pip"
            else
                echo "$ROOT/.venv/bin/pip"
            fi
            return
        fi
    done
    say "warning: no Python $want on this host; dependency markers follow $("$ROOT/.venv/bin/python" -V)"
    echo "$ROOT/.venv/bin/pip"
}

build_wheels() {
    local base=$1 stamp arch py
    # Markers such as python_full_version < "3.11.3" need the image's exact Python version.
    py="$(docker run --rm --entrypoint python3 "$base" -c 'import platform; print(platform.python_version())')"
    stamp="$(wheels_stamp) $py"
    if [ -f "$WHEELHOUSE/.stamp" ] && [ "$(cat "$WHEELHOUSE/.stamp")" = "$stamp" ]; then
        say "wheelhouse is up to date"
        return
    fi
    arch="$(uname -m)"
    local pip
    pip="$(matching_pip "$py")"
    rm -rf "$WHEELHOUSE" && mkdir -p "$WHEELHOUSE"
    say "building the project wheel and fetching dependency wheels for CPython $py ($arch)"
    "$pip" wheel --quiet --no-deps --wheel-dir "$WHEELHOUSE" "$ROOT"
    "$pip" download --quiet --only-binary=:all: --dest "$WHEELHOUSE" \
        --python-version "$py" --implementation cp \
        --platform "manylinux_2_28_$arch" --platform "manylinux_2_17_$arch" --platform "manylinux2014_$arch" \
        "$WHEELHOUSE"/redis_maint-*.whl
    echo "$stamp" >"$WHEELHOUSE/.stamp"
}

main() {
    docker info >/dev/null 2>&1 || { say "no Docker engine answers; run scripts/ensure-dockerd.sh first"; exit 1; }
    local base="${BASE_IMAGE:-}"
    if [ -z "$base" ]; then
        base=redis-maint-base:bookworm
        bash "$HERE/build-base-image.sh" "$base"
    fi
    build_wheels "$base"
    say "docker build $TAG from $base"
    DOCKER_BUILDKIT=0 docker build --quiet --build-arg "BASE_IMAGE=$base" --tag "$TAG" "$ROOT" >/dev/null
    say "built $TAG ($(docker image inspect "$TAG" --format '{{.Size}}') bytes)"
}

main "$@"
