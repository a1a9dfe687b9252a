"""Logs go to stderr: text on a terminal, JSON lines otherwise (or as --log-format /
$REDIS_MAINT_LOG_FORMAT say); credentials are masked in both."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

from redis_maint.redact import redact

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        # Each value before encoding too: JSON escaping (a quote, a backslash) can hide a secret.
        out = {key: redact(value) if isinstance(value, str) else value for key, value in out.items()}
        return redact(json.dumps(out, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
        )
        line = f"{record.levelname.lower():7} {record.name}: {record.getMessage()}"
        if extras:
            line += f" [{extras}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


FORMATS = ("json", "text")
FORMAT_ENV = "REDIS_MAINT_LOG_FORMAT"


def stderr_is_tty() -> bool:
    try:
        return os.isatty(sys.stderr.fileno())
    except (AttributeError, ValueError, OSError):
        return False


def choose_format(given: str | None, *, unattended: bool = False) -> str:
    """--log-format (or $REDIS_MAINT_LOG_FORMAT) when set; else text for a person at a terminal and
    JSON lines for anything else. The daemon runs unattended: JSON unless told otherwise."""
    if given:
        return given
    return "json" if unattended or not stderr_is_tty() else "text"


def choose_level(configured: str, verbose: int, *, quiet: bool) -> str:
    """-v shows info, -vv debug. A person reading a rendered result at a terminal (`quiet`) sees
    warnings and errors only; everything else logs at the configured level."""
    if verbose >= 2:
        return "DEBUG"
    if verbose == 1:
        return "INFO" if logging.getLevelName(configured) > logging.INFO else configured
    if quiet and logging.getLevelName(configured) < logging.WARNING:
        return "WARNING"
    return configured


def setup_logging(fmt: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries chatter at INFO (and botocore can log request details at DEBUG).
    for noisy in ("apscheduler", "botocore", "boto3", "s3transfer", "urllib3", "docker"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
