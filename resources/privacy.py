"""How personal data is pseudonymized on ingestion."""

import dagster as dg
from pydantic import Field


class Privacy(dg.ConfigurableResource):
    """The salt of the hashes that replace personal identifiers (emails).

    Set ``PLATFORM_PII_SALT`` in production: a secret salt keeps the hashes joinable
    inside the platform and useless for looking people up outside it.
    """

    salt: str = Field(description="Salt prepended before hashing personal identifiers.")
