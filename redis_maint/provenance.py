"""Who ran something and under which settings: the OS user and the settings' hash a run records.

`requested_by` is a claim (`--as NAME`, else $USER); `os_user` is what the OS says about this
process (the passwd name of its uid), so an auditor can tell the two apart. `config_hash` is the
SHA-256 of the settings in force in their masked form (what `config show` prints), as canonical
JSON: anyone holding the masked settings can recompute it, and no secret is needed to do so.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
from functools import cache
from typing import Any


@cache
def os_user() -> str:
    """The passwd name of this process's uid, or "uid N" when it has none (a bare `--user 1234`)."""
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def requester() -> str:
    """Who asked, when nobody said (`--as`): $USER, else $LOGNAME, else the OS user.

    `docker compose exec` sets neither variable, so a run there records the image's user name.
    """
    return os.environ.get("USER") or os.environ.get("LOGNAME") or os_user()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def config_hash(settings: Any) -> str | None:
    """sha256 hex of the masked settings (pydantic's JSON dump masks every secret-bearing field)."""
    dump = getattr(settings, "model_dump", None)
    if dump is None:
        return None
    return hashlib.sha256(canonical_json(dump(mode="json")).encode()).hexdigest()
