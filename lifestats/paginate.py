"""How an API pages: one small class per style behind one interface (SPEC section 1).

A :class:`Paginator` builds the request for a *position* and reads an answer: the records (at
``api.records_path``), the next position and any total the API gives. It also says how the crawl can
be cut into slices. The HTTP side (:mod:`lifestats.fetch`) only moves bytes, retries and waits; it
never looks inside a body except through the paginator.

Positions are JSON values, so the checkpoint stores any style's and a resumed crawl goes on from it:

============== ============================================== ==========================================
style          position                                       slices
============== ============================================== ==========================================
``offset_id``  an int: the id offset to request                by id (``[begin, end)`` of ids)
``keyset``     an int: the id lower bound to request           by id; ``upper_param`` bounds it server-side
``offset``     an int: the row position to request            by row position when a total is known
``page_number`` an int: the page number to request            by page when a total is known
``cursor``     ``{"cursor": c}`` (an int: the first request)  one sequential slice
``next_url``   ``{"url": u}`` (an int: the first request)     one sequential slice
``link_header`` ``{"url": u}`` (an int: the first request)    one sequential slice
============== ============================================== ==========================================

A slice starts at its ``begin`` (what the plan stores); for the sequential styles that int means "the
first request". A stored URL holds none of the user's credentials (:class:`lifestats.redact.Credentials`:
``api.url``'s and the bearer token, wherever the API echoes them); they are put back when it is
requested, and the rest of it is requested as the API gave it.

Reading a page raises :class:`~lifestats.errors.TransientApiError` for a server fault (no list at the
records path, a next reference that does not move forward): it is retried like a 503. A mistake that
retrying cannot mend (a next path absent from a full page) raises :class:`~lifestats.errors.ConfigError`.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal, TypedDict

import httpx

from .config import ApiConfig
from .decode import RECORD_TYPES, column_getter
from .errors import ApiError, ConfigError, TransientApiError
from .redact import Credentials, redact_url

# How an API may refuse a page past its data (a page or offset beyond the last one, or a 204 No Content):
# read as the end of the data where the crawl asks for such a page only to see whether the data ends.
PAST_THE_END: Final = frozenset({204, 400, 404, 410, 416, 422})

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Decimal digits of at most 19 significant ones (leading zeros are no part of the value: "007" is 7).
_DECIMAL = re.compile(r"(-?)0*([0-9]{1,19})")

Slicing = Literal["id", "position", "sequential"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # a path that does not exist in a document (unlike one that holds null)


class CursorPosition(TypedDict):
    cursor: str | int


class UrlPosition(TypedDict):
    url: str  # without the user's credentials: they come back when it is requested


@dataclass(frozen=True)
class Page:
    """One answer, as the paginator read it."""

    position: Any  # where it was requested
    records: list[Any]
    next: Any  # the next position; None when the API has no next page
    total: int | None = None  # rows (offset) or pages (page_number) the API says it holds
    past_total: bool = False  # the API served rows past its own total: the total cannot end the crawl

    @property
    def offset(self) -> Any:
        return self.position

    @property
    def next_offset(self) -> Any:
        return self.next


def lookup(document: Any, path: str) -> Any:
    """The value at a dotted ``path`` ("" is the document itself), or :data:`MISSING`."""
    if path == "":
        return document
    for part in path.split("."):
        if not isinstance(document, dict) or part not in document:
            return MISSING
        document = document[part]
    return document


def dig(document: Any, path: str) -> Any:
    """``dig(doc, "meta.next_offset")``; None when any step is missing."""
    value = lookup(document, path)
    return None if value is MISSING else value


def int_id(value: Any) -> int | None:
    """An id as a signed 64-bit integer: a JSON integer, or a string of decimal digits; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else None
    if isinstance(value, str) and (match := _DECIMAL.fullmatch(value)):
        number = int(match[1] + match[2])
        return number if INT64_MIN <= number <= INT64_MAX else None
    return None


def _past_every_id(value: Any) -> bool:
    """Whether a next offset is 2**63, one past the largest signed 64-bit id (as an integer or its digits)."""
    if isinstance(value, str) and (match := _DECIMAL.fullmatch(value)):
        value = int(match[1] + match[2])
    return type(value) is int and value == INT64_MAX + 1


def _not_an_id(value: Any, shown: Callable[[Any], str] = repr) -> str:
    """Why a value is no id, in words: an integer out of range (JSON parsers give the widest ones as
    floats) is said to be one. ``shown``: how any other value is quoted (before it is cut)."""
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,400}", value):
        value = int(value)
    number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if number and value == int(value) and not INT64_MIN <= int(value) <= INT64_MAX:
        digits = f"{value:,}" if isinstance(value, int) else f"{value:.6g}"  # an int as it is, all its digits
        return f"an integer beyond the signed 64-bit range of ids: {digits}"
    return f"not an integer: {shown(value):.40}"


def _shape(value: Any) -> str:
    if value is MISSING:
        return "missing"
    if value is None:
        return "null"
    if isinstance(value, dict):
        keys = ", ".join(str(k) for k in list(value)[:12]) or "none"
        return f"an object with keys: {keys}"
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}
    return kind.get(type(value), f"a {type(value).__name__}")


def _body_keys(document: Any) -> str:
    if isinstance(document, dict):
        return "the body's top-level keys: " + (", ".join(str(k) for k in list(document)[:20]) or "none")
    return f"the body is {_shape(document)}"


def record_ids(records: list[Any], id_field: str) -> list[int]:
    """The usable ids of a page's records (those that are objects with an integer id), in page order."""
    getter = column_getter(records, id_field)
    if getter is not None:  # decoded records: all of them objects
        values = list(map(getter, records))
    else:
        values = [r.get(id_field) if isinstance(r, RECORD_TYPES) else None for r in records]
    if values and set(map(type, values)) == {int} and min(values) >= INT64_MIN and max(values) <= INT64_MAX:
        return values  # the usual page: every id a JSON integer in range, read without a call per record
    return [i for i in map(int_id, values) if i is not None]


def same_records(a: Page, b: Page, id_field: str) -> bool:
    """Whether two pages hold the same records, by id (pages of records without ids never compare equal)."""
    if not a.records or len(a.records) != len(b.records):
        return False
    ids = [sorted(repr(r.get(id_field) if isinstance(r, RECORD_TYPES) else r) for r in page.records) for page in (a, b)]
    return ids[0] == ids[1] and any(text != "None" for text in ids[0])


def _served_again(page: Page, following: Page, id_field: str) -> bool:
    """Whether the API answered the page after ``page`` with ``page``'s records. Records added at the head
    between the two answers may shift a page onto the next: the count then moved too, and nothing can be
    told."""
    return page.total == following.total and same_records(page, following, id_field)


def _count(value: Any) -> int | None:
    """A total as the API gives it: an integer, or a string of digits."""
    number = int_id(value)
    return number if number is not None and number >= 0 else None


class Paginator(ABC):
    """Builds requests for positions and reads answers, in one pagination style."""

    style: ClassVar[str]
    body_next: ClassVar[bool] = False  # reads its next reference from the body
    # An empty page may name a next position inside the data (an API that pages by id windows answers a
    # window without records so): the crawl may cross it (see DataEnd._gap).
    empty_page_moves_on: ClassVar[bool] = False

    def __init__(self, api: ApiConfig, id_field: str = "id") -> None:
        self.api = api
        self.id_field = id_field
        self.base = httpx.URL(api.url)  # its own query parameters are kept
        self.credentials = Credentials(api.url)  # what a stored next URL must not hold (see keep_secret)

    def keep_secret(self, token: str | None) -> None:
        """Keep the bearer token out of stored positions too, should the API echo it in a next URL."""
        self.credentials = Credentials(self.api.url, token)

    def shown(self, value: Any) -> str:
        """A value the API gave, quoted for a message, with the user's credentials masked in it before the
        message cuts it (a cut token would not be found whole to be masked later)."""
        return self.credentials.scrub(repr(value))

    # -- what the plan and the coordinator ask --------------------------------------------------------
    @property
    def slicing(self) -> Slicing:
        return "sequential"

    def first(self) -> int:
        """The position where a crawl of the whole API starts (the first slice's begin)."""
        return 0

    def span(self) -> int:
        """How far past its position, in the slices' coordinates, one page can reach: a split must not
        cut a page already asked for, since which of its rows lie on which side could not be told (the
        id styles tell by each record's id, so nothing is needed there)."""
        return 0

    def confirm(
        self, page: Page, probe: Callable[[Any], Page], probe_once: Callable[[Any], Page] | None = None
    ) -> None:
        """Checks the first page of a crawl sliced by position against the config (``probe`` fetches
        another page, ``probe_once`` without retries: for a page the API may well refuse); raises
        :class:`ConfigError` when the slices would miss rows. Most styles have nothing to check."""
        return None

    def confirm_first_id(self, first_id: int, probe: Callable[[Any], Page]) -> None:
        """The lowest id, found by discovery, asked for as a position (styles sliced by id): the page must
        hold its record. An API that reads the bound as exclusive (ids after it) where the config reads it
        as inclusive leaves it out, and with it the first record of every page and slice that begins on an
        id; raises :class:`ConfigError` naming the setting. An API that deleted that record meanwhile (its
        oldest records expire) is told apart by asking for the lowest id it serves now."""
        page = probe(first_id)
        ids = record_ids(page.records, self.id_field)
        if first_id in ids:
            return
        # An API that deletes its oldest records (a retention window) may have let this one go since
        # discovery saw it: then the lowest id it serves now comes back when asked for, where an exclusive
        # bound leaves that one out too.
        above = [rid for rid in ids if rid > first_id]
        if above and min(above) in record_ids(probe(min(above)).records, self.id_field):
            return
        raise ConfigError(
            f"asked for {self.describe(first_id)}, the lowest id (the API showed its record when asked for the "
            f"lowest ids), the API left that record out: {self._exclusive_hint()}"
        )

    def _exclusive_hint(self) -> str:
        return "check the api settings"

    def at_total(self, page: Page) -> bool:
        """Whether ``page`` reaches the end of the data by the API's own count (styles sliced by position).
        A page shorter than ``api.page_size`` there ends the crawl; after a full one, :meth:`finished` asks
        for one more page, since a count that is too low (capped or stale) may end exactly on a page."""
        return False

    def progress(self, position: Any) -> int | None:
        """The position in the slices' coordinates (ids, rows, pages), or None when it has none."""
        if isinstance(position, int) and not isinstance(position, bool) and self.slicing != "sequential":
            return position
        return None

    # -- one page ------------------------------------------------------------------------------------
    @abstractmethod
    def request(self, position: Any, end: int | None = None) -> httpx.URL:
        """The URL of the page at ``position`` (``end``: the slice's exclusive end, when it has one)."""

    @abstractmethod
    def read(self, position: Any, document: Any, response: httpx.Response) -> Page:
        """The records, next position and total of an answer; raises on a fault."""

    @abstractmethod
    def finished(self, page: Page, end: int | None) -> bool:
        """True when no record of the slice ending at ``end`` can follow ``page``."""

    @abstractmethod
    def describe(self, position: Any) -> str:
        """The position in words, for messages ("offset 4242", "page 3")."""

    def body_paths(self) -> list[str]:
        """The dotted paths this paginator reads from a body beside ``api.records_path``."""
        api = self.api
        paths = [path for path in (api.total_path, api.total_pages_path) if path is not None]
        key = api.next_path_key()
        if self.body_next and key is not None:
            paths.append(getattr(api, key))
        return paths

    # -- shared reading ------------------------------------------------------------------------------
    def records(self, document: Any) -> list[Any]:
        path = self.api.records_path
        records = lookup(document, path)
        if not isinstance(records, list):
            where = f"records_path '{path}'" if path else "the body (records_path '')"
            raise TransientApiError(
                f"HTTP 200 without a list of records at {where}: it is {_shape(records)}; {_body_keys(document)}"
            )
        return records

    def _params(self, **values: Any) -> httpx.URL:
        return self.base.copy_merge_params({k: v for k, v in values.items() if v is not None})

    def _total(self, document: Any, response: httpx.Response) -> int | None:
        """Rows, from ``total_path`` in the body or ``total_header``."""
        api = self.api
        if api.total_path is not None:
            value = lookup(document, api.total_path)
            total = _count(value)
            if total is None:
                raise ConfigError(
                    f"api.total_path '{api.total_path}' holds no count of records ({_shape(value)}; "
                    f"{_body_keys(document)}): fix api.total_path or remove it"
                )
            return total
        if api.total_header is not None:
            header = response.headers.get(api.total_header)
            total = _count(header.strip()) if header is not None else None
            if total is None:
                raise ConfigError(
                    f"api.total_header '{api.total_header}' is not a count of records in the API's answer "
                    f"({'absent' if header is None else self.shown(header)[:42]}): fix api.total_header or remove it"
                )
            return total
        return None

    def _next_reference(self, document: Any, records: list[Any], path: str) -> Any:
        """The value at a next path; None ends the data. A path absent from a full page is a config mistake."""
        value = lookup(document, path)
        if value is MISSING:
            if len(records) >= self.api.page_size:
                key = self.api.next_path_key() or "the next path"
                raise ConfigError(
                    f"the API's answer has no '{path}' (api.{key}) on a full page of {len(records)} records, "
                    f"so Lifestats cannot tell the end of the data from a wrong path; {_body_keys(document)}. "
                    f"Fix api.{key}"
                )
            return None
        if value == "":
            return None
        return value


class OffsetIdPaginator(Paginator):
    """``?offset=o&limit=n``, the offset a lower bound on the id; the body names the next offset."""

    style = "offset_id"
    body_next = True
    empty_page_moves_on = True

    @property
    def slicing(self) -> Slicing:
        return "id"

    def request(self, position: Any, end: int | None = None) -> httpx.URL:
        api = self.api
        return self._params(**{api.offset_param: position, api.limit_param: api.page_size})

    def read(self, position: Any, document: Any, response: httpx.Response) -> Page:
        records = self.records(document)
        path = self.api.next_offset_path
        value = self._next_reference(document, records, path)
        if value is not None and _past_every_id(value):
            value = None  # one past the largest id there can be (the last id + 1): nothing can follow
        if value is not None:
            number = int_id(value)
            if number is None:
                raise TransientApiError(f"'{path}' is {_not_an_id(value, self.shown)}")
            if number <= position:
                raise TransientApiError(f"next_offset {number} does not move forward from offset {position}")
            value = number
        return Page(position, records, value)

    def finished(self, page: Page, end: int | None) -> bool:
        if page.next is None or not page.records:
            return True
        if end is None:
            return False
        if page.next >= end:
            return True
        ids = record_ids(page.records, self.id_field)
        return bool(ids) and max(ids) >= end

    def describe(self, position: Any) -> str:
        return f"offset {position}"

    def _exclusive_hint(self) -> str:
        param = self.api.offset_param
        return (
            f"Lifestats reads api.offset_param ('{param}') as the lowest id wanted, that id included, and this "
            f"API reads it as exclusive (the ids after it): set api.paginator: keyset, api.id_param: {param}, "
            "api.id_param_inclusive: false"
        )


class KeysetPaginator(Paginator):
    """``?{id_param}=x&limit=n`` over records sorted by id; the next x is derived from the last id.

    A position is the lowest id still wanted (inclusive), whatever the API's parameter means: an API
    whose bound is exclusive (``id_param_inclusive: false``, "ids after x") is asked for the position
    minus one, so that a slice's first id is fetched too (and the lowest id of all, -2**63, by leaving
    the bound out).
    """

    style = "keyset"

    @property
    def slicing(self) -> Slicing:
        return "id"

    def request(self, position: Any, end: int | None = None) -> httpx.URL:
        api = self.api
        assert api.id_param is not None
        # No upper bound past the largest id (2**63 - 1): an API that checks its parameters as 64-bit
        # integers would refuse one; above it nothing lies anyway.
        upper = end if api.upper_param is not None and end is not None and end <= INT64_MAX else None
        bound: int | None = position
        if not api.id_param_inclusive:
            bound = position - 1 if position > INT64_MIN else None  # below -2**63 nothing lies: no bound
        values: dict[str, Any] = {api.id_param: bound, api.limit_param: api.page_size}
        if api.upper_param is not None:
            values[api.upper_param] = upper
        return self._params(**values)

    def read(self, position: Any, document: Any, response: httpx.Response) -> Page:
        records = self.records(document)
        if not records:
            return Page(position, records, None)
        ids = record_ids(records, self.id_field)
        if not ids and len(records) < self.api.page_size:
            return Page(position, records, None)  # a last page of records without an id (each rejected)
        if not ids:
            raise ConfigError(
                f"keyset pagination derives the next page from the records' '{self.id_field}' (fields.id), "
                f"but none of the {len(records)} records has an integer one"
            )
        top = max(ids)
        if top >= INT64_MAX:  # the largest id there can be: nothing follows (and 2**63 is no id to ask for)
            return Page(position, records, None)
        following = top + 1
        if following <= position:
            hint = ""
            if not self.api.id_param_inclusive and top == position - 1:  # the bound itself came back
                hint = f" (if the API's {self.api.id_param} includes the id it names, set api.id_param_inclusive: true)"
            raise TransientApiError(
                f"the page at {self.describe(position)} ends at id {top}: the crawl would not move forward{hint}"
            )
        return Page(position, records, following)

    def finished(self, page: Page, end: int | None) -> bool:
        if page.next is None:
            return True
        if end is None:
            return False
        return bool(page.next >= end)  # the next request asks for ids >= next

    def describe(self, position: Any) -> str:
        """The bound as the request carries it (one below the position when the API's bound is exclusive)."""
        api = self.api
        if api.id_param_inclusive or position <= INT64_MIN:
            return f"{api.id_param}={position}"
        return f"{api.id_param}={position - 1}"

    def _exclusive_hint(self) -> str:
        api = self.api
        if api.id_param_inclusive:
            return (
                f"its {api.id_param} is exclusive (the ids after it), where api.id_param_inclusive says it is "
                "inclusive: set api.id_param_inclusive: false"
            )
        return f"check api.id_param ('{api.id_param}') and api.id_param_inclusive"


class OffsetPaginator(Paginator):
    """``?offset=k&limit=n``, ``k`` a row position; sliced by position when the API gives a total."""

    style = "offset"

    @property
    def slicing(self) -> Slicing:
        return "position" if self.api.total_path or self.api.total_header else "sequential"

    def span(self) -> int:
        return self.api.page_size

    def request(self, position: Any, end: int | None = None) -> httpx.URL:
        api = self.api
        # Never past the slice's end: the rows of a page may come in any order, so a page that ran over
        # the end could not say which of its rows lie inside (an API that caps its pages below
        # api.page_size would make every slice's last page run over).
        limit = api.page_size if end is None else max(1, min(api.page_size, end - position))
        return self._params(**{api.offset_param: position, api.limit_param: limit})

    def read(self, position: Any, document: Any, response: httpx.Response) -> Page:
        records = self.records(document)
        total = self._total(document, response)
        past = total is not None and position + len(records) > total
        return Page(position, records, position + len(records) if records else None, total, past)

    def finished(self, page: Page, end: int | None) -> bool:
        if page.next is None:
            return True
        if end is not None and page.next >= end:
            return True
        # The total ends the crawl, unless the API has just served rows past it: then the total is too
        # low (a capped or stale count), and the crawl goes on until the API runs out of rows. A full page
        # that ends on the total cannot tell: the next page does (see at_total).
        return self.at_total(page) and len(page.records) < self.api.page_size

    def at_total(self, page: Page) -> bool:
        return page.total is not None and page.next == page.total

    def confirm(
        self, page: Page, probe: Callable[[Any], Page], probe_once: Callable[[Any], Page] | None = None
    ) -> None:
        """The page after the first must hold other records: an API that does not page by
        ``api.offset_param`` answers every offset with its first page, and every slice would count it."""
        if page.total is None or not page.records or page.total <= page.position + len(page.records):
            return
        following = probe(page.position + len(page.records))
        if _served_again(page, following, self.id_field):
            raise ConfigError(
                f"the API answered {self.describe(page.position)} and {self.describe(following.position)} with the "
                f"same {len(page.records)} records: it does not page by api.offset_param ('{self.api.offset_param}'); "
                "check api.paginator and api.offset_param"
            )

    def describe(self, position: Any) -> str:
        return f"{self.api.offset_param}={position}"


class PageNumberPaginator(Paginator):
    """``?page=p&limit=n`` from ``first_page``; sliced by page when the API gives a total."""

    style = "page_number"

    @property
    def slicing(self) -> Slicing:
        api = self.api
        return "position" if api.total_pages_path or api.total_path or api.total_header else "sequential"

    def first(self) -> int:
        return self.api.first_page

    def span(self) -> int:
        return 1

    def request(self, position: Any, end: int | None = None) -> httpx.URL:
        api = self.api
        return self._params(**{api.page_param: position, api.limit_param: api.page_size})

    def read(self, position: Any, document: Any, response: httpx.Response) -> Page:
        records = self.records(document)
        api = self.api
        pages: int | None
        if api.total_pages_path is not None:
            value = lookup(document, api.total_pages_path)
            pages = _count(value)
            if pages is None:
                raise ConfigError(
                    f"api.total_pages_path '{api.total_pages_path}' holds no count of pages ({_shape(value)}; "
                    f"{_body_keys(document)}): fix api.total_pages_path or remove it"
                )
        else:
            rows = self._total(document, response)
            pages = None if rows is None else math.ceil(rows / api.page_size)
            # Rows past the API's own total (a capped or stale count): the API running out of rows ends
            # the crawl, not the total.
            past = rows is not None and (position - api.first_page) * api.page_size + len(records) > rows
            return Page(position, records, position + 1 if records else None, pages, past)
        # A page past the API's count of pages that holds records: the count is too low.
        past = pages is not None and bool(records) and position >= api.first_page + pages
        return Page(position, records, position + 1 if records else None, pages, past)

    def confirm(
        self, page: Page, probe: Callable[[Any], Page], probe_once: Callable[[Any], Page] | None = None
    ) -> None:
        """The first page against the config, with the pages beside it:

        - shorter than ``api.page_size``: the data ends there (the next page is empty), or the API serves
          smaller pages than the config says, and page numbers counted at ``api.page_size`` would skip
          rows (the next page holds some). The total cannot tell: it may be wrong either way;
        - the same records on the next page: the API does not page by ``api.page_param``, or numbers its
          pages from the next one and answers the one before with its first;
        - empty, though the API counts pages, with records on the next one; or records, other ones, on
          the page before, which are not the API's last page either (Django's ``get_page`` answers an
          out-of-range page with it): the API numbers its pages from another ``api.first_page``.
        """
        api, first = self.api, page.position
        once = probe_once or probe  # for a page the API may well refuse
        if not page.records:
            if page.total and probe(first + 1).records:
                raise ConfigError(
                    f"{self.describe(first)} is empty but {self.describe(first + 1)} holds records (the API counts "
                    f"{page.total} page(s)): the API numbers its pages from {first + 1}: "
                    f"set api.first_page: {first + 1}"
                )
            return
        short = api.total_pages_path is None and len(page.records) < api.page_size
        if short:
            # A page past the data may be refused (DRF's 404 "Invalid page.") or be the last page again.
            try:
                following = once(first + 1)
            except ApiError as exc:
                if exc.status not in PAST_THE_END:
                    raise
                following = Page(first + 1, [], None)
            if following.records and not same_records(page, following, self.id_field):
                raise ConfigError(
                    f"the API served {len(page.records)} records on {self.describe(first)} and more on the "
                    f"next page, not api.page_size ({api.page_size}): set api.page_size to the size the API "
                    "serves, or use api.total_pages_path"
                )
        elif (page.total or 0) > 1:
            following = probe(first + 1)
            if _served_again(page, following, self.id_field):
                raise ConfigError(
                    f"the API answered {self.describe(first)} and {self.describe(first + 1)} with the same "
                    f"{len(page.records)} records: it does not page by api.page_param ('{api.page_param}'), or "
                    f"numbers its pages from {first + 1} (api.first_page)"
                )
        if first >= 1:
            try:
                before = once(first - 1)
            except ApiError:  # most APIs refuse a page before their first (a 400, a 404, even a 500)
                return
            if (
                before.records
                and not same_records(before, page, self.id_field)
                and not self._last_again(page, before, probe)
            ):
                raise ConfigError(
                    f"{self.describe(first - 1)} holds records too, other than those of {self.describe(first)}: the "
                    f"API numbers its pages from {first - 1}: set api.first_page: {first - 1}"
                )

    def _last_again(self, page: Page, before: Page, probe: Callable[[Any], Page]) -> bool:
        """Whether the page before the first is the API's last page (Django's ``Paginator.get_page`` answers a
        page number out of range with the last page), by the API's count of pages."""
        if not page.total or page.total < 2:
            return False
        return same_records(before, probe(page.position + page.total - 1), self.id_field)

    def finished(self, page: Page, end: int | None) -> bool:
        if page.next is None:
            return True
        if self.at_total(page) and len(page.records) < self.api.page_size:
            return True  # a full last page asks for one more: the count may be too low (see at_total)
        return end is not None and page.next >= end

    def at_total(self, page: Page) -> bool:
        return page.total is not None and not page.past_total and page.next >= self.api.first_page + page.total

    def describe(self, position: Any) -> str:
        return f"{self.api.page_param}={position}"


class CursorPaginator(Paginator):
    """``?cursor=c&limit=n``; the body gives the next cursor at ``cursor_path``."""

    style = "cursor"
    body_next = True

    def request(self, position: Any, end: int | None = None) -> httpx.URL:
        api = self.api
        cursor = position["cursor"] if isinstance(position, dict) else None
        return self._params(**{api.cursor_param: cursor, api.limit_param: api.page_size})

    def read(self, position: Any, document: Any, response: httpx.Response) -> Page:
        records = self.records(document)
        path = self.api.cursor_path
        assert path is not None
        value = self._next_reference(document, records, path)
        if value is None:
            return Page(position, records, None)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ConfigError(f"api.cursor_path '{path}' holds {_shape(value)}, not a cursor (a string or number)")
        if isinstance(position, dict) and position.get("cursor") == value:
            raise TransientApiError(f"the next cursor {self.shown(value):.60} is the current one: the crawl would loop")
        following: CursorPosition = {"cursor": value}
        return Page(position, records, following)

    def finished(self, page: Page, end: int | None) -> bool:
        return page.next is None

    def describe(self, position: Any) -> str:
        if isinstance(position, dict):
            return f"cursor {self.shown(position['cursor']):.60}"
        return "the first page"


class _UrlPaginator(Paginator):
    """The styles whose next page is a URL the API gives: requested as it is."""

    def request(self, position: Any, end: int | None = None) -> httpx.URL:
        if isinstance(position, dict):
            return httpx.URL(self.credentials.unmask(position["url"]))
        return self._params(**{self.api.limit_param: self.api.page_size})

    def _following(self, position: Any, reference: Any, current: httpx.URL) -> UrlPosition:
        if not isinstance(reference, str):
            raise ConfigError(f"the next reference of the {self.style} style is {_shape(reference)}, not a URL")
        target = current.join(reference)
        if target.scheme not in ("http", "https"):
            raise TransientApiError(f"the next URL {self.shown(redact_url(str(target))):.80} is not http(s)")
        if target == current:
            raise TransientApiError("the next URL is the current one: the crawl would loop")
        return {"url": self.credentials.mask(str(target))}

    def finished(self, page: Page, end: int | None) -> bool:
        return page.next is None

    def describe(self, position: Any) -> str:
        if isinstance(position, dict):
            return f"URL {redact_url(position['url'])}"
        return "the first page"


class NextUrlPaginator(_UrlPaginator):
    """The body gives the next page's URL (absolute or relative) at ``next_url_path``."""

    style = "next_url"
    body_next = True

    def read(self, position: Any, document: Any, response: httpx.Response) -> Page:
        records = self.records(document)
        path = self.api.next_url_path
        assert path is not None
        value = self._next_reference(document, records, path)
        if isinstance(value, str):
            value = value.strip() or None  # spaces around a URL are not part of it; only spaces: none
        if value is None:
            return Page(position, records, None)
        return Page(position, records, self._following(position, value, response.request.url))


class LinkHeaderPaginator(_UrlPaginator):
    """The ``Link: <...>; rel="next"`` header (RFC 8288) gives the next page's URL."""

    style = "link_header"

    def read(self, position: Any, document: Any, response: httpx.Response) -> Page:
        records = self.records(document)
        target = next_link(response.headers.get_list("link"))
        if not target:
            return Page(position, records, None)
        return Page(position, records, self._following(position, target, response.request.url))


def next_link(headers: list[str]) -> str | None:
    """The target of the first link whose relation types include ``next``, in ``Link`` header values as RFC
    8288 writes them: several links per header and several headers, a ``rel`` of several space-separated
    types in any case (``rel="next last"``, ``REL=Next``), parameters in any order whose quoted values may
    hold ``;`` and ``,``, and only a link's first ``rel`` counts."""
    for header in headers:
        for target, params in _links(header):
            if "next" in params.get("rel", "").lower().split():
                return target
    return None


def _links(text: str) -> Iterator[tuple[str, dict[str, str]]]:
    """``(target, {name: value})`` of each link-value in one header (names lower case)."""
    i, n = 0, len(text)
    while i < n:
        start = text.find("<", i)
        if start < 0:
            return
        end = text.find(">", start)
        if end < 0:
            return
        target, i = text[start + 1 : end].strip(), end + 1
        params: dict[str, str] = {}
        while True:
            while i < n and text[i] in " \t":
                i += 1
            if i >= n or text[i] != ";":
                break
            i += 1
            match = _PARAM.match(text, i)
            if match is None:
                break
            name, quoted, token = match.group(1).lower(), match.group(2), match.group(3)
            value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else (token or "")
            params.setdefault(name, value)  # occurrences of a parameter after the first are ignored
            i = match.end()
        yield target, params
        # On to the next link-value: past the comma that ends this one (anything odd before it is skipped).
        while i < n and text[i] != ",":
            if text[i] == '"':
                close = text.find('"', i + 1)
                i = n if close < 0 else close
            i += 1


_PARAM: Final = re.compile(r'\s*([^\s=;,]+)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;,]*)))?')


STYLES: dict[str, type[Paginator]] = {
    cls.style: cls
    for cls in (
        OffsetIdPaginator,
        KeysetPaginator,
        OffsetPaginator,
        PageNumberPaginator,
        CursorPaginator,
        NextUrlPaginator,
        LinkHeaderPaginator,
    )
}


class DataEnd:
    """Where one crawl's data ends, when the API's count cannot say so alone (one per crawl of a slice).

    The count ends a crawl, except at a full page that ends on it, or after the API served rows past it
    (a capped or stale count): the crawl then asks for the next position, and there an empty page, a
    refusal (:data:`PAST_THE_END`) or the last page served again end the data. A page-number crawl
    without a count reads its pages past the first the same way (an API that answers any page past its
    data with its last one, as Django's ``Paginator.get_page`` does): a page served again that is short,
    or full after two pages of new records (an API that ignores the page parameter serves only one),
    is the last page again. An offset crawl without a count takes a refusal of the page after a short one
    (shorter than the pages before it too) as the end of the data (an API that answers an offset past its
    data with a 404).
    """

    def __init__(self, paginator: Paginator, horizon: int | None = None, known: int | None = None) -> None:
        self.paginator = paginator
        # A crawl by id's open last slice: where the data ended when the run found its id range (see
        # lifestats.protocol.Task.horizon). Past it, a page that is not full ends the data: an API that
        # keeps adding records would otherwise keep a one-shot job chasing them for ever.
        self.horizon = horizon
        # A crawl by id: the highest id discovery saw (lifestats.protocol.Task.known). An empty page whose
        # next offset lies at or below it is a stretch of ids without records, not the end of the data.
        self.known = known
        self._numbered = paginator.slicing == "sequential" and paginator.style == "page_number"
        self._confirming: Any = None  # the position past the API's count, asked to see whether data ends there
        self._beyond = False  # the crawl is past the API's count (from the first page asked for there on)
        self._later = False  # the page now taken is past page 1 of a page-number crawl without a count
        self._fresh_pages = 0  # pages that brought records new to the slice
        self._after_short: Any = None  # an offset crawl without a count: the position after a short page
        self._widest = 0  # the most records a page of this crawl held so far
        self._past_short = False  # the page now taken is that position
        self._peek: Any = None  # an empty page's next offset past every id known, asked for once (see _gap)
        self._before_peek: Any = None  # that empty page's position
        self._peeking = False  # the page now taken is that offset
        self.peek_ahead = False  # the position the last page led to is such an offset, asked for once

    def taking(self, position: Any) -> None:
        """The page at ``position`` is taken next."""
        self._beyond = self._beyond or (self._confirming is not None and position == self._confirming)
        self._later = self._numbered and position != self.paginator.first()
        self._past_short = self._after_short is not None and position == self._after_short
        self._peeking = self._peek is not None and position == self._peek

    def refused(self, exc: ApiError) -> bool:
        """Whether the API's refusal of the page being taken is the end of its data."""
        return (self._beyond or self._later or self._past_short or self._peeking) and exc.status in PAST_THE_END

    @property
    def peeking(self) -> bool:
        """Whether the page being taken is the offset past an empty page, asked for once (see :meth:`_gap`)."""
        return self._peeking

    def failed_past_the_data(self, exc: ApiError) -> bool:
        """Whether a failure, past every retry, of the page being taken ends the data, with a warning (see
        :data:`lifestats.sanity.PEEKS_FAILED`): the offset past an empty page that no known id lies above,
        which an API may well fail to answer (one that fails past its data would otherwise never let the
        run finish, as the crawl before this one never asked there): one that running again may mend (a 5xx,
        a timeout, a connection refused), past the rate limit (429) and a proxy that wants credentials (407).
        One that would fail the same way again (a 403, a redirect, a body over api.max_response_bytes)
        stops the run with its own advice."""
        return self._peeking and exc.resumable and exc.status not in (407, 429)

    def next_position(self, page: Page, end: int | None) -> Any:
        """The position after ``page`` (None: the slice is done), noting when it lies past the API's count."""
        paginator = self.paginator
        self.peek_ahead = False
        following = None if paginator.finished(page, end) and not self._gap(page, end) else page.next
        # Short: fewer records than asked for, and than every page before held (an API that caps its pages
        # below api.page_size serves them all short; its last one is shorter still).
        rows, asked = len(page.records), paginator.api.page_size
        short = 0 < rows < (min(asked, self._widest) if self._widest else asked)
        self._widest = max(self._widest, rows)
        self._after_short = following if short and paginator.style == "offset" and page.total is None else None
        if following is not None and self._confirming is None and (paginator.at_total(page) or page.past_total):
            self._confirming = following
        if following is not None and end is None and self._caught_up(page, following):
            return None
        return following

    def _gap(self, page: Page, end: int | None) -> bool:
        """Whether an empty page of a crawl by offset may be a stretch of ids without records inside the data
        (an API that answers by id windows), so that its next offset is asked for: that offset moves on
        inside the slice, and records are known to exist at or above it, or, once, past every id known (an
        API whose empty window names the next window that holds records). Following it keeps the count
        the same however the slices cut the range; an empty page at the offset asked for once ends the
        data, so that an API that names a next offset past its data is not followed to the end of the id
        space (it costs that API one request more per slice that ends past its data)."""
        following = page.next
        if page.records or not self.paginator.empty_page_moves_on:
            return False
        if following is None or (end is not None and following >= end):
            return False
        if self.known is not None and following <= self.known:
            return True
        if self._peeking:
            return False
        self._peek, self._before_peek, self.peek_ahead = following, page.position, True
        return True

    def resume_at(self, position: Any) -> Any:
        """Where a crawl stopped at ``position`` resumes: the empty page before it when it is the offset asked
        for once (see :meth:`_gap`), whose resume asks for it once again (a resume at it would take it for a
        page of the data); else ``position``."""
        return self._before_peek if self._peek is not None and position == self._peek else position

    def _caught_up(self, page: Page, following: Any) -> bool:
        """Whether the next page lies past the horizon and this one was not full: what lies past the horizon
        was added while the run went on, and the crawl has caught up with it."""
        if self.horizon is None or len(page.records) >= self.paginator.api.page_size:
            return False
        at = self.paginator.progress(following)
        return at is not None and at >= self.horizon

    def served_again(self, page: Page, nothing_new: bool, next_serves_it: Callable[[], bool] = lambda: True) -> bool:
        """Whether ``page``, which brought ``nothing_new`` records, is the API's answer past its data: that
        ends the data, and the page is no record of it (its records are not duplicates).

        Past page 1 of a page-number crawl without a count, the page after it must hold the same records
        too (``next_serves_it()``; True when there is none): an API that lists its newest records first and
        gained a page of them at its head serves the page before again as well, and there the data goes
        on. The crawl has asked for that page already, while it counted this one."""
        last_again = self._later and (len(page.records) < self.paginator.api.page_size or self._fresh_pages >= 2)
        self._fresh_pages += not nothing_new
        if not (page.records and nothing_new):
            return False
        # The offset asked for once past an empty page: its records all taken already (an API that serves
        # its last page again for any offset past its data) say that the data ended before it.
        return self._beyond or self._peeking or (last_again and next_serves_it())


def make_paginator(api: ApiConfig, id_field: str = "id") -> Paginator:
    """The paginator of ``api.paginator``."""
    return STYLES[api.paginator](api, id_field)
