"""Field types shared by the settings schema and the jobs' own settings models."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
)

from redis_maint.durations import format_duration, parse_duration
from redis_maint.schedules import Schedule, parse_schedule

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s (e.g. 30s, 10m)")
    return value


# Timeouts, TTLs and lifetimes: 0s would fail every run at once or never wait at all.
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]

ScheduleField = Annotated[
    Schedule,
    BeforeValidator(parse_schedule),
    PlainSerializer(str, return_type=str),
]


def schedule_default(default: str):
    """The `schedule` field of a job's settings, with that job's default."""
    return Field(
        default=default,
        description="5-field cron expression, `every <duration>` (e.g. `every 30s`), or `off`",
    )


class Section(BaseModel):
    """A settings block: unknown keys are errors, every field has a default and a description."""

    # defer_build: a section's validator is built once, inside the whole settings model, not again
    # for each of the ~45 sections as its class is made (a quarter of loading the settings).
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True, defer_build=True)


def section(description: str) -> Any:
    """A nested section's field. Its default, `{}`, is validated by the enclosing model into the
    section's defaults, so no section builds a validator of its own (a default_factory of the
    section's class would build one per section)."""
    return Field(default_factory=dict, description=description)


class JobSettings(Section):
    """Settings every job has. A job's own model subclasses this and sets its default schedule."""

    schedule: ScheduleField = schedule_default("off")
    timeout: PositiveDuration = Field(
        default=timedelta(minutes=30), description="the run fails once it has run this long"
    )


class OnDemandSettings(JobSettings):
    """Settings of a job that only runs when asked (a CLI command): its schedule must stay off."""

    schedule: ScheduleField = schedule_default("off")

    @field_validator("schedule")
    @classmethod
    def _never_scheduled(cls, value: Schedule) -> Schedule:
        if value.kind != "off":
            raise ValueError("this job only runs on demand, from its CLI command; use off")
        return value
