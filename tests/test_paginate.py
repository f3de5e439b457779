"""Each paginator on its own: the request it builds, what it reads from an answer, and what it refuses."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lifestats.config import ApiConfig, load_settings
from lifestats.errors import ApiError, ConfigError, TransientApiError
from lifestats.paginate import DataEnd, Page, int_id, lookup, make_paginator

URL = "https://api.example.test/v1/events"


def api(**keys: Any) -> ApiConfig:
    return load_settings(None, "test", environ={}, overrides={"api": {"url": URL, "page_size": 3, **keys}}).api


def answer(request: httpx.URL, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(200, headers=headers or {}, request=httpx.Request("GET", request))


def read(config: ApiConfig, position: Any, document: Any, headers: dict[str, str] | None = None) -> Page:
    paginator = make_paginator(config)
    return paginator.read(position, document, answer(paginator.request(position), headers))


RECORDS = [{"id": 1}, {"id": 2}, {"id": 3}]


def test_lookup_and_ids() -> None:
    assert lookup({"a": {"b": None}}, "a.b") is None
    assert repr(lookup({"a": {}}, "a.b")) == "MISSING"
    assert lookup([1, 2], "") == [1, 2]
    assert [int_id(v) for v in (5, "-12", "007", True, 1.0, "1e3", 2**63, "x")] == [
        5,
        -12,
        7,
        None,
        None,
        None,
        None,
        None,
    ]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"paginator": "cursor"}, "needs api.cursor_path"),
        ({"paginator": "next_url"}, "needs api.next_url_path"),
        ({"paginator": "keyset"}, "needs api.id_param"),
        ({"paginator": "offset", "first_id": 3}, "first_id and api.last_id apply to the id styles"),
        ({"paginator": "cursor", "cursor_path": "next", "total_path": "count"}, "total_path and api.total_header"),
        ({"upper_param": "id__lt"}, "upper_param applies to paginator 'keyset'"),
        ({"paginator": "scroll"}, "api.paginator"),
        ({"records_path": "data..items"}, "dotted path"),
        ({"paginator": "cursor", "cursor_path": ""}, "dotted path"),
    ],
)
def test_bad_pagination_config_is_refused_with_a_message_naming_the_key(keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        api(**keys)


def test_the_default_is_the_original_offset_id_style() -> None:
    paginator = make_paginator(api())
    assert (paginator.style, paginator.slicing) == ("offset_id", "id")
    assert str(paginator.request(42)) == f"{URL}?offset=42&limit=3"


def test_records_at_the_root_of_a_bare_array_body() -> None:
    config = api(paginator="link_header", records_path="")
    assert read(config, 0, RECORDS).records == RECORDS


def test_offset_id_null_ends_but_a_missing_path_on_a_full_page_is_a_config_mistake() -> None:
    config = api()
    assert read(config, 0, {"meta": {"next_offset": None}, "response": RECORDS}).next is None
    assert read(config, 0, {"meta": {}, "response": RECORDS[:2]}).next is None  # a short page: the end
    with pytest.raises(ConfigError, match=r"no 'meta\.next_offset' \(api\.next_offset_path\) on a full page"):
        read(config, 0, {"meta": {}, "response": RECORDS})
    with pytest.raises(TransientApiError, match="does not move forward"):
        read(config, 5, {"meta": {"next_offset": 5}, "response": RECORDS})
    assert read(config, 0, {"meta": {"next_offset": "9"}, "response": RECORDS}).next == 9


@pytest.mark.parametrize("value", [2**63, "9223372036854775808"])
def test_a_next_offset_one_past_the_largest_id_ends_the_data(value: object) -> None:
    """The last id + 1 after a page that ends at 2**63 - 1: nothing can follow. It was an id out of range,
    retried, exit 3 and "run the same command to resume" (SPEC audit)."""
    assert read(api(), 0, {"meta": {"next_offset": value}, "response": RECORDS}).next is None


def test_an_integer_next_offset_out_of_range_is_shown_with_all_its_digits() -> None:
    with pytest.raises(TransientApiError, match=r"range of ids: 18,446,744,073,709,551,616$"):
        read(api(), 0, {"meta": {"next_offset": 2**64}, "response": RECORDS})


@pytest.mark.parametrize("value", [2**64, float(2**64), -(2**63) - 1, "18446744073709551616"])
def test_a_next_offset_beyond_64_bits_is_named_an_integer_out_of_range(value: object) -> None:
    with pytest.raises(TransientApiError, match=r"'meta\.next_offset' is an integer beyond the signed 64-bit range"):
        read(api(), 0, {"meta": {"next_offset": value}, "response": RECORDS})
    with pytest.raises(TransientApiError, match=r"'meta\.next_offset' is not an integer: 2\.5"):
        read(api(), 0, {"meta": {"next_offset": 2.5}, "response": RECORDS})


def test_keyset_derives_the_next_position_from_the_highest_id_in_any_order() -> None:
    inclusive = api(paginator="keyset", id_param="id__gte", upper_param="id__lt", records_path="rows")
    paginator = make_paginator(inclusive)
    assert str(paginator.request(10, 50)) == f"{URL}?id__gte=10&limit=3&id__lt=50"
    assert str(paginator.request(10)) == f"{URL}?id__gte=10&limit=3"
    rows = [{"id": "12"}, {"id": 17}, {"id": 11}]
    assert read(inclusive, 10, {"rows": rows, "next": "17"}).next == 18
    assert read(inclusive, 10, {"rows": [], "next": None}).next is None
    # The largest id there can be ends the data: 2**63 is no id to ask an API for, as a bound or an end.
    top = 2**63 - 1
    assert read(inclusive, top - 5, {"rows": [{"id": top - 1}, {"id": top}]}).next is None
    assert str(paginator.request(top - 5, 2**63)) == f"{URL}?id__gte={top - 5}&limit=3"
    exclusive = api(paginator="keyset", id_param="since_id", id_param_inclusive=False, records_path="rows")
    # A position is the lowest id wanted: an exclusive API is asked for the one below it.
    assert str(make_paginator(exclusive).request(10)) == f"{URL}?since_id=9&limit=3"
    assert str(make_paginator(exclusive).request(-(2**63))) == f"{URL}?limit=3"
    assert read(exclusive, 10, {"rows": rows}).next == 18
    with pytest.raises(TransientApiError, match="would not move forward"):
        read(exclusive, 18, {"rows": rows})
    with pytest.raises(ConfigError, match="none of the 3 records has an integer one"):
        read(inclusive, 0, {"rows": [{"uuid": "a"}, {"uuid": "b"}, {"uuid": "c"}]})  # a full page: fields.id
    # A page that is not full and holds no id is the last (its records are rejected): with upper_param, the
    # end of a slice whose range holds only such records. It stopped the job with exit 2 (audit of changes).
    assert read(inclusive, 0, {"rows": [{"uuid": "a"}]}).next is None


def test_offset_and_page_number_read_totals_from_the_body_or_a_header() -> None:
    offset = api(paginator="offset", records_path="results", total_header="X-Total-Count")
    page = read(offset, 6, {"results": RECORDS}, {"X-Total-Count": "9"})
    assert (page.next, page.total) == (9, 9)
    # A full page that ends on the total: one more page tells whether the total is right (it may be low).
    assert not make_paginator(offset).finished(page, None) and make_paginator(offset).at_total(page)
    assert make_paginator(offset).finished(read(offset, 7, {"results": RECORDS[:2]}, {"X-Total-Count": "9"}), None)
    with pytest.raises(ConfigError, match=r"api\.total_header 'X-Total-Count'"):
        read(offset, 0, {"results": RECORDS})
    pages = api(paginator="page_number", records_path="results", total_path="count", page_param="p", first_page=0)
    paginator = make_paginator(pages)
    assert (paginator.first(), str(paginator.request(4))) == (0, f"{URL}?p=4&limit=3")
    got = read(pages, 0, {"results": RECORDS, "count": 7})
    assert (got.next, got.total) == (1, 3)  # 7 records at 3 a page: pages 0, 1, 2
    assert not paginator.finished(got, None)
    assert paginator.finished(read(pages, 2, {"results": [{"id": 7}], "count": 7}), None)
    assert make_paginator(api(paginator="offset")).slicing == "sequential"
    past = read(pages, 2, {"results": RECORDS, "count": 7})  # 9 rows served of a total of 7: the total is low
    assert past.past_total and not paginator.finished(past, None)
    short = read(pages, 0, {"results": RECORDS[:2], "count": 7})  # a server that caps its pages below page_size?
    paginator.confirm(short, lambda p: read(pages, p, {"results": [], "count": 7}))  # no: the data ends there
    with pytest.raises(ConfigError, match=r"served 2 records on p=0 and more on the next page, not api\.page_size"):
        paginator.confirm(short, lambda p: read(pages, p, {"results": [{"id": 8}, {"id": 9}], "count": 7}))  # yes


def test_cursor_first_request_carries_the_limit_and_later_ones_the_cursor() -> None:
    config = api(paginator="cursor", cursor_path="paging.next", cursor_param="after", records_path="data")
    paginator = make_paginator(config)
    assert str(paginator.request(0)) == f"{URL}?limit=3"
    page = read(config, 0, {"data": RECORDS, "paging": {"next": "b64=="}})
    assert page.next == {"cursor": "b64=="}
    assert paginator.request(page.next).params["after"] == "b64=="
    assert paginator.request(page.next).params["limit"] == "3"
    assert read(config, page.next, {"data": RECORDS, "paging": {"next": ""}}).next is None
    with pytest.raises(TransientApiError, match="would loop"):
        read(config, page.next, {"data": RECORDS, "paging": {"next": "b64=="}})
    with pytest.raises(ConfigError, match=r"api\.cursor_path"):
        read(config, 0, {"data": RECORDS, "paging": {}})


def test_next_url_is_requested_as_given_and_relative_ones_are_resolved() -> None:
    config = api(paginator="next_url", next_url_path="links.next", records_path="items")
    paginator = make_paginator(config)
    assert str(paginator.request(0)) == f"{URL}?limit=3"
    page = read(config, 0, {"items": RECORDS, "links": {"next": "events?page=2&size=3"}})
    assert page.next == {"url": "https://api.example.test/v1/events?page=2&size=3"}
    assert str(paginator.request(page.next)) == "https://api.example.test/v1/events?page=2&size=3"  # no limit added
    absolute = read(config, page.next, {"items": RECORDS, "links": {"next": "https://other.test/x?c=1"}})
    assert absolute.next == {"url": "https://other.test/x?c=1"}
    with pytest.raises(TransientApiError, match="would loop"):
        read(config, page.next, {"items": RECORDS, "links": {"next": "?page=2&size=3"}})


def test_a_stored_next_url_holds_no_credentials_and_gets_them_back_when_requested() -> None:
    secret = "https://robot:pa55@api.example.test/v1/events?api_key=k3y"
    config = api(url=secret, paginator="next_url", next_url_path="next", records_path="items")
    paginator = make_paginator(config)
    following = "https://robot:pa55@api.example.test/v1/events?api_key=k3y&cursor=abc"
    page = paginator.read(0, {"items": RECORDS, "next": following}, answer(paginator.request(0)))
    assert "pa55" not in str(page.next) and "k3y" not in str(page.next)
    assert str(paginator.request(page.next)) == following


def test_link_header_next() -> None:
    config = api(paginator="link_header", records_path="")
    link = f'<{URL}?page=3>; rel="next", <{URL}?page=9>; rel="last"'
    assert read(config, 0, RECORDS, {"Link": link}).next == {"url": "https://api.example.test/v1/events?page=3"}
    assert read(config, 0, RECORDS, {"Link": '<https://api.example.test/v1/events?page=1>; rel="prev"'}).next is None


@pytest.mark.parametrize(
    ("document", "shape"),
    [
        ({"meta": {}, "error": "try again"}, "it is missing; the body's top-level keys: meta, error"),
        ({"response": None}, "it is null"),
        ({"response": {"a": 1}}, "it is an object with keys: a"),
        ("<html>", "it is missing; the body is a string"),
    ],
)
def test_no_list_at_the_records_path_is_a_fault(document: Any, shape: str) -> None:
    with pytest.raises(TransientApiError, match=shape):
        read(api(), 0, document)


@pytest.mark.parametrize(
    ("headers", "target"),
    [
        (['<https://a.test/2>; rel="next"'], "https://a.test/2"),
        (["</2>; rel=next"], "/2"),
        (['</2>; rel="Next"'], "/2"),  # relation types are case-insensitive, and so are parameter names
        (['</2>; REL="NEXT"'], "/2"),
        (['</2>; rel="prefetch next"'], "/2"),  # several relation types in one rel
        (['</last>; rel="last", </2>; rel="next last"'], "/2"),
        (['</2>; title="a;b,c"; rel="next"'], "/2"),  # ; and , inside a quoted value, before rel
        (['</x>; title="x; rel=next, y", </2>; rel=next'], "/2"),  # rel=next inside a title is no relation
        (['</2>; title="say \\"hi; there\\""; rel=next'], "/2"),  # an escaped quote inside a quoted value
        (['</1>; rel="prev"', '</2>; rel="next"'], "/2"),  # several Link headers
        (['< /2 >; rel = "next"'], "/2"),
        (['</a,b>; rel="next"'], "/a,b"),  # a comma inside the target
        (['</2>; rel="next"; rel="prev"'], "/2"),  # only a link's first rel counts
        (['</1>; rel="prev"; rel="next"'], None),
        (['</1>; rel="prev"'], None),
        ([], None),
    ],
)
def test_link_headers_are_read_as_rfc_8288_writes_them(headers: list[str], target: str | None) -> None:
    from lifestats.paginate import next_link

    assert next_link(headers) == target


def test_data_end_past_a_count_that_ends_on_a_full_page() -> None:
    """Offset: a full page ending on the count asks one more; there a refusal, an empty page or the last
    page served again end the data, and a refusal before that point does not."""
    offset = api(paginator="offset", records_path="results", total_header="X-Total-Count")
    end = DataEnd(make_paginator(offset))
    end.taking(0)
    assert not end.refused(ApiError("not found", status=404))  # not past the count: a real failure
    full = read(offset, 6, {"results": RECORDS}, {"X-Total-Count": "9"})
    assert end.next_position(full, None) == 9  # asked for, to see whether the data ends there
    assert not end.served_again(full, nothing_new=False)
    end.taking(9)
    assert end.refused(ApiError("not found", status=404)) and not end.refused(ApiError("down", status=503))
    assert end.served_again(read(offset, 9, {"results": RECORDS}, {"X-Total-Count": "9"}), nothing_new=True)
    assert end.next_position(read(offset, 9, {"results": []}, {"X-Total-Count": "9"}), None) is None


def test_data_end_past_the_horizon_of_a_live_api() -> None:
    """A crawl by id's open last slice: past the end of the data the run found at its start (the horizon),
    a page that is not full ends the data; a full one, one below the horizon, or a slice with an end, does
    not (keyset, page size 3)."""
    keyset = api(paginator="keyset", id_param="since", records_path="rows")
    live = DataEnd(make_paginator(keyset), horizon=3)
    short = read(keyset, 3, {"rows": [{"id": 3}, {"id": 4}]})  # next: 5, past the horizon, not full
    assert live.next_position(short, None) is None
    assert live.next_position(short, 100) == 5  # a slice with an end: the end decides
    full = read(keyset, 3, {"rows": [{"id": 3}, {"id": 4}, {"id": 5}]})
    assert live.next_position(full, None) == 6
    below = DataEnd(make_paginator(keyset), horizon=10)
    assert below.next_position(short, None) == 5
    assert DataEnd(make_paginator(keyset)).next_position(short, None) == 5  # no horizon (positional, or last_id)


def test_data_end_of_page_numbers_without_a_count() -> None:
    """Page numbers without a count: past page 1, a short page served again or a 404 ends the data; a
    full page served again ends it only after two pages of new records (an API that ignores the page
    parameter serves one page only: that is no end, the crawl stops as stuck), and only when the page after
    it holds the same records again."""
    numbered = api(paginator="page_number", records_path="results")
    end = DataEnd(make_paginator(numbered))
    end.taking(1)
    assert not end.refused(ApiError("not found", status=404))  # page 1 refused: a real failure
    assert not end.served_again(read(numbered, 1, {"results": RECORDS}), nothing_new=False)
    end.taking(2)
    assert end.refused(ApiError("not found", status=404))
    assert not end.served_again(read(numbered, 2, {"results": RECORDS}), nothing_new=True)  # one fresh page
    end.taking(3)
    assert end.served_again(read(numbered, 3, {"results": RECORDS[:2]}), nothing_new=True)  # short: the last again
    fresh = DataEnd(make_paginator(numbered))
    for number in (1, 2):
        fresh.taking(number)
        assert not fresh.served_again(read(numbered, number, {"results": RECORDS}), nothing_new=False)
    fresh.taking(3)
    # the page after it has other records: this one was pushed down by records added at the head
    pushed_down = read(numbered, 3, {"results": RECORDS})
    assert not fresh.served_again(pushed_down, nothing_new=True, next_serves_it=lambda: False)
    fresh.taking(4)
    assert fresh.served_again(read(numbered, 4, {"results": RECORDS}), nothing_new=True, next_serves_it=lambda: True)


@given(st.integers(min_value=-(2**64), max_value=2**64), st.integers(min_value=0, max_value=40))
def test_an_id_written_as_decimal_digits_is_its_value_whatever_its_leading_zeros(number: int, zeros: int) -> None:
    """Ids of more than 19 characters, zero-padded ("00000000000000000003"), were rejected: 10 of 30
    records, exit 0 (audit W). SPEC section 1: strings of decimal digits are read as integers."""
    text = ("-" if number < 0 else "") + "0" * zeros + str(abs(number))
    assert int_id(text) == (number if -(2**63) <= number < 2**63 else None)


@pytest.mark.parametrize("text", ["", "-", "+1", " 1", "1 ", "1_000", "1.0", "0x10", "\u0663", "--1", "1e3"])
def test_a_text_that_is_not_decimal_digits_is_no_id(text: str) -> None:
    assert int_id(text.encode().decode("unicode_escape")) is None
