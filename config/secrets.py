"""Secret-bearing settings: the schema marks each such field with its kind, and the kind masks it.

Three effects, so no command has to remember which fields are secret:
- repr() leaves them out (a settings object in a traceback or a debug log shows none);
- dumping settings (`config show`, anything that serialises them) gives the masked form;
- `register(settings)` hands the exact secret values to redact(), which then masks them in
  every log line, error message, history row and webhook body.
The real value is still what code reads through the attribute (`settings.redis_url`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field, PlainSerializer

from redis_maint.redact import (
    endpoint_secrets,
    redact_endpoint,
    redact_url,
    register_secrets,
    url_secrets,
)


@dataclass(frozen=True)
class SecretKind:
    """How to mask one kind of secret-bearing value, and which parts of it are the secret."""

    name: str
    mask: Callable[[str], str]
    parts: Callable[[str], list[str]]


CREDENTIAL_URL = SecretKind("url with credentials", redact_url, url_secrets)
ENDPOINT_URL = SecretKind("endpoint url", redact_endpoint, endpoint_secrets)

# A URL that may carry a password (userinfo or ?password=): Redis, history store, Docker engine.
CredentialUrl = Annotated[
    str, CREDENTIAL_URL, Field(repr=False), PlainSerializer(redact_url, return_type=str)
]
# A URL that is itself a credential (webhooks, Slack, dead-man's switch): only scheme and host show.
EndpointUrl = Annotated[
    str, ENDPOINT_URL, Field(repr=False), PlainSerializer(redact_endpoint, return_type=str)
]


def secret_fields(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, SecretKind, str]]:
    """(dotted name, kind, value) of every secret-bearing field, nested sections included."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        kind = next((m for m in info.metadata if isinstance(m, SecretKind)), None)
        if kind is not None and isinstance(value, str):
            yield f"{prefix}{name}", kind, value
        elif isinstance(value, BaseModel):
            yield from secret_fields(value, f"{prefix}{name}.")


def register(settings: Any) -> None:
    """Let redact() mask these settings' secret values wherever they turn up."""
    register_secrets(part for _name, kind, value in secret_fields(settings) for part in kind.parts(value))
