"""A real PostgreSQL server (Debian's `postgresql` package) on a free port, in a temp dir.

PostgreSQL refuses to run as root: as root, `initdb`, `pg_ctl` and the server run as the
`postgres` user (`runuser`), in a directory owned by it under /tmp (pytest's own temp dirs are
root-only). The cluster trusts its Unix socket, which only the helper uses, and asks for a
password on TCP: the URLs the code under test gets carry a credential, so masking is tested.
Tests get a fresh database each (`create_database`), created from template0.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.common import free_port

USER = "maint"
PASSWORD = "Pg-Secret-7c1e9a"
RUN_AS = "postgres"


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin that has initdb, or wherever initdb is on PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]), reverse=True
    )
    found = candidates[0] if candidates else shutil.which("initdb")
    return Path(found).parent if found else None


@dataclass
class PostgresServer:
    """One cluster: `start()`, `stop()`, `restart()`, and a database per test."""

    bindir: Path
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="redis-maint-pg-", dir="/tmp")))
    _admin: Any = field(default=None, repr=False)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def sockdir(self) -> Path:
        return self.root / "sock"

    def url(self, database: str, password: str = PASSWORD) -> str:
        return f"postgresql+psycopg://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    # -- lifecycle ---------------------------------------------------------------------------
    def init(self) -> PostgresServer:
        self.sockdir.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            shutil.chown(self.root, RUN_AS, RUN_AS)
            shutil.chown(self.sockdir, RUN_AS, RUN_AS)
        self._pg(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        return self

    def start(self) -> PostgresServer:
        options = (
            f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 "
            # A throwaway test cluster: durability is not what is tested here.
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._pg(
            "pg_ctl", "-D", str(self.datadir), "-o", options, "-l", str(self.root / "log"), "-w", "start"
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if (self.datadir / "postmaster.pid").exists():
            self._pg("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def running(self) -> bool:
        return (self.datadir / "postmaster.pid").exists()

    def destroy(self) -> None:
        self.stop("immediate")  # thrown away: no shutdown checkpoint needed
        shutil.rmtree(self.root, ignore_errors=True)

    def setup_user(self) -> PostgresServer:
        self.psql(f"CREATE ROLE {USER} LOGIN CREATEDB PASSWORD '{PASSWORD}'")
        return self

    # -- databases ---------------------------------------------------------------------------
    def create_database(self) -> str:
        """A fresh, empty database owned by the test user; returns its name (~0.15 s)."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.admin(f"CREATE DATABASE {name} OWNER {USER} TEMPLATE template0")
        return name

    def drop_database(self, name: str) -> None:
        """Drop it even while daemons or pools are still connected."""
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def admin(self, sql: str) -> None:
        """One statement as the superuser, on a connection kept open over the Unix socket."""
        import psycopg

        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(
                host=str(self.sockdir), port=self.port, user="postgres", dbname="postgres", autocommit=True
            )
        self._admin.execute(sql)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the Unix socket; returns psql's unaligned output."""
        return self._pg(
            "psql",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.sockdir),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-c",
            sql,
        )

    def _pg(self, program: str, *args: str) -> str:
        cmd = [str(self.bindir / program), *args]
        if os.getuid() == 0:
            cmd = ["runuser", "-u", RUN_AS, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if proc.returncode != 0:
            log = self.root / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} exited {proc.returncode}: {proc.stderr.strip()}\n{tail}")
        return proc.stdout
