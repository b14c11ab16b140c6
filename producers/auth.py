"""API keys: who may enqueue, which job types, how fast.

Keys are configured hashed — only the sha256 of each key is stored, in a YAML
(or JSON) document read from ``CONVEYOR_API_KEYS_FILE`` or ``CONVEYOR_API_KEYS``::

    keys:
      - name: checkout                 # shows in logs and scopes idempotency keys
        sha256: 9f86d08…               # `conveyor api keys create` prints key and hash
        job_types: [order.placed]      # optional: the types this key may enqueue
        rate_per_s: 50                 # optional: jobs/s (default: CONVEYOR_API_RATE_PER_S)
        burst: 100                     # optional: bucket size (default: CONVEYOR_API_BURST)
        scopes: [admin]                # optional: admin reads every job's status
                                       # viewer / operator: may log in to the console

The console (``conveyor console``) accepts the keys with a console scope: ``viewer``
(reads every page), ``operator`` (also redrives, deletes, scales, cancels, fires
schedules); ``admin`` implies ``operator``. A key without one of these cannot log in.

A job's status (``GET /v1/jobs/<id>``) is shown to the key that enqueued it, and to
keys with the ``admin`` scope; to any other key it is 404, as if unknown.

Keys are high-entropy random strings (``cvy_`` + 43 characters), so an unsalted
sha256 is enough; a presented key is hashed and compared with every configured
hash in constant time (:func:`hmac.compare_digest`, no early exit). Clients send
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infra.errors import ConfigError
from infra.validation import errors_line

#: Every generated key starts with this, so a leaked one is easy to recognise.
KEY_PREFIX = "cvy_"
#: The scope that reads every job's status, whoever enqueued it.
ADMIN_SCOPE = "admin"
#: Console scopes: a viewer reads the console's pages, an operator also acts on them.
VIEWER_SCOPE = "viewer"
OPERATOR_SCOPE = "operator"


class KeysError(ConfigError, ValueError):
    """The keys configuration is unreadable or invalid (the message says where and why)."""


class _KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    job_types: list[str] | None = None
    rate_per_s: Annotated[float, Field(gt=0)] | None = None
    burst: Annotated[float, Field(ge=1)] | None = None
    scopes: list[Literal["admin", "operator", "viewer"]] = Field(default_factory=list)


class _KeysDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[_KeyEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class ApiKey:
    """A configured key (its hash only) and what it may do."""

    name: str
    sha256: str
    job_types: frozenset[str] | None = None
    rate_per_s: float | None = None
    burst: float | None = None
    scopes: frozenset[str] = frozenset()

    @property
    def admin(self) -> bool:
        """Whether this key reads every job's status."""
        return ADMIN_SCOPE in self.scopes

    @property
    def console_role(self) -> Literal["viewer", "operator"] | None:
        """What this key may do in the console (``admin`` implies operator); None: no login."""
        if self.admin or OPERATOR_SCOPE in self.scopes:
            return "operator"
        return "viewer" if VIEWER_SCOPE in self.scopes else None

    def may_read(self, owner: str | None) -> bool:
        """Whether this key sees the status of a job enqueued by the key named ``owner``
        (None: recorded before jobs named their key, or without authentication)."""
        return self.admin or (owner is not None and owner == self.name)

    def may_enqueue(self, job_type: str) -> bool:
        """Whether this key may enqueue ``job_type``."""
        return self.job_types is None or job_type in self.job_types


def generate_key() -> str:
    """A new random API key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The sha256 (hex) of ``key``, as stored in the keys configuration."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_keys(text: str, *, source: str, job_types: Iterable[str] | None = None) -> list[ApiKey]:
    """The keys of a YAML/JSON document; :class:`KeysError` naming ``source`` if invalid.

    ``job_types``: the declared job types; a key naming another one is an error.
    """
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KeysError(f"{source}: not valid YAML: {exc}") from None
    try:
        parsed = _KeysDocument.model_validate(doc if doc is not None else {})
    except ValidationError as exc:
        raise KeysError(f"{source}: {errors_line(exc, whole='document')}") from None
    known = set(job_types) if job_types is not None else None
    names: set[str] = set()
    keys = []
    for i, entry in enumerate(parsed.keys):
        if entry.name in names:
            raise KeysError(f"{source}: keys.{i}.name: '{entry.name}' is used twice")
        names.add(entry.name)
        if known is not None and entry.job_types is not None:
            unknown = sorted(set(entry.job_types) - known)
            if unknown:
                raise KeysError(
                    f"{source}: keys.{i}.job_types: unknown job type(s) {', '.join(unknown)}"
                )
        keys.append(
            ApiKey(
                name=entry.name,
                sha256=entry.sha256,
                job_types=frozenset(entry.job_types) if entry.job_types is not None else None,
                rate_per_s=entry.rate_per_s,
                burst=entry.burst,
                scopes=frozenset(entry.scopes),
            )
        )
    return keys


def load_keys(
    *, path: Path | None, inline: str | None, job_types: Iterable[str] | None = None
) -> list[ApiKey]:
    """The keys from ``path`` and/or the ``inline`` document (both may be given)."""
    keys: list[ApiKey] = []
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise KeysError(f"cannot read the API keys file {path}: {exc.strerror}") from None
        keys += parse_keys(text, source=str(path), job_types=job_types)
    if inline:
        keys += parse_keys(inline, source="CONVEYOR_API_KEYS", job_types=job_types)
    seen: set[str] = set()
    for key in keys:
        if key.name in seen:
            raise KeysError(f"API key name '{key.name}' is configured twice")
        seen.add(key.name)
    return keys


class KeyRing:
    """Finds the configured key a request presents, in constant time."""

    def __init__(self, keys: Sequence[ApiKey]) -> None:
        self.keys = list(keys)

    def find(self, presented: str | None) -> ApiKey | None:
        """The key whose hash matches ``presented``; None for a missing or wrong key."""
        if not presented:
            return None
        digest = hash_key(presented)
        found = None
        for key in self.keys:  # no early exit: the time does not depend on which key matched
            if hmac.compare_digest(digest, key.sha256):
                found = key
        return found


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key of ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None
