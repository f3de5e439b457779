"""What a saved JSON report must hold before ``lifestats report`` renders it again (SPEC section 6).

The renderers (:mod:`lifestats.terminal`, :mod:`lifestats.report_html`, :mod:`lifestats.report_csv`) read
the document a run wrote. A file edited by hand, cut short or written by another tool could hold a count
that is text, a ranking row without its id, or a missing window, which the renderers would show as if it
were a figure (or fail on); this module refuses such a file with one line that names the first wrong key.
It checks the keys the renderers read and their types; keys it does not know are allowed (SPEC: new keys
may be added). The document is only checked, never rewritten: a valid report renders exactly as saved.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from .report import SCHEMA

Count = Annotated[int, Field(ge=0, lt=2**63)]  # a count is a signed 64-bit integer in every store


def _instant(value: str) -> str:
    """An ISO 8601 time with its UTC offset, as every time a run writes is."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError("an ISO 8601 time without its UTC offset")
    return value


Instant = Annotated[str, AfterValidator(_instant)]
Bounds = Annotated[list[Count], Field(min_length=2, max_length=2)]  # [lower, upper]
Figure = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Part(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class _CategoryRow(_Part):
    id: int | str

    @field_validator("id")
    @classmethod
    def _counted_key(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise ValueError("an integer outside the signed 64-bit range, which no key Lifestats counts is")
        return value

    visits: Count
    visits_bounds: Bounds | None = None


class _ItemRow(_CategoryRow):
    distinct_visitors: Count | None = None
    distinct_visitors_bounds: Bounds | None = None


class _Window(_Part):
    visits: Count
    visits_bounds: Bounds | None = None
    distinct_visitors: Count | None = None
    distinct_visitors_bounds: Bounds | None = None
    top_items: list[_ItemRow]
    top_categories: list[_CategoryRow]


class _Point(_Part):
    start: Instant
    visits: Count
    visits_bounds: Bounds | None = None
    distinct_visitors: Count | None = None
    distinct_visitors_bounds: Bounds | None = None


class _Series(_Part):
    bucket: Literal["minute", "hour", "day", "week", "month", "year"]
    points: list[_Point]
    truncated_before: Instant | None = None


class _Records(_Part):
    fetched: Count
    counted: Count
    rejected: Count
    bots: Count
    duplicates: Count
    future: Count = 0


class _Run(_Part):
    env: str
    mode: Literal["exact", "approx"]
    as_of: Instant
    started_at: Instant
    finished_at: Instant
    slices: Count | None  # None: interrupted before the plan was made
    workers: Count
    requests: Count
    retries: Count
    rate_limit: Figure
    achieved_rate: Figure
    resumed: bool = False
    workers_lost: Count = 0
    slices_split: Count = 0
    records_per_second: Figure | None = None
    cpu_seconds: Figure | None = None
    peak_rss_bytes: Count | None = None
    worker_peak_rss_bytes: Count | None = None


class _Report(_Part):
    partial: bool
    run: _Run
    records: _Records
    windows: dict[str, _Window]
    series: _Series
    warnings: list[str] = []
    partial_reason: str | None = None


def parse_json(data: bytes) -> Any:
    """A saved report's bytes as JSON, refusing what JSON has not (``NaN``, ``Infinity``, a number beyond
    a double) with a ValueError: Python's parser would take them, and no run writes them."""
    return json.loads(data, parse_constant=_no_constant, parse_float=_finite, object_pairs_hook=_one_of_each)


class KeyGivenTwice(ValueError):
    """JSON that a report is not: an object with a key given twice."""


def _one_of_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are each given once: a key given twice (a file edited by hand, or two files
    joined) has no one value to show, and no run writes it."""
    document = dict(pairs)
    if len(document) < len(pairs):
        twice = next(key for index, (key, _) in enumerate(pairs) if key in dict(pairs[:index]))
        raise KeyGivenTwice(f"the key '{twice:.40}' is given twice in one object")
    return document


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:40]} is beyond the range of a number")
    return number


def report_problem(document: Any) -> str | None:
    """What is wrong with a parsed JSON document as a Lifestats report, in words; None when nothing is."""
    if not isinstance(document, dict):
        return f"it is a JSON {_kind(document)}, not an object"
    schema = document.get("schema")
    if not isinstance(schema, str) or not schema.startswith("lifestats.report/"):
        return f"it has no 'schema': '{SCHEMA}'"
    if schema != SCHEMA:
        return f"its schema is '{schema:.40}', and this Lifestats reads '{SCHEMA}' (a newer release wrote it?)"
    try:
        _Report.model_validate(document)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])[1:]
        if error["type"] == "missing":
            return f"'{where}' is missing"
        return f"'{where}': {error['msg'][0].lower()}{error['msg'][1:]} (it is {_value(error.get('input'))})"
    if "all" not in document["windows"]:
        return "'windows.all' is missing"
    return None


def _kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return repr(value)[:40]
