"""Headless Chromium (Debian's `chromium`, installed by `scripts/system-deps.sh chromium`): render a
page to PNG and to its DOM, and collect what the page wrote to the browser console."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.common import in_ci

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)


def chromium_binary() -> str:
    """The chromium binary; under CI=true a missing one fails the test instead of skipping it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "chromium is not installed; `make system-deps` (scripts/system-deps.sh chromium) installs it"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Rendered:
    png: Path
    dom: str
    console: list[str]  # console messages and uncaught errors the page produced
    log: str  # chromium's whole stderr, for failure messages


def render_page(
    page: Path, work: Path, *, width: int = 1280, height: int = 2000, screenshot: bool = True
) -> Rendered:
    """Screenshot `page` at width x height and dump its DOM after load: two headless runs, side by side."""
    binary = chromium_binary()
    work.mkdir(parents=True, exist_ok=True)
    png = work / "out.png"
    url = page.resolve().as_uri()
    runs = [[binary, *FLAGS, f"--user-data-dir={work / 'profile-dom'}", "--dump-dom", url]]
    if screenshot:
        runs.append(
            [
                binary,
                *FLAGS,
                f"--user-data-dir={work / 'profile-shot'}",
                f"--screenshot={png}",
                f"--window-size={width},{height}",
                url,
            ]
        )
    dom, *shot = _run_all(runs)
    log = "".join(done.stderr for done in (dom, *shot))
    console = [line for line in log.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return Rendered(png=png, dom=dom.stdout, console=console, log=log)


def print_to_pdf(page: Path, work: Path) -> bytes:
    """The page printed to PDF as a browser prints it (print styles applied), without header and footer."""
    pdf = work / "out.pdf"
    _run(
        [
            chromium_binary(),
            *FLAGS,
            f"--user-data-dir={work / 'profile-pdf'}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            page.resolve().as_uri(),
        ]
    )
    return pdf.read_bytes()


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return _run_all([argv])[0]


def _run_all(argvs: list[list[str]]) -> list[subprocess.CompletedProcess]:
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for argv in argvs
    ]
    done = []
    try:
        for argv, proc in zip(argvs, procs, strict=True):
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-3000:]
            done.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def png_facts(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the image data). A uniform image (a blank page) leaves
    only a handful of values whatever PNG filter the encoder chose; a page with content, hundreds."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, width, height, idat = 8, 0, 0, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))
