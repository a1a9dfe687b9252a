from __future__ import annotations

import click

# The variable click's completion machinery reads; the scripts set it when they call redis-maint.
COMPLETE_VAR = "_REDIS_MAINT_COMPLETE"


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print a completion script for SHELL: subcommands, options, job names and backup IDs.

    Job names complete for `run`; backup IDs (from the catalog in the history store) for
    `backups show|verify|restore|keep|unkeep`.

    \b
    Examples:
      source <(redis-maint completion bash)      # this bash session (bash 4.4+)
      redis-maint completion bash > /etc/bash_completion.d/redis-maint
      redis-maint completion zsh > "${fpath[1]}/_redis-maint"
      redis-maint completion fish > ~/.config/fish/completions/redis-maint.fish

    \b
    Environment (read at each <TAB>, for backup IDs):
      REDIS_MAINT_CONFIG        the settings file (else the shipped one)
      REDIS_MAINT_HISTORY_URL   the history store holding the backup catalog
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:  # click.Choice already refused anything else
        raise click.UsageError(f"no completion for {shell}")
    click.echo(cls(ctx.find_root().command, {}, "redis-maint", COMPLETE_VAR).source())
