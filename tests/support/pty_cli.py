"""The CLI in a real pseudo-terminal of a given size, as an operator sees it.

`run_in_pty` gives the program a pty for stdin and stderr (and stdout, unless `stdout_pipe`), sets
the window size with TIOCSWINSZ and COLUMNS/LINES, and returns everything the terminal received.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass

from tests.support.common import ROOT


@dataclass
class PtyRun:
    code: int
    terminal: str  # every byte the pty received (escape sequences included), decoded
    stdout: str | None  # only with stdout_pipe


def run_in_pty(
    *args: str,
    columns: int = 80,
    lines: int = 24,
    env: dict[str, str] | None = None,
    stdout_pipe: bool = False,
    timeout: float = 120,
) -> PtyRun:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    full_env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(lines)}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scheduler.py"), *args],
        stdin=slave,
        stdout=subprocess.PIPE if stdout_pipe else slave,
        stderr=slave,
        env={**full_env, **(env or {})},
        cwd=ROOT,
        start_new_session=True,  # the pty becomes its controlling terminal, as in a shell
    )
    os.close(slave)
    try:
        terminal = _read_until_closed(master, proc, time.monotonic() + timeout)
        stdout = proc.stdout.read().decode() if proc.stdout else None
        code = proc.wait(timeout=10)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return PtyRun(code, terminal.decode("utf-8", "replace"), stdout)


def _read_until_closed(master: int, proc: subprocess.Popen, deadline: float) -> bytes:
    """Drain the pty while the program runs (a full pty buffer would block it) until it closes."""
    out = bytearray()
    while True:
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(
                f"the CLI did not finish in time; the terminal showed:\n{out.decode(errors='replace')}"
            )
        if not select.select([master], [], [], 0.2)[0]:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the pty
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk
