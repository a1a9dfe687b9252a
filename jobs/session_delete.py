"""The `session-delete` job: the runbook's ad hoc deletes (`redis-maint sessions delete`), as runs in
history with who asked, the parameters and the counts. Never scheduled.

Parameters (exactly one): `org` ("ORG_ID") deletes that organisation's sessions and nothing else;
`no_org` (true) deletes the sessions without an organisation id (field missing or null); `all`
(true) deletes every session (the emergency path). Key layout and batch sizes come from [sessions].
The summary's `matched` says how many sessions the target matched: 0 is a success (a delete is
idempotent), and the CLI then names the largest organisations so a typo shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from config.types import OnDemandSettings
from jobs import session_runs
from jobs.base import Job, JobContext, Params

if TYPE_CHECKING:
    from redis_maint import sessions


class SessionDeleteSettings(OnDemandSettings):
    """session-delete runs only from `redis-maint sessions delete`."""


class DeleteParams(Params):
    org: str | None = Field(default=None, description="delete this organisation's sessions")
    no_org: bool = Field(default=False, description="delete the sessions without an organisation id")
    all: bool = Field(default=False, description="delete every session")

    @model_validator(mode="after")
    def _exactly_one(self) -> DeleteParams:
        if self.org == "":
            # `--org "$ORG"` with ORG unset: never read as "the sessions without an organisation"
            raise ValueError(
                "org is empty; give an organisation id, or no_org for the sessions without one "
                "(`redis-maint sessions delete --no-org`)"
            )
        if (self.org is not None) + self.no_org + self.all != 1:
            raise ValueError(
                "session-delete needs exactly one of the parameters org or all or no_org; run it as "
                "`redis-maint sessions delete --org ORG_ID`, `redis-maint sessions delete --no-org` "
                "or `redis-maint sessions delete --all --yes`"
            )
        return self

    @property
    def mode(self) -> sessions.Mode:
        from redis_maint import sessions  # redis-py loads only when a delete runs

        if self.all:
            return sessions.Mode.ALL
        return sessions.Mode.NO_ORG if self.no_org else sessions.Mode.ORG


def run(ctx: JobContext) -> dict[str, Any]:
    params: DeleteParams = ctx.params
    plan = session_runs.plan(ctx.settings.sessions, params.mode, ctx.dry_run, org=params.org)
    summary = session_runs.run_plan(ctx, plan)
    if not params.all:
        # rewritten between our read and our delete still counts as matched: it was that org's
        summary["matched"] = summary["deleted"]["organisation"] + summary["changed_skipped"]
        if summary["matched"] == 0:
            ctx.log.warning("no session matched", extra={"org": params.org, "no_org": params.no_org})
    return summary


JOB = Job(
    name="session-delete",
    description="ad hoc session deletes (sessions delete --org / --all); never scheduled",
    settings_model=SessionDeleteSettings,
    run=run,
    params_model=DeleteParams,
)
