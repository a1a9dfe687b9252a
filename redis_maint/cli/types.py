"""Click parameter types shared by the subcommands."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from redis_maint.errors import UsageError


class DurationType(click.ParamType):
    """`12h`, `7d`, `1h30m`: a unit is required, and the value must be longer than 0s."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        from redis_maint.durations import parse_duration

        if isinstance(value, timedelta):
            return value
        flag = param.opts[0] if param is not None and param.opts else "duration"
        try:
            parsed = parse_duration(value)
        except ValueError as exc:
            raise UsageError(f"{flag}: {exc}") from None
        if parsed <= timedelta(0):
            raise UsageError(f'{flag}: must be longer than 0s (got "{value}"); e.g. 12h')
        return parsed


DURATION = DurationType()
