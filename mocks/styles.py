"""The mock API's pagination styles: one way of paging per Lifestats paginator, over the same records.

`MockStyle` says how the mock pages and how its answers look (parameter names, where the records sit,
a bare-array body, totals in the body or a header, next references as tokens, cursors, relative or
absolute URLs, `Link` headers) and how it serves its records (in any order inside a page, with ids as
decimal strings, shifted so that some are negative). `StylePager.answer` turns one request into a
`Reply` through `mocks.faults.fault_reply`, so every fault kind applies to every style.

| style | request | answer |
| --- | --- | --- |
| offset_id | `?offset=<id>&limit=n` | `{"meta": {"next_offset": id}, "response": [...]}` (the original) |
| keyset | `?id__gte=x[&id__lt=y]&limit=n` | `{"rows": [...], "next": "<last id>" or null}` (like Datasette) |
| offset | `?offset=<row>&limit=n` | `{"results": [...], "count": N}` and `X-Total-Count: N` |
| page_number | `?page=p&limit=n` (from 1) | `{"results": [...], "count": N, "total_pages": P}` |
| cursor | `?cursor=c&limit=n` | `{"data": [...], "next_cursor": "<opaque>" or null}` |
| next_url | the URL as given | `{"results": [...], "next": "<relative or absolute URL>" or null}` |
| link_header | `?page=p&limit=n` | a bare JSON array and `Link: <...>; rel="next"` |

Records keep their source order across pages (ascending id); positions are row numbers in that order.
"""

from __future__ import annotations

import base64
import binascii
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from mocks.faults import FaultSpec, Reply, fault_reply
from mocks.source import PageSource, page_payload

STYLES = ("offset_id", "keyset", "offset", "page_number", "cursor", "next_url", "link_header")
_RECORDS_KEY = {
    "offset_id": "response",
    "keyset": "rows",
    "offset": "results",
    "page_number": "results",
    "cursor": "data",
    "next_url": "results",
    "link_header": "",
}
INT64_MIN = -(2**63)


@dataclass(frozen=True)
class MockStyle:
    """How the mock pages and shapes its answers. `records_key` None: the style's usual key ("" = a bare array)."""

    name: str = "offset_id"
    records_key: str | None = None
    id_param: str = "id__gte"
    upper_param: str | None = "id__lt"
    page_param: str = "page"
    cursor_param: str = "cursor"
    next_key: str = "next"  # keyset's token, next_url's URL
    cursor_key: str = "next_cursor"
    total_key: str | None = "count"
    total_pages_key: str | None = "total_pages"
    total_header: str | None = "X-Total-Count"
    absolute_next: bool = False  # next_url: absolute URLs (else relative to the request)
    unsorted: bool = False  # the records of a page in a shuffled (deterministic) order
    string_ids: bool = False  # ids served as strings of decimal digits
    id_shift: int = 0  # served id = source id + id_shift (a negative shift gives negative ids)
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        if self.name not in STYLES:
            raise ValueError(f"unknown mock style {self.name!r}; known: {', '.join(STYLES)}")

    @property
    def key(self) -> str:
        return _RECORDS_KEY[self.name] if self.records_key is None else self.records_key


@dataclass(frozen=True)
class Request:
    """One parsed request: the position it asks for (the fault key), its page size, or what is wrong."""

    position: int | None
    limit: int | None
    problem: str | None = None
    upper: int | None = None


def encode_cursor(row: int) -> str:
    return base64.urlsafe_b64encode(f"row:{row}".encode()).decode().rstrip("=")


def decode_cursor(text: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not raw.startswith("row:") or not raw[4:].isdigit():
        return None
    return int(raw[4:])


def source_ids(source: PageSource) -> Sequence[int]:
    """The source's ids in order (row positions index them)."""
    ids = getattr(source, "ids", None)
    if ids is None:
        raise ValueError(f"{type(source).__name__} has no row positions (ids); it serves offset_id only")
    return ids  # type: ignore[no-any-return]


class StylePager:
    """Serves a `PageSource` in one `MockStyle`."""

    def __init__(self, source: PageSource, style: MockStyle, offset_param: str, limit_param: str) -> None:
        self.source = source
        self.style = style
        self.offset_param = offset_param
        self.limit_param = limit_param
        self._ids = source_ids(source) if style.name not in ("offset_id", "keyset") else None

    # -- requests ------------------------------------------------------------------------------------
    def parse(self, values: dict[str, list[str]], integer: Callable[..., tuple[int | None, str | None]]) -> Request:
        style = self.style
        limit, limit_problem = integer(values, self.limit_param, minimum=1)
        if style.name == "offset_id":
            position, problem = integer(values, self.offset_param, minimum=INT64_MIN)
        elif style.name == "keyset":
            position, problem = (INT64_MIN, None)
            if style.id_param in values:
                position, problem = integer(values, style.id_param, minimum=INT64_MIN)
            if style.upper_param is not None and style.upper_param in values:
                upper, upper_problem = integer(values, style.upper_param, minimum=INT64_MIN)
                return Request(position, limit, problem or upper_problem or limit_problem, upper)
        elif style.name == "offset":
            position, problem = (0, None)
            if self.offset_param in values:
                position, problem = integer(values, self.offset_param, minimum=0)
        elif style.name in ("page_number", "link_header"):
            position, problem = (1, None)
            if style.page_param in values:
                position, problem = integer(values, style.page_param, minimum=1)
        else:  # cursor, next_url: an opaque cursor
            position, problem = (0, None)
            raw = values.get(style.cursor_param)
            if raw:
                position = decode_cursor(raw[0])
                problem = None if position is not None else f"bad cursor {raw[0][:40]!r}"
        return Request(position, limit, problem or limit_problem)

    # -- answers -------------------------------------------------------------------------------------
    def answer(
        self, request: Request, limit: int, url: str, fault: str | None, spec: FaultSpec | None, duplicates: int
    ) -> Reply:
        """The reply to a valid request (`limit` already capped), `url` the requested one (for next links)."""
        position = request.position
        assert position is not None
        name = self.style.name
        if name == "offset_id":
            return self._offset_id(position, limit, fault, spec, duplicates)
        if name == "keyset":
            return self._keyset(position, request.upper, limit, fault, spec)
        row = (position - 1) * limit if name in ("page_number", "link_header") else position
        return self._rows(position, row, limit, url, fault, spec)

    def _records(self, records: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
        style = self.style
        if style.id_shift or style.string_ids:
            out = []
            for record in records:
                copy = dict(record)
                rid = copy.get("id")
                if isinstance(rid, int) and not isinstance(rid, bool):
                    rid += style.id_shift
                    copy["id"] = str(rid) if style.string_ids else rid
                out.append(copy)
            records = out
        if style.unsorted:
            records = list(records)
            random.Random(seed).shuffle(records)
        return records

    def _body(self, records: list[dict[str, Any]], **others: Any) -> Any:
        key = self.style.key
        if key == "":
            return records
        return {**others, key: records}

    def _offset_id(self, offset: int, limit: int, fault: str | None, spec: FaultSpec | None, repeats: int) -> Reply:
        from mocks.faults import _with_repeats  # the same repeats as the original answer

        shift = self.style.id_shift
        source_offset = offset - shift

        def payload() -> tuple[Any, tuple[tuple[str, str], ...]]:
            document = page_payload(self.source, source_offset, limit)
            records = document.pop("response")
            if repeats:
                records = _with_repeats(self.source, source_offset, records, repeats)
            meta = document["meta"]
            if meta.get("next_offset") is not None:
                meta["next_offset"] += shift
            meta["offset"] = offset
            return self._body(self._records(records, offset), meta=meta), ()

        def stuck(document: Any) -> None:
            document["meta"]["next_offset"] = offset

        return fault_reply(payload, fault, spec, stuck=stuck, duplicates=repeats)

    def _keyset(self, lower: int, upper: int | None, limit: int, fault: str | None, spec: FaultSpec | None) -> Reply:
        shift = self.style.id_shift

        def payload() -> tuple[Any, tuple[tuple[str, str], ...]]:
            records, _ = self.source.page(lower - shift, limit + 1)
            if upper is not None:
                records = [r for r in records if r["id"] + shift < upper]
            more = len(records) > limit
            records = records[:limit]
            token = str(records[-1]["id"] + shift) if more and records else None
            body = self._body(self._records(records, lower), **{self.style.next_key: token})
            return body, ()

        def stuck(document: Any) -> None:  # a page that starts below what was asked: no progress
            records, _ = self.source.page(INT64_MIN, 1)
            document[self.style.key] = self._records(records, lower)

        return fault_reply(payload, fault, spec, stuck=stuck)

    def _rows(self, position: int, row: int, limit: int, url: str, fault: str | None, spec: FaultSpec | None) -> Reply:
        style = self.style
        ids = self._ids
        assert ids is not None
        total = len(ids)

        def chunk(start: int) -> list[dict[str, Any]]:
            if start >= total:
                return []
            records, _ = self.source.page(int(ids[start]), limit)
            return records

        def payload() -> tuple[Any, tuple[tuple[str, str], ...]]:
            records = self._records(chunk(row), row)
            more = row + limit < total
            headers: tuple[tuple[str, str], ...] = ()
            if style.total_header is not None and style.name in ("offset", "page_number"):
                headers = ((style.total_header, str(total)),)
            if style.name == "offset":
                others = {style.total_key: total} if style.total_key else {}
                return self._body(records, **others), headers
            if style.name == "page_number":
                others = {}
                if style.total_key:
                    others[style.total_key] = total
                if style.total_pages_key:
                    others[style.total_pages_key] = math.ceil(total / limit)
                return self._body(records, **others), headers
            if style.name == "cursor":
                return self._body(records, **{style.cursor_key: encode_cursor(row + limit) if more else None}), ()
            if style.name == "next_url":
                query = urlencode({style.cursor_param: encode_cursor(row + limit), self.limit_param: limit})
                link = (url.split("?")[0] if style.absolute_next else "") + "?" + query
                return self._body(records, **{style.next_key: link if more else None}), ()
            # link_header
            query = urlencode({style.page_param: position + 1, self.limit_param: limit})
            link_headers = (("Link", f'<{url.split("?")[0]}?{query}>; rel="next"'),) if more else ()
            return self._body(records), link_headers

        def stuck(document: Any) -> None:
            if style.name == "cursor":
                document[style.cursor_key] = encode_cursor(row)
            elif style.name == "next_url":
                query = urlencode({style.cursor_param: encode_cursor(row), self.limit_param: limit})
                document[style.next_key] = "?" + query

        return fault_reply(payload, fault, spec, stuck=stuck)
