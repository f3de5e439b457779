"""Fault injection for the mock API, deterministic by seed, and the one function that builds every answer.

Decisions depend on `(seed, offset, attempt number of that offset)` only, never on the global order of
requests, so concurrent clients see the same faults whatever order their requests arrive in. Transient kinds
hit at most `max_per_offset` attempts of an offset (the first ones), after which the offset is served
correctly. The content kind `duplicates` is decided per offset and applies to every request of that offset.

`build_reply` turns `(source, offset, limit, fault)` into a `Reply` (status, headers, body, or an action
such as a connection reset); the HTTP server and the respx routes both send exactly that.
"""

from __future__ import annotations

import email.utils
import hashlib
import math
import threading
import time
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from mocks.source import PageSource, PrecedingSource, page_payload

STATUS_KINDS = ("500", "502", "503", "504")
TRANSIENT_KINDS = (*STATUS_KINDS, "429", "429-date", "reset", "slow", "truncated", "html", "stuck")
CONTENT_KINDS = ("duplicates",)
KINDS = (*TRANSIENT_KINDS, *CONTENT_KINDS)
# Kinds injected only when asked for by name (not part of the default `kinds`): a 200 whose body has no
# records at all (an error body that says "try again").
OPT_IN_KINDS = ("no-records",)
ALL_TRANSIENT = (*TRANSIENT_KINDS, *OPT_IN_KINDS)

JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"

Action = Literal["reset", "slow"]


def uniform(*parts: object) -> float:
    """A uniform float in [0, 1) that depends only on `parts` (ints and strings)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def format_seconds(seconds: float) -> str:
    """Retry-After seconds: an integer when whole, else rounded up to the millisecond ("0.2", "1.437")."""
    millis = math.ceil(max(seconds, 0.0) * 1000 - 1e-9)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis / 1000:.3f}".rstrip("0")


def http_date_after(seconds: float) -> str:
    """An HTTP date (RFC 7231 IMF-fixdate) at least `seconds` from now."""
    return email.utils.formatdate(math.ceil(time.time() + seconds), usegmt=True)


@dataclass(frozen=True)
class FaultSpec:
    """Which faults to inject.

    `rate` is either a float, the probability that an eligible attempt gets a transient fault (shared evenly
    by the transient kinds in `kinds`; `duplicates`, if in `kinds`, hits an offset with that same
    probability), or a mapping kind -> probability. Transient probabilities must sum to at most 1.
    """

    seed: int = 0
    rate: float | Mapping[str, float] = 0.0
    kinds: AbstractSet[str] = frozenset(KINDS)
    max_per_offset: int = 2
    retry_after: float = 0.2
    slow_seconds: float = 2.0
    rates: Mapping[str, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kinds = frozenset(self.kinds)
        known = (*KINDS, *OPT_IN_KINDS)
        unknown = kinds.difference(known) | (
            set(self.rate).difference(known) if isinstance(self.rate, Mapping) else set()
        )
        if unknown:
            raise ValueError(f"unknown fault kind(s) {sorted(unknown)}; known: {', '.join(known)}")
        if self.max_per_offset < 0 or self.retry_after < 0 or self.slow_seconds < 0:
            raise ValueError("max_per_offset, retry_after and slow_seconds must not be negative")
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "rates", _rates(self.rate, kinds))

    def decide(self, offset: int, attempt: int) -> str | None:
        """The transient fault for the `attempt`-th request (0-based) of `offset`, or None."""
        if attempt >= self.max_per_offset:
            return None
        u = uniform(self.seed, "transient", offset, attempt)
        total = 0.0
        for kind in ALL_TRANSIENT:
            total += self.rates.get(kind, 0.0)
            if u < total:
                return kind
        return None

    def duplicates(self, offset: int) -> int:
        """How many earlier records (0-3) the page at `offset` repeats at its start."""
        p = self.rates.get("duplicates", 0.0)
        if p <= 0.0 or uniform(self.seed, "duplicates", offset) >= p:
            return 0
        return 1 + int(uniform(self.seed, "duplicates-count", offset) * 3)


def _rates(rate: float | Mapping[str, float], kinds: frozenset[str]) -> dict[str, float]:
    if isinstance(rate, Mapping):
        rates = {k: float(v) for k, v in rate.items() if k in kinds}
    else:
        transient = [k for k in ALL_TRANSIENT if k in kinds]
        rates = {k: float(rate) / len(transient) for k in transient}
        rates.update({k: float(rate) for k in CONTENT_KINDS if k in kinds})
    if any(not 0.0 <= v <= 1.0 for v in rates.values()):
        raise ValueError(f"fault rates must lie in [0, 1]: {rates}")
    if sum(v for k, v in rates.items() if k in ALL_TRANSIENT) > 1.0 + 1e-9:
        raise ValueError(f"transient fault rates sum to more than 1: {rates}")
    return rates


class AttemptCounter:
    """Thread-safe count of the requests seen per offset (the attempt number of the next one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[int, int] = {}

    def next(self, offset: int) -> int:
        with self._lock:
            attempt = self._counts.get(offset, 0)
            self._counts[offset] = attempt + 1
            return attempt

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


def records_before(source: PageSource, offset: int, n: int) -> list[dict]:
    """The last `n` records with id < offset (fewer if the source has fewer)."""
    if n <= 0 or offset <= 0:
        return []
    if isinstance(source, PrecedingSource):
        return source.before(offset, n)

    def n_below(start: int) -> list[dict] | None:
        records, _ = source.page(start, n)
        return records if len(records) == n and records[-1]["id"] < offset else None

    if n_below(0) is None:
        return [r for r in source.page(0, n)[0] if r["id"] < offset]
    low, high = 0, offset  # [low, offset) holds >= n records, [high, offset) fewer
    while high - low > 1:
        middle = (low + high) // 2
        if n_below(middle) is None:
            high = middle
        else:
            low = middle
    return source.page(low, n)[0]


@dataclass(frozen=True)
class Reply:
    """One answer of the mock API. `action` "reset" means: no response, reset the connection; "slow" means
    answer after `delay` seconds (the respx routes raise a timeout instead)."""

    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    fault: str | None = None
    action: Action | None = None
    delay: float = 0.0


def error_body(status: int, message: str) -> bytes:
    return orjson.dumps({"meta": {"code": status}, "error": message})


def json_error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, error_body(status, message), headers=headers)


def html_page(status: int, title: str) -> bytes:
    return (
        f"<!DOCTYPE html>\n<html><head><title>{status} {title}</title></head>\n"
        f"<body><center><h1>{status} {title}</h1></center><hr><center>nginx</center></body></html>\n"
    ).encode()


def status_reply(kind: str, spec: FaultSpec) -> Reply:
    """The answer of a status fault: 5xx, 429 with Retry-After in seconds or as an HTTP date."""
    seconds = (("Retry-After", format_seconds(spec.retry_after)),)
    if kind == "500":
        return Reply(500, error_body(500, "Internal Server Error"), fault=kind)
    if kind == "502":
        return Reply(502, html_page(502, "Bad Gateway"), HTML_TYPE, fault=kind)
    if kind == "503":
        return Reply(503, error_body(503, "Service Unavailable"), headers=seconds, fault=kind)
    if kind == "504":
        return Reply(504, html_page(504, "Gateway Time-out"), HTML_TYPE, fault=kind)
    if kind == "429":
        return Reply(429, error_body(429, "Too Many Requests"), headers=seconds, fault=kind)
    if kind == "429-date":
        date = (("Retry-After", http_date_after(spec.retry_after)),)
        return Reply(429, error_body(429, "Too Many Requests"), headers=date, fault=kind)
    raise ValueError(f"not a status fault: {kind!r}")


def build_reply(
    source: PageSource,
    offset: int,
    limit: int,
    fault: str | None = None,
    spec: FaultSpec | None = None,
    duplicates: int = 0,
) -> Reply:
    """The answer to `GET ?offset&limit` under `fault` (a transient kind or None) and `duplicates` repeats."""

    def payload() -> tuple[Any, tuple[tuple[str, str], ...]]:
        document = page_payload(source, offset, limit)
        if duplicates:
            document["response"] = _with_repeats(source, offset, document["response"], duplicates)
        return document, ()

    def stuck(document: Any) -> None:
        document["meta"]["next_offset"] = offset

    return fault_reply(payload, fault, spec, stuck=stuck, duplicates=duplicates)


def fault_reply(
    payload: Callable[[], tuple[Any, tuple[tuple[str, str], ...]]],
    fault: str | None,
    spec: FaultSpec | None = None,
    *,
    stuck: Callable[[Any], None] | None = None,
    duplicates: int = 0,
) -> Reply:
    """The answer under `fault`: an error status, a reset, or the page `payload()` gives (body, headers),
    served whole, slowly, cut in half, with a next reference that does not move (`stuck`), or replaced
    by a 200 body without the records (`no-records`)."""
    spec = spec or FaultSpec()
    if fault == "reset":
        return Reply(0, fault=fault, action="reset")
    if fault in STATUS_KINDS or fault in ("429", "429-date"):
        return status_reply(fault, spec)
    if fault == "html":
        return Reply(200, html_page(503, "Service Temporarily Unavailable"), HTML_TYPE, fault=fault)
    if fault == "no-records":
        body = orjson.dumps({"meta": {"code": 200}, "error": "the service is busy, try again"})
        return Reply(200, body, fault=fault)
    if fault not in (None, "slow", "truncated", "stuck"):
        raise ValueError(f"unknown fault kind {fault!r}")
    document, headers = payload()
    if fault == "stuck" and stuck is not None:
        stuck(document)
    body = orjson.dumps(document)
    if fault == "truncated":
        body = body[: len(body) // 2]
    label = _label(fault, duplicates)
    if fault == "slow":
        return Reply(200, body, headers=headers, fault=label, action="slow", delay=spec.slow_seconds)
    return Reply(200, body, headers=headers, fault=label)


def _with_repeats(source: PageSource, offset: int, records: list[Any], n: int) -> list[Any]:
    bound = min(offset, records[0]["id"]) if records else offset
    return [*records_before(source, bound, n), *records]


def _label(fault: str | None, duplicates: int) -> str | None:
    if not duplicates:
        return fault
    return "duplicates" if fault is None else f"{fault}+duplicates"
