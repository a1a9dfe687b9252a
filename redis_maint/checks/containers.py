"""Throwaway containers through the Docker SDK: hardened, bound by a deadline, always removed.

A run is create -> start -> poll `wait()` against our own deadline (`wait(timeout)` is only a
request timeout) -> `kill()` on expiry or on the daemon's SIGTERM -> `logs()` -> `remove(force)`
in `finally`. No auto-remove: the logs could vanish before they are read. Every container is
labelled (`redis-maint.run-id`, `redis-maint.expires-at`) so leftovers of a killed process can
be found with `docker ps -a --filter label=redis-maint.managed` and are reaped by the next run.

The sidecar trap: bind-mount sources are resolved by the daemon on the host, not in this
process's filesystem. `plan_mount` maps the local directory to what the daemon can mount.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from redis_maint.errors import ContainerError, JobCancelledError

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

log = logging.getLogger("redis_maint.checks.containers")


class DockerOptions(Protocol):
    """What throwaway containers need to know (the [docker] settings have all of it)."""

    url: str
    pull_policy: str
    timeout: timedelta
    mem_limit: str
    pids_limit: int
    user: str
    snapshot_dir: str
    snapshot_host_dir: str
    snapshot_volume: str


@dataclass(frozen=True)
class CheckEnv:
    """The engine's options and the image that holds redis-check-aof/rdb and redis-server."""

    docker: DockerOptions
    image: str


LABEL_MANAGED = "redis-maint.managed"
LABEL_RUN = "redis-maint.run-id"
LABEL_PURPOSE = "redis-maint.purpose"
LABEL_EXPIRES = "redis-maint.expires-at"
POLL_S = 0.5
REAP_GRACE_S = 60  # past its own deadline plus this, a labelled container is a leftover
API_TIMEOUT_S = 60
BUILD_HINT = (
    "build it from Debian's redis-server with `scripts/build-check-image.sh {image}`, "
    "or `docker pull {image}` / `docker load` it on the engine's host, "
    "or point REDIS_MAINT_CHECK_IMAGE at an image the engine has"
)


@dataclass(frozen=True)
class MountPlan:
    """How a local directory reaches a container: what the daemon mounts, and where."""

    kind: str  # "bind" (a host path) or "volume" (a named volume)
    source: str
    target: str
    workdir: str  # the local directory's path inside the container


def plan_mount(local_dir: Path, docker: DockerOptions, target: str = "/check") -> MountPlan:
    """Map `local_dir` (as this process sees it) to a mount the Docker daemon can resolve.

    - no mapping configured: this process runs on the host, its paths are host paths;
    - `snapshot_host_dir`: this process sees the host's directory at `snapshot_dir`;
    - `snapshot_volume`: a named volume is mounted at `snapshot_dir` here and in the container.
    """
    local = Path(os.path.abspath(local_dir))
    if not docker.snapshot_host_dir and not docker.snapshot_volume:
        return MountPlan("bind", str(local), target, target)
    base = Path(os.path.abspath(docker.snapshot_dir))
    try:
        rel = local.relative_to(base)
    except ValueError:
        raise ContainerError(
            f"{local} is outside docker.snapshot_dir ({base}), so the Docker daemon cannot see it; "
            "keep snapshots (and backup staging) under docker.snapshot_dir"
        ) from None
    if docker.snapshot_volume:
        return MountPlan("volume", docker.snapshot_volume, target, str(PurePosixPath(target, rel.as_posix())))
    host = PurePosixPath(docker.snapshot_host_dir, rel.as_posix())
    return MountPlan("bind", str(host), target, target)


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    command: list[str]
    purpose: str  # a label value: "check", "verify-server"
    mount: MountPlan | None = None


@dataclass(frozen=True)
class Finished:
    exit_code: int | None  # None when killed at the deadline
    output: str  # stdout and stderr, interleaved
    timed_out: bool
    duration_s: float


class Engine:
    """One Docker engine, reached lazily. Every failure to reach it is a ContainerError."""

    def __init__(self, docker: DockerOptions, run_id: int | str) -> None:
        self.settings = docker
        self.run_id = str(run_id)
        self._client: DockerClient | None = None

    @property
    def client(self) -> DockerClient:
        if self._client is None:
            self._client = _connect(self.settings.url)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def ensure_image(self, image: str) -> None:
        """Make `image` present per docker.pull_policy, or say which image is missing and how to get it."""
        from docker.errors import DockerException, ImageNotFound

        policy = self.settings.pull_policy
        with _engine_errors(f"looking up image {image}"):
            try:
                self.client.images.get(image)
                present = True
            except ImageNotFound:
                present = False
        if present and policy != "always":
            return
        if not present and policy == "never":
            raise ContainerError(
                f"image {image} is not on the Docker engine and docker.pull_policy is never; "
                + BUILD_HINT.format(image=image)
            )
        log.info("pulling image", extra={"image": image, "pull_policy": policy})
        try:
            self.client.images.pull(image)
        except DockerException as exc:
            raise ContainerError(
                f"image {image} could not be pulled ({_short(exc)}); " + BUILD_HINT.format(image=image)
            ) from None

    def run(self, spec: ContainerSpec, timeout_s: float, cancel: threading.Event | None = None) -> Finished:
        """Run `spec` to completion or until `timeout_s`; the container is removed in every case."""
        t0 = time.monotonic()
        with self.started(spec, timeout_s) as container:
            code, timed_out = self._wait(container, t0 + timeout_s, cancel)
            with _engine_errors("reading the container's logs"):
                output = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        return Finished(code, output, timed_out, round(time.monotonic() - t0, 3))

    @contextlib.contextmanager
    def started(self, spec: ContainerSpec, timeout_s: float) -> Iterator[Container]:
        """A started, hardened container, killed and removed when the block ends (however it ends)."""
        self.reap()
        container = self._create(spec, timeout_s)
        try:
            with _engine_errors(f"starting a {spec.image} container"):
                container.start()
            yield container
        finally:
            self._remove(container)

    def exec(self, container: Container, command: list[str], timeout_s: float) -> tuple[int, str]:
        """`docker exec` with a deadline: the SDK has none, so a hung command gets its container killed."""
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["result"] = container.exec_run(command, stdout=True, stderr=True)
            except Exception as exc:  # handed to the caller's thread
                box["error"] = exc

        worker = threading.Thread(target=work, name="docker-exec", daemon=True)
        worker.start()
        worker.join(timeout_s)
        if worker.is_alive():
            _quietly(container.kill)
            worker.join(5)
            raise ContainerError(
                f"`{' '.join(command)}` in container {container.short_id} did not finish within "
                f"{timeout_s:.0f}s; the container was killed (raise docker.timeout if this is expected)"
            )
        if "error" in box:
            raise _as_container_error(box["error"], f"running `{' '.join(command)}`")
        result = box["result"]
        return int(result.exit_code), result.output.decode("utf-8", "replace")

    def reap(self) -> int:
        """Remove labelled containers past their deadline: leftovers of a process that was killed."""
        now = time.time()
        removed = 0
        with _engine_errors("listing leftover containers"):
            # ignore_removed: another process may remove its container between the list and its inspect
            leftovers = self.client.containers.list(
                all=True, filters={"label": f"{LABEL_MANAGED}=1"}, ignore_removed=True
            )
        for container in leftovers:
            expires = float(container.labels.get(LABEL_EXPIRES, "0") or 0)
            if expires and expires < now:
                log.warning("removing a leftover container", extra={"container": container.name})
                self._remove(container)
                removed += 1
        return removed

    def _create(self, spec: ContainerSpec, timeout_s: float) -> Container:
        s = self.settings
        kwargs: dict[str, Any] = {
            "name": f"redis-maint-{spec.purpose}-{self.run_id}-{secrets.token_hex(3)}",
            "labels": {
                LABEL_MANAGED: "1",
                LABEL_RUN: self.run_id,
                LABEL_PURPOSE: spec.purpose,
                LABEL_EXPIRES: str(int(time.time() + timeout_s + REAP_GRACE_S)),
            },
            "network_mode": "none",
            "read_only": True,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "mem_limit": s.mem_limit,
            "pids_limit": s.pids_limit,
            "tmpfs": {"/tmp": "rw,nosuid,nodev,size=64m"},
            "stdin_open": False,
        }
        if s.user:
            kwargs["user"] = s.user
        if spec.mount is not None:
            kwargs["mounts"] = [_docker_mount(spec.mount)]
            kwargs["working_dir"] = spec.mount.workdir
        with _engine_errors(f"creating a {spec.image} container"):
            return self.client.containers.create(spec.image, spec.command, **kwargs)

    def _wait(
        self, container: Container, deadline: float, cancel: threading.Event | None
    ) -> tuple[int | None, bool]:
        import requests

        while True:
            if cancel is not None and cancel.is_set():
                _quietly(container.kill)
                raise JobCancelledError(
                    f"stopped because the daemon is shutting down; container {container.name} was killed"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("container past its deadline: killing it", extra={"container": container.name})
                _quietly(container.kill)
                return None, True
            try:
                return int(container.wait(timeout=min(POLL_S, left))["StatusCode"]), False
            except requests.exceptions.ReadTimeout:
                continue
            except requests.exceptions.ConnectionError:
                # A read timeout can surface as ConnectionError (docker-py #1966): is the engine still there?
                with _engine_errors(f"waiting for container {container.name}"):
                    self.client.ping()

    def _remove(self, container: Container) -> None:
        from docker.errors import NotFound

        try:
            container.remove(force=True)
        except NotFound:
            pass
        except Exception as exc:  # never mask the run's own outcome; the next reap retries
            log.error(
                "could not remove a container; the next run will reap it",
                extra={"container": container.name, "error": _short(exc)},
            )


def _connect(url: str) -> DockerClient:
    import docker

    where = url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        if url:
            client = docker.DockerClient(base_url=url, timeout=API_TIMEOUT_S)
        else:
            client = docker.from_env(timeout=API_TIMEOUT_S)
        client.ping()
    except Exception as exc:
        raise ContainerError(
            f"cannot reach the Docker engine at {where} ({_short(exc)}); start it "
            "(scripts/ensure-dockerd.sh on a dev machine), mount /var/run/docker.sock into the sidecar, "
            "or set REDIS_MAINT_DOCKER__URL / DOCKER_HOST"
        ) from None
    return client


@contextlib.contextmanager
def _engine_errors(doing: str) -> Iterator[None]:
    """Docker SDK and transport errors become ContainerError naming what we were doing."""
    try:
        yield
    except (ContainerError, JobCancelledError):
        raise
    except Exception as exc:
        raise _as_container_error(exc, doing) from None


def _as_container_error(exc: BaseException, doing: str) -> ContainerError:
    import requests
    from docker.errors import DockerException

    if isinstance(exc, requests.exceptions.ConnectionError):
        return ContainerError(f"lost the Docker engine while {doing} ({_short(exc)}); is dockerd running?")
    if isinstance(exc, DockerException | requests.exceptions.RequestException):
        return ContainerError(f"Docker failed while {doing}: {_short(exc)}")
    return ContainerError(f"unexpected {type(exc).__name__} while {doing}: {_short(exc)}")


def _docker_mount(plan: MountPlan) -> Any:
    from docker.types import Mount

    return Mount(target=plan.target, source=plan.source, type=plan.kind, read_only=False)


def _quietly(action: Any) -> None:
    """kill() on a container that already exited raises; that is fine here."""
    try:
        action()
    except Exception as exc:
        log.debug("ignored", extra={"error": _short(exc)})


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("…" if len(text) > 300 else "")


def engine_status(docker: DockerOptions, image: str) -> str:
    """The doctor's line: engine reachable and the check image present (never pulls)."""
    from docker.errors import ImageNotFound

    engine = Engine(docker, run_id="doctor")
    try:
        version = engine.client.version().get("Version", "?")
        try:
            engine.client.images.get(image)
        except ImageNotFound:
            pull = "a run will try to pull it" if docker.pull_policy != "never" else "nothing will pull it"
            raise ContainerError(
                f"Docker {version} answers, but image {image} is not there "
                f"(pull_policy={docker.pull_policy}: {pull}); " + BUILD_HINT.format(image=image)
            ) from None
        return f"Docker {version} answers; image {image} present"
    finally:
        engine.close()
