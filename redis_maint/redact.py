"""Keep credentials out of logs, errors, output and history."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# scheme://user:password@host -> scheme://user:***@host (also a password with no user)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_AWS_SECRET = re.compile(
    r"(?i)(aws_secret_access_key|aws_session_token|secret|password|token)(['\"]?\s*[=:]\s*['\"]?)[^\s'\",}]+"
)
_AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{12,}\b")
_QUERY_SIG = re.compile(r"(?i)(X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature)=[^&\s]+")


def redact(text: str) -> str:
    """Mask anything that looks like a credential in free text."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = _AWS_SECRET.sub(lambda m: f"{m[1]}{m[2]}***", text)
    text = _AWS_KEY_ID.sub(lambda m: m[1] + "****", text)
    return _QUERY_SIG.sub(lambda m: f"{m[1]}=***", text)


def redact_url(url: str) -> str:
    """A URL safe to show: the password (if any) replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
