"""Keep credentials out of logs, errors, output and history.

One masking function per kind of value:
- `redact_url`: a URL that may carry credentials (Redis, history store, Docker engine):
  the userinfo password and password-like query parameters become ***;
- `redact_endpoint`: a URL that is itself a credential (webhook, Slack, ping): only the
  scheme and host stay, because the path and query are the token;
- `redact`: free text (exception messages, log lines): every URL in it through `redact_url`,
  `key=value` secrets, AWS key ids, and the exact secret values the loaded settings hold
  (`register_secrets`), so a secret is masked even where no pattern would recognise it.

The settings schema (config/secrets.py) marks which fields are which kind.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from urllib.parse import SplitResult, unquote, unquote_plus, urlsplit, urlunsplit

MASK = "***"

# Query parameters whose value is a credential (compared lower-case; X-Amz-* are all masked).
SECRET_PARAMS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "token",
        "secret",
        "key",
        "auth",
        "sig",
        "signature",
        "access_token",
    }
)
# Names that contain one of these are credentials too (sslpassword, client_secret, api_token).
_SECRET_WORDS = ("password", "passwd", "secret", "token")

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]+")
_QUERY_PAIR = re.compile(r"(?P<sep>[?&;])(?P<name>[A-Za-z0-9_.-]+)=(?P<value>[^&;#\s'\"<>]*)")
_KEY_VALUE = re.compile(
    r"(?i)(aws_secret_access_key|aws_session_token|access_token|secret|password|passwd|token)"
    r"(['\"]?\s*[=:]\s*['\"]?)[^\s'\",}&]+"
)
_AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{12,}\b")

# Exact secret values from the loaded settings. Short values are left to the patterns: masking
# every "pass" or "redis" in a log would hide more than it protects.
MIN_KNOWN_SECRET = 6
# A webhook path (or a piece of it) this long is a token; "/slack" or "services" are not.
MIN_ENDPOINT_TOKEN = 16
_known: set[str] = set()
_known_lock = threading.Lock()


def is_secret_param(name: str) -> bool:
    lowered = unquote_plus(name).lower()
    return (
        lowered in SECRET_PARAMS
        or lowered.startswith("x-amz-")
        or any(word in lowered for word in _SECRET_WORDS)
    )


def redact_url(url: str) -> str:
    """A URL safe to show: its password and password-like query parameters replaced by ***."""
    parts = _split(url)
    if parts is None:
        return _redact_patterns(url)
    netloc = _mask_userinfo(parts.netloc, keep_user=True)
    query = _mask_query(parts.query)
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    if "://" not in url:
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    # By hand: urlunsplit drops the empty host of sqlite:////abs/path.
    tail = (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")
    return f"{parts.scheme}://{netloc}{parts.path}{tail}"


def redact_endpoint(url: str) -> str:
    """A webhook, Slack or ping URL safe to show: scheme and host only; the path and query are the token."""
    if not url:
        return url
    parts = _split(url)
    if parts is None or not parts.scheme:
        return MASK
    netloc = _mask_userinfo(parts.netloc, keep_user=False)
    hidden = parts.path not in ("", "/") or parts.query or parts.fragment
    return f"{parts.scheme}://{netloc}/{MASK if hidden else ''}"


def url_secrets(url: str) -> list[str]:
    """The credential parts of a URL that `redact_url` masks (for `register_secrets`)."""
    parts = _split(url)
    if parts is None:
        return []
    found = []
    userinfo, at, _host = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    found += [m["value"] for m in _QUERY_PAIR.finditer("?" + parts.query) if is_secret_param(m["name"])]
    return found


def endpoint_secrets(url: str) -> list[str]:
    """The credential parts of a webhook URL: its userinfo, path and query, whole and piece by piece."""
    parts = _split(url)
    if parts is None or not url:
        return [url] if url else []
    found = [parts.netloc.rpartition("@")[0]]
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    if len(tail) >= MIN_ENDPOINT_TOKEN:
        found.append(tail)
    # Tokens inside the path (Slack's T.../B.../secret, a ping UUID), not words like "services".
    found += [seg for seg in parts.path.split("/") if len(seg) >= MIN_ENDPOINT_TOKEN]
    found += [m["value"] for m in _QUERY_PAIR.finditer("?" + parts.query)]
    return found


def register_secrets(values: Iterable[str]) -> None:
    """Remember exact secret values (raw and percent-decoded) so `redact` masks them in any text."""
    with _known_lock:
        for value in values:
            for form in {value, unquote(value)}:
                if form and len(form) >= MIN_KNOWN_SECRET:
                    _known.add(form)


def redact(text: str) -> str:
    """Mask anything that is or looks like a credential in free text."""
    if not text:
        return text
    text = _mask_known(text)
    text = _URL.sub(lambda m: redact_url(m[0]), text)
    return _redact_patterns(text)


def _redact_patterns(text: str) -> str:
    text = _QUERY_PAIR.sub(
        lambda m: f"{m['sep']}{m['name']}={MASK}" if is_secret_param(m["name"]) else m[0], text
    )
    text = _KEY_VALUE.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    return _AWS_KEY_ID.sub(lambda m: m[1] + "****", text)


def _mask_known(text: str) -> str:
    with _known_lock:
        known = sorted(_known, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _split(url: str) -> SplitResult | None:
    # No check of the port: a URL with several hosts (redis+sentinel://:pw@s1:26379,s2:26379/…)
    # or a malformed port still has its userinfo masked.
    try:
        return urlsplit(url)
    except ValueError:
        return None


def _mask_userinfo(netloc: str, *, keep_user: bool) -> str:
    userinfo, at, host = netloc.rpartition("@")
    if not at:
        return netloc
    user, colon, _password = userinfo.partition(":")
    if not keep_user:
        return f"{MASK}@{host}"
    return f"{user}:{MASK}@{host}" if colon else netloc


def _mask_query(query: str) -> str:
    if not query:
        return query
    pairs = []
    for pair in query.split("&"):
        name, eq, _value = pair.partition("=")
        pairs.append(f"{name}={MASK}" if eq and is_secret_param(name) else pair)
    return "&".join(pairs)
