"""moto in server mode: a real HTTP S3 endpoint in its own process, on a free port."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.common import free_port, wait_for


@dataclass
class MotoServer:
    """moto in server mode: a real HTTP S3 endpoint in its own process."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        exe = Path(sys.executable).with_name("moto_server")
        for attempt in range(3):
            self.proc = subprocess.Popen(
                [str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            # Generous: on a loaded machine (parallel tests) its imports alone take seconds.
            wait_for(self._up_or_exited, timeout=90, what="moto_server")
            if self.proc.poll() is None:
                return self
            if attempt == 2:
                raise RuntimeError(f"moto_server exited {self.proc.returncode} on port {self.port}")
            self.port = free_port()  # taken by another process since it was picked
        raise AssertionError("unreachable")

    def _up_or_exited(self) -> bool:
        if self.proc.poll() is not None:
            return True
        urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2)
        return True

    def reset(self) -> None:
        req = urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=30)

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)

    def env(self) -> dict[str, str]:
        """Standard AWS variables that point boto3 at this server with dummy credentials."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing-secret-key-do-not-log",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
