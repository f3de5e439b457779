"""Page sources for the mock API: the `PageSource` protocol, an in-memory list and the Lifesum replay.

A source answers `page(offset, limit) -> (records, next_offset)`. Synthetic sources (`ListSource`,
`mocks.dataset.Dataset`) return the first `limit` records with `id >= offset` and `next_offset = last id + 1`
when more records follow, else None. `ReplaySource` returns the fixed Lifesum page whose range covers the
offset, as the original Lifestats mock server did, and keeps that page's `meta` as given.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

Record = dict[str, Any]

LIFESUM_DIR = Path(__file__).resolve().parent / "lifesum"
_PAGE_FILE = re.compile(r"[0-9]+\.json")


class PageSource(Protocol):
    """What the mock server serves: one page of records and the offset of the next page."""

    def page(self, offset: int, limit: int) -> tuple[list[dict], int | None]: ...


@runtime_checkable
class MetaSource(Protocol):
    """A source whose pages carry their own `meta` (served as given instead of a computed one)."""

    def page_meta(self, offset: int, limit: int) -> dict[str, Any]: ...


@runtime_checkable
class PrecedingSource(Protocol):
    """A source that can list the `n` records just below an id (used by the `duplicates` fault)."""

    def before(self, offset: int, n: int) -> list[dict]: ...


@runtime_checkable
class JsonPageSource(Protocol):
    """A source that renders a page's record list as JSON text itself (faster than dicts and orjson)."""

    def page_json(self, offset: int, limit: int) -> tuple[bytes, int | None]: ...


def page_body(source: PageSource, offset: int, limit: int) -> bytes:
    """The JSON text of `page_payload(source, offset, limit)` (the same document, parsed)."""
    render = getattr(source, "page_json", None)  # (not isinstance: a protocol check costs more than a page)
    if render is not None and not hasattr(source, "page_meta"):
        records, next_offset = render(offset, limit)
        meta = {"code": 200, "limit": limit, "offset": offset, "next_offset": next_offset}
        return b'{"meta":' + orjson.dumps(meta) + b',"response":' + records + b"}"
    return orjson.dumps(page_payload(source, offset, limit))


def page_payload(source: PageSource, offset: int, limit: int) -> dict[str, Any]:
    """The JSON document of one page: `{"meta": {...}, "response": [...]}`."""
    records, next_offset = source.page(offset, limit)
    if isinstance(source, MetaSource):
        meta = dict(source.page_meta(offset, limit))
    else:
        meta = {"code": 200, "limit": limit, "offset": offset, "next_offset": next_offset}
    return {"meta": meta, "response": list(records)}


class ListSource:
    """An in-memory source over records with a unique int `id` (sorted here by id)."""

    def __init__(self, records: Iterable[Mapping[str, Any]]) -> None:
        self._records: list[Record] = sorted((dict(r) for r in records), key=lambda r: r["id"])
        self._ids: list[int] = [r["id"] for r in self._records]
        if any(a == b for a, b in zip(self._ids, self._ids[1:], strict=False)):
            raise ValueError("ListSource: record ids must be unique")

    @property
    def records(self) -> list[Record]:
        return list(self._records)

    @property
    def ids(self) -> list[int]:
        """The ids in row order (the row positions of the positional mock styles)."""
        return self._ids

    def __len__(self) -> int:
        return len(self._records)

    def page(self, offset: int, limit: int) -> tuple[list[dict], int | None]:
        start = bisect.bisect_left(self._ids, offset)
        chunk = self._records[start : start + max(limit, 0)]
        more = start + len(chunk) < len(self._records)
        return list(chunk), (chunk[-1]["id"] + 1 if chunk and more else None)

    def before(self, offset: int, n: int) -> list[dict]:
        end = bisect.bisect_left(self._ids, offset)
        return list(self._records[max(0, end - n) : end])


@dataclass(frozen=True)
class ReplayPage:
    number: int
    meta: dict[str, Any]
    records: list[Record]

    @property
    def offset(self) -> int:
        return int(self.meta["offset"])


def load_replay_pages(directory: Path | str = LIFESUM_DIR) -> list[ReplayPage]:
    """The numbered pages (`1.json`, `2.json`, ...) of a replay directory, in page order."""
    folder = Path(directory)
    files = sorted((p for p in folder.iterdir() if _PAGE_FILE.fullmatch(p.name)), key=lambda p: int(p.stem))
    if not files:
        raise FileNotFoundError(f"no numbered page files (1.json, 2.json, ...) in {folder}")
    pages = []
    for path in files:
        document = json.loads(path.read_text(encoding="utf-8"))
        pages.append(ReplayPage(int(path.stem), document["meta"], document["response"]))
    starts = [p.offset for p in pages]
    if starts != sorted(starts) or len(set(starts)) != len(starts):
        raise ValueError(f"replay pages in {folder} do not have strictly increasing meta.offset")
    return pages


class ReplaySource:
    """Serves recorded pages as the original Lifestats mock did.

    Page N covers offsets `[offset of page N, offset of page N+1)`; the first page also covers every offset
    below the second page's, the last page every offset from its own up. `limit` is ignored and the page's
    `meta` (offset, next_offset, code, limit) is served as recorded.
    """

    def __init__(self, directory: Path | str = LIFESUM_DIR) -> None:
        self.pages: list[ReplayPage] = load_replay_pages(directory)
        self._starts = [p.offset for p in self.pages]
        self._records: list[Record] = sorted((r for p in self.pages for r in p.records), key=lambda r: r["id"])
        self._ids = [r["id"] for r in self._records]

    @property
    def records(self) -> list[Record]:
        """Every record of every page, by ascending id."""
        return list(self._records)

    def page_for(self, offset: int) -> ReplayPage:
        index = bisect.bisect_right(self._starts, offset) - 1
        return self.pages[max(index, 0)]

    def page(self, offset: int, limit: int) -> tuple[list[dict], int | None]:
        found = self.page_for(offset)
        return list(found.records), found.meta.get("next_offset")

    def page_meta(self, offset: int, limit: int) -> dict[str, Any]:
        return dict(self.page_for(offset).meta)

    def before(self, offset: int, n: int) -> list[dict]:
        end = bisect.bisect_left(self._ids, offset)
        return list(self._records[max(0, end - n) : end])
