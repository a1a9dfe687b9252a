"""Help that is computed: `run --help` lists the registered jobs with their one-line descriptions."""

from __future__ import annotations

import click


class RunCommand(click.Command):
    """A command whose help lists the jobs; the registry is imported only when help is shown."""

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from redis_maint.cli.job_catalog import catalog_for_help

        super().format_help_text(ctx, formatter)
        with formatter.section("Jobs"):
            formatter.write_dl([(job.name, job.description) for job in catalog_for_help(ctx)])
