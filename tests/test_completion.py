"""Shell completion: the scripts `redis-maint completion SHELL` prints, loaded in a real bash."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from redis_maint.history.catalog import BackupRecord, Catalog
from redis_maint.history.runs import HistoryStore
from redis_maint.timeutil import utcnow
from tests.support.common import ROOT
from tests.support.history import current_store

JOBS = [
    "health",
    "backup",
    "aof-check",
    "backup-age",
    "backup-verify",
    "session-sweep",
    "session-delete",
    "backup-check",
    "backup-restore",
    "backup-keep",
    "backup-unkeep",
    "diagnose",
    "audit-report",
    "backup-reconcile",
    "backup-audit",
    "audit-verify",
    "audit-checkpoint",
]
# The console script lives beside this interpreter; the completion script calls it by name.
BIN = Path(sys.executable).parent


def tab(*words: str, drop: tuple[str, ...] = ()) -> list[str]:
    """What a real bash offers for `redis-maint WORDS<TAB>` (the last word is the one completed)."""
    line = ["redis-maint", *words]
    script = "\n".join(
        [
            "source <(redis-maint completion bash)",
            f"COMP_WORDS=({' '.join(shlex.quote(w) for w in line)})",
            f"COMP_CWORD={len(line) - 1}",
            "_redis_maint_completion redis-maint",
            'printf "%s\\n" "${COMPREPLY[@]}"',
        ]
    )
    environ = {k: v for k, v in os.environ.items() if k not in drop}
    environ["PATH"] = f"{BIN}:{os.environ['PATH']}"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=environ, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", "completion must print nothing on the terminal"
    return [w for w in out.stdout.splitlines() if w]


def _add_backups(*specs: tuple[str, str], store: HistoryStore | None = None) -> None:
    catalog = Catalog(store or current_store())
    now = utcnow()
    for age, (backup_id, status) in enumerate(specs):
        catalog.add(
            BackupRecord(
                id=backup_id,
                run_id=None,
                instance="sessions",
                target=f"/backups/{backup_id}",
                target_root="/backups",
                location=backup_id,
                created_at=now - timedelta(hours=age),
                status=status,
            )
        )


def test_run_tab_offers_every_job_name_in_bash():
    assert tab("run", "") == JOBS


def test_run_tab_completes_a_prefix():
    assert tab("run", "backup-") == ["backup-age", "backup-verify", "backup-check", "backup-restore",
                                     "backup-keep", "backup-unkeep", "backup-reconcile",
                                     "backup-audit"]  # fmt: skip
    assert tab("run", "sess") == ["session-sweep", "session-delete"]


def test_subcommands_complete_too():
    assert "completion" in tab("")
    assert tab("backups", "un") == ["unkeep"]


@pytest.mark.parametrize("command", ["show", "verify", "restore", "keep", "unkeep"])
def test_backup_ids_complete_from_the_catalog(command):
    _add_backups(("20261202T030000Z-aaaaaa", "complete"), ("20261201T030000Z-bbbbbb", "complete"))
    assert tab("backups", command, "") == ["20261202T030000Z-aaaaaa", "20261201T030000Z-bbbbbb"]
    assert tab("backups", command, "20261201") == ["20261201T030000Z-bbbbbb"]


def test_backup_ids_come_from_the_store_the_config_file_names(tmp_path):
    _add_backups(("20261202T030000Z-env", "complete"))
    elsewhere = f"sqlite:///{tmp_path / 'other.db'}"
    _add_backups(("20261202T030000Z-file", "complete"), store=HistoryStore(elsewhere))
    config = tmp_path / "other.toml"
    config.write_text(f'history_url = "{elsewhere}"\n')
    got = tab("--config", str(config), "backups", "show", "", drop=("REDIS_MAINT_HISTORY_URL",))
    assert got == ["20261202T030000Z-file"]
    assert tab("backups", "show", "") == ["20261202T030000Z-env"]


def test_no_history_store_yet_completes_nothing_and_creates_nothing(tmp_path):
    url = os.environ["REDIS_MAINT_HISTORY_URL"]
    assert tab("backups", "verify", "") == []
    assert not Path(url.removeprefix("sqlite:///")).exists()


def test_completing_backup_ids_imports_no_job(tmp_path):
    _add_backups(("20261202T030000Z-cccccc", "complete"))
    probe = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print('@@' + json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
        "from redis_maint.cli import main\n"
        "main()\n"
    )
    env = {
        **os.environ,
        "_REDIS_MAINT_COMPLETE": "bash_complete",
        "COMP_WORDS": "redis-maint backups show ",
        "COMP_CWORD": "3",
    }
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT)
    assert "plain,20261202T030000Z-cccccc" in out.stdout
    modules = json.loads(out.stderr.rsplit("@@", 1)[1])
    assert [m for m in modules if m == "jobs" or m.startswith(("jobs.", "boto3", "docker", "redis."))] == []


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("zsh", "#compdef redis-maint"), ("fish", "complete --no-files --command redis-maint")],
)
def test_zsh_and_fish_scripts_call_back_into_redis_maint(cli, shell, marker):
    result = cli("completion", shell)
    assert result.exit_code == 0
    assert marker in result.output and "_REDIS_MAINT_COMPLETE" in result.output


def test_an_unknown_shell_is_a_usage_error(cli):
    result = cli("completion", "tcsh")
    assert result.exit_code == 2
