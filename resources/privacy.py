"""How personal data is pseudonymized on ingestion, and where the salt comes from."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dagster as dg
from pydantic import Field


class Privacy(dg.ConfigurableResource):
    """The salt of the hashes that replace personal identifiers (emails).

    A secret salt keeps the hashes joinable inside the platform and useless for
    looking people up outside it. Production sets ``PLATFORM_PII_SALT`` (read at run
    time, never shown in the UI). Without it, each home generates a random salt once
    and keeps it in ``salt_file`` (mode 0600), so no two installations share one and
    no salt is ever committed.
    """

    configured_salt: str | None = Field(default=None, description="The salt, from PLATFORM_PII_SALT.")
    salt_file: str = Field(description="Where this home keeps its generated salt when none is configured.")

    def salt(self) -> str:
        return self.configured_salt or home_salt(Path(self.salt_file))


def home_salt(path: Path) -> str:
    """The salt kept at ``path``, created there once (atomically, so concurrent runs agree)."""
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(secrets.token_hex(32))
    try:
        os.link(draft, path)  # fails if another process linked its salt first: theirs wins
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_text(encoding="utf-8").strip()
