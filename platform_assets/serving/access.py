"""Access control of the scoring API: named API keys, stored only as sha256 hashes.

A client sends its key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. With
keys configured, every route but ``/healthz`` (the liveness probe) needs one: none is a
401, one that matches no configured key a 403, both JSON like FastAPI's errors.

The check is a plain ASGI middleware, outermost, so a refused request costs no routing,
validation or admission slot: the presented key is hashed once with sha256 and the digest
looked up in a dict of digests. A timing difference of that lookup can only tell
something about a digest, never about a key, so no constant-time comparison is needed on
top. The settings and the keys file hold ``sha256:<hex>`` digests with a name each, never
keys: a leaked configuration grants nothing.

``PLATFORM_SERVING_API_KEYS_FILE`` is watched: each checked request stats it (about a
microsecond) and re-reads it when its mtime, size or inode changed, so keys are added and
revoked without a restart. A file that cannot be read or parsed keeps the last good keys
(an error is logged once per change), so a bad edit never locks every client out.

Keys are never logged or audited: the audit records the name of the key that answered
(``api_key_name``), the logs only names and counts.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import secrets
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from platform_assets.serving.asgi import send_json

LOG = logging.getLogger("churn_platform.serving")
OPEN_PATHS = frozenset({"/healthz"})
KEY_NAME_SCOPE = "churn_platform.api_key_name"  # the ASGI scope entry the endpoint reads the name from
HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
HOW = "send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`"


class KeysInvalid(ValueError):
    """A keys setting or file that cannot be used; the message never holds a key or a digest."""


def hash_key(key: str) -> str:
    """The form a key is configured in: ``sha256:<hex>`` of its UTF-8 bytes."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key: 32 bytes from the OS's CSPRNG, URL-safe text."""
    return secrets.token_urlsafe(32)


def key_line(name: str) -> tuple[str, str]:
    """A new key for ``name`` and the keys-file line that configures it (checked as the file is)."""
    key = new_key()
    checked({name: hash_key(key)}, "serving-key")
    return key, f"{name} {hash_key(key)}"


def checked(named: dict[str, str], where: str) -> dict[str, str]:
    """``{name: digest}`` as configured, checked, turned into ``{digest: name}`` for the lookup."""
    by_digest: dict[str, str] = {}
    for name, digest in named.items():
        if not NAME.match(name):
            raise KeysInvalid(f"{where}: key name {name!r} is not 1 to 64 letters, digits or _.@- characters")
        digest = digest.strip().lower()
        if not HASH.match(digest):
            raise KeysInvalid(
                f"{where}: key {name!r} is not `sha256:` and 64 hex digits (configure hashes, never keys: "
                "`churn-platform serving-key NAME` prints both)"
            )
        if digest in by_digest:
            raise KeysInvalid(f"{where}: keys {by_digest[digest]!r} and {name!r} have the same hash")
        by_digest[digest] = name
    return by_digest


def parse_lines(text: str, where: str) -> dict[str, str]:
    """A keys file: one ``NAME sha256:<hex>`` per line; blank lines and ``#`` comments are skipped."""
    named: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise KeysInvalid(f"{where} line {number}: expected `NAME sha256:<hex>`")
        if parts[0] in named:
            raise KeysInvalid(f"{where} line {number}: key name {parts[0]!r} appears twice")
        named[parts[0]] = parts[1]
    return checked(named, where)


class ApiKeys:
    """The configured keys (``{digest: name}``): the setting's, fixed, and the file's, re-read when it changes."""

    def __init__(self, named: dict[str, str], path: Path | None):
        self._fixed = checked(named, "PLATFORM_SERVING_API_KEYS")
        self.path = path
        self._seen: tuple | None = None
        self._failed: tuple | None = None
        self._keys = dict(self._fixed)
        if path is not None:
            stamp = self._stamp()
            if stamp is None:
                raise KeysInvalid(f"PLATFORM_SERVING_API_KEYS_FILE {path} does not exist or cannot be read")
            self._keys = self._merged(self._read())
            self._seen = stamp

    @property
    def configured(self) -> bool:
        """Keys are required: some are set, or a keys file is named (even empty: then every request is refused)."""
        return bool(self._fixed) or self.path is not None

    @property
    def names(self) -> list[str]:
        return sorted(self._keys.values())

    def name_of(self, key: str) -> str | None:
        """The name of the configured key ``key`` is, or None."""
        if self.path is not None:
            self._reload()
        return self._keys.get(hash_key(key))

    def _stamp(self) -> tuple | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def _read(self) -> dict[str, str]:
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise KeysInvalid(f"PLATFORM_SERVING_API_KEYS_FILE {self.path}: {type(error).__name__}") from None
        return parse_lines(text, f"PLATFORM_SERVING_API_KEYS_FILE {self.path}")

    def _merged(self, from_file: dict[str, str]) -> dict[str, str]:
        clash = set(from_file) & set(self._fixed)
        if clash:
            raise KeysInvalid(f"{self.path}: a key is configured in PLATFORM_SERVING_API_KEYS too")
        return self._fixed | from_file

    def _reload(self) -> None:
        stamp = self._stamp()
        if stamp == self._seen or stamp == self._failed:
            return
        try:
            if stamp is None:
                raise KeysInvalid(f"PLATFORM_SERVING_API_KEYS_FILE {self.path} is gone")
            keys = self._merged(self._read())
        except KeysInvalid as invalid:
            self._failed = stamp
            LOG.error(f"API keys not reloaded, keeping the last good {len(self._keys)}: {invalid}")
            return
        self._keys, self._seen, self._failed = keys, stamp, None
        LOG.warning(f"API keys reloaded from {self.path}: {len(keys)} keys ({', '.join(self.names) or 'none'})")


class RequireApiKey:
    """ASGI middleware: a request to any path but ``OPEN_PATHS`` needs a configured key (401 none, 403 wrong).

    The key's name goes into the request's scope (``KEY_NAME_SCOPE``) for the audit.
    """

    def __init__(self, app, keys: ApiKeys, metrics: CollectorRegistry):
        self.app, self.keys = app, keys
        self.refused = Counter(
            "churn_serving_auth_refused",
            "Requests refused for their API key: 401 without one, 403 with a key not configured.",
            ["status"],
            registry=metrics,
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        key = _presented(scope["headers"])
        if key is None:
            return await self._refuse(send, 401, f"an API key is required: {HOW}")
        name = self.keys.name_of(key)
        if name is None:
            return await self._refuse(send, 403, "the API key is not accepted (unknown or revoked)")
        scope[KEY_NAME_SCOPE] = name
        return await self.app(scope, receive, send)

    async def _refuse(self, send, status: int, detail: str) -> None:
        self.refused.labels(str(status)).inc()
        challenge = {"WWW-Authenticate": 'Bearer realm="churn-platform"'} if status == 401 else None
        await send_json(send, status, {"detail": detail}, challenge)


def _presented(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key of ``Authorization: Bearer`` or ``X-API-Key`` (the first non-empty), or None."""
    for header, value in headers:
        if header == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip().decode("latin-1")
        elif header == b"x-api-key" and value.strip():
            return value.strip().decode("latin-1")
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure(keys: ApiKeys, host: str, port: int, allow_keyless_remote: bool) -> str:
    """What the start-up says about access; raises ``KeysInvalid`` for a keyless non-loopback bind not allowed."""
    if keys.configured:
        where = f" (and {keys.path}, watched)" if keys.path else ""
        return f"API keys required on every route but /healthz: {len(keys.names)} configured{where}"
    if not is_loopback(host) and not allow_keyless_remote:
        raise KeysInvalid(
            f"refusing to serve {host}:{port} without API keys: any host that reaches it could score every "
            "customer. Configure PLATFORM_SERVING_API_KEYS or PLATFORM_SERVING_API_KEYS_FILE "
            "(`churn-platform serving-key NAME`), or set PLATFORM_SERVING_ALLOW_KEYLESS_REMOTE=true "
            "if a proxy in front authenticates"
        )
    return f"no API keys configured: every process that reaches {host}:{port} can score"
