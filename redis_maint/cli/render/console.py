"""The console people read: colour only on a terminal and never with NO_COLOR (no-color.org)."""

from __future__ import annotations

import os
import re
import shutil
import sys

from rich.console import Console

from redis_maint.cli.modes import stdout_is_tty

# Trailing blanks rich pads table lines with, mixed with style codes (which stay).
_TRAILING = re.compile(r"(?:[ ]|\x1b\[[0-9;]*m)+$", re.MULTILINE)
_STYLE = re.compile(r"\x1b\[[0-9;]*m")


def no_color() -> bool:
    """NO_COLOR set to anything non-empty turns every style off (colour and bold alike)."""
    return bool(os.environ.get("NO_COLOR"))


def terminal_width() -> int:
    """$COLUMNS, else the terminal's own width, else 80."""
    return shutil.get_terminal_size((80, 24)).columns


def stdout_console(width: int | None = None) -> Console:
    """A console on stdout: styled on a terminal (unless NO_COLOR), plain text otherwise."""
    tty = stdout_is_tty()
    styled = tty and not no_color()
    return Console(
        file=sys.stdout,
        force_terminal=styled,
        color_system="auto" if styled else None,
        width=width or (terminal_width() if tty else 100_000),
        highlight=False,
        emoji=False,
        soft_wrap=True,  # the terminal wraps a long line; rich never folds an id in two
        markup=False,
    )


def print_trimmed(console: Console, renderable: object) -> None:
    """Print without the trailing blanks rich pads lines with (they wrap narrow terminals)."""
    with console.capture() as captured:
        console.print(renderable)
    text = _TRAILING.sub(lambda m: "".join(_STYLE.findall(m.group(0))), captured.get())
    sys.stdout.write(text)
    sys.stdout.flush()
