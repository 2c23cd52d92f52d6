"""What the scoring API accepts: strict JSON, strictly typed ids, and what-if values within declared bounds.

Python's ``json`` reads ``NaN`` and ``Infinity``, which are not JSON and which no model
input should be; the body is parsed with pydantic's parser instead (in Rust, with the
validation: a few microseconds for one id), which refuses them (a 422 ``json_invalid``,
as FastAPI words it). Ids are a string or an integer, never a boolean or a float (``true``
would otherwise be customer 1).

What-if values are checked against the version's frozen reference profile: a value
outside the declared range is refused with a 422 naming the field and its bounds, not
scored with a flag, because a tree model's answer is flat beyond what it saw and a
flag is easily ignored. The declared range of a numeric feature is the range of the
training sample frozen in the profile, widened by its width on each side so a later
day's values still fit (tenure grows), and never below zero for a feature training
never saw negative (counts, durations). Integer features take integers only, text is
bounded in length, and every number must be finite.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import polars as pl
import pydantic
import pydantic_core
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

CustomerId = Annotated[StrictStr, Field(min_length=1, max_length=128)] | StrictInt
Bounds = tuple[float | None, float | None]


class ScoreRequest(BaseModel):
    """Exactly one of: a customer id, a list of ids, or feature values (one row or a list of rows)."""

    model_config = ConfigDict(extra="forbid")

    customer_id: CustomerId | None = Field(
        default=None, description="Score one customer from the online store (404 if unknown)."
    )
    customer_ids: list[CustomerId] | None = Field(
        default=None,
        min_length=1,
        description="Score several customers; unknown ids are listed in `unknown_customer_ids`, not failed.",
    )
    features: dict[str, Any] | list[dict[str, Any]] | None = Field(
        default=None,
        description="What-if: the feature values themselves, every declared feature of the champion, no other, "
        "each within its declared bounds (the schema of the champion now served).",
    )

    @model_validator(mode="after")
    def one_input(self) -> ScoreRequest:
        given = [n for n in ("customer_id", "customer_ids", "features") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of customer_id, customer_ids, features (got {given or 'none'})")
        return self


def parse_score_request(body: bytes) -> ScoreRequest:
    """The body as a ``ScoreRequest``, or a ``RequestValidationError`` (a 422) worded as FastAPI words its own."""
    try:
        data = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as error:
        detail = f"JSON decode error: {error} (NaN and Infinity are not JSON)"
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body", 0), "msg": detail, "input": {}, "ctx": {"error": str(error)}}]
        ) from None
    try:
        return ScoreRequest.model_validate(data)
    except pydantic.ValidationError as invalid:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in invalid.errors(include_url=False)]
        ) from None


def declared_bounds(profile: dict) -> dict[str, Bounds]:
    """The what-if range of each numeric feature, from the reference profile frozen at training."""
    bounds = {}
    for name, feature in profile["features"].items():
        if feature["kind"] != "numeric" or not feature["sample"]:
            continue
        low, high = feature["sample"][0], feature["sample"][-1]  # the sample is stored sorted
        width = max(high - low, 1.0)
        bounds[name] = (max(low - width, 0.0) if low >= 0 else low - width, high + width)
    return bounds


def what_if_model(
    version: str, features: list[str], schema: pl.Schema, bounds: dict[str, Bounds], max_text: int
) -> tuple[type[BaseModel], dict[str, Bounds]]:
    """A pydantic model of a version's declared features (each required, typed and bounded, nothing else),
    and the bounds it enforces (whole numbers for integer features)."""
    fields, enforced = {}, {}
    for name in features:
        dtype = schema[name]
        low, high = bounds.get(name, (None, None))
        if dtype == pl.String:
            kind, described = Annotated[StrictStr, Field(max_length=max_text)], f"text of at most {max_text} characters"
        elif dtype == pl.Boolean:
            kind, described = StrictBool, "boolean"
        elif dtype.is_integer():
            low, high = (None if low is None else math.floor(low)), (None if high is None else math.ceil(high))
            kind, described = Annotated[StrictInt, Field(ge=low, le=high)], f"integer in {_shown(low, high)}"
            enforced[name] = (low, high)
        else:
            kind = Annotated[float, Field(strict=True, ge=low, le=high, allow_inf_nan=False)]
            described = f"finite number in {_shown(low, high)}"
            enforced[name] = (low, high)
        fields[name] = (kind | None, Field(..., description=f"{described}; null when unknown"))
    model = pydantic.create_model(
        f"FeaturesV{version}", __config__=ConfigDict(extra="forbid", protected_namespaces=()), **fields
    )
    return model, enforced


def bounds_message(error: dict, bounds: dict[str, Bounds], version: str) -> str:
    """A range error's message naming the field and both of its bounds."""
    name = error["loc"][0]
    if error["type"] not in ("greater_than_equal", "less_than_equal") or name not in bounds:
        return error["msg"]
    return f"{name} must lie in {_shown(*bounds[name])}, the declared range of model version {version}"


def _shown(low: float | None, high: float | None) -> str:
    return "[" + ", ".join("unbounded" if b is None else f"{b:g}" for b in (low, high)) + "]"
