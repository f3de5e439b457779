"""Crawling slices in-process over respx routes: fast checks of the task logic against the ground truth."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from lifestats.count import PageCounter, SliceCursor
from lifestats.fetch import ApiClient
from lifestats.plan import Slice, discover, plan_slices
from lifestats.protocol import Flush, Split, Task
from lifestats.report import build_report
from lifestats.seen import SeenIds
from lifestats.stats import Partial
from lifestats.task import crawl_slice
from mocks.dataset import DatasetSpec, generate, ground_truth
from mocks.faults import FaultSpec
from mocks.routes import mock_api

from .conftest import AS_OF, job_settings

URL = "https://api.example.test/events"
DATA = generate(DatasetSpec(seed=31, records=6_000, empty_share=0.6))


class Free:
    def acquire(self, *, retry: bool = False) -> None:
        return None

    def left(self) -> None:
        return None

    def pause(self, seconds: float) -> None:
        return None


def crawl_all(
    slices: list[Slice], proposals: Iterator[int | None] | None = None, **api: object
) -> tuple[dict, list[Flush | Split]]:
    settings = job_settings(URL, api={"page_size": 77, **api}, crawl={"backoff": 0, "retries": 5})
    counter = PageCounter(settings, AS_OF)
    total = Partial()
    messages: list[Flush | Split] = []
    queue = list(slices)
    with ApiClient(settings.api, settings.crawl, Free()) as client:
        while queue:
            piece = queue.pop(0)
            before = len(messages)
            crawl_slice(
                Task(piece, 1, piece.begin, piece.begin - 1, 0),
                client,
                counter,
                3,
                messages.append,
                (lambda: next(proposals, None)) if proposals else (lambda: None),
            )
            for message in messages[before:]:
                if isinstance(message, Flush):
                    total.merge(Partial.from_bytes(message.partial))
                elif message.accepted:  # the rest of the range becomes a slice of its own
                    queue.append(Slice(len(slices) + len(queue), message.new_end, piece.end))
    return build_report(total, settings, AS_OF, {}, partial=False), messages


def statistics(report: dict) -> dict:
    return {key: report[key] for key in ("records", "windows", "series")}


def test_discovered_slices_count_every_record_once() -> None:
    with mock_api(DATA, URL):
        settings = job_settings(URL, api={"page_size": 77})
        with ApiClient(settings.api, settings.crawl, Free()) as client:
            bounds = discover(client.get_page, "id", None, None)
        report, _ = crawl_all(plan_slices(bounds, 9))
    assert bounds.first_id == DATA.first_id and bounds.estimated_end == DATA.end_id
    assert statistics(report) == ground_truth(DATA, as_of=AS_OF)


def test_split_proposals_hand_over_the_rest_of_a_slice() -> None:
    until = int(DATA.ids[3000])
    # The first proposal comes before the first page: the worker halves the range up to `until` (accepted);
    # a second, whose `until` lies below the cursor, is refused.
    proposals = iter([until, None, None, None, int(DATA.ids[10]), *[None] * 10_000])
    with mock_api(DATA, URL):
        report, messages = crawl_all([Slice(0, DATA.first_id, None)], proposals)
    answers = [(m.new_end, m.accepted) for m in messages if isinstance(m, Split)]
    assert [accepted for _, accepted in answers] == [True, False]
    chosen = answers[0][0]
    assert DATA.first_id < chosen < until
    assert abs((chosen - DATA.first_id) - (until - chosen)) <= 1  # the middle of what was left
    assert statistics(report) == ground_truth(DATA, as_of=AS_OF)


def test_a_worker_ahead_of_its_last_flush_halves_what_it_really_has_left() -> None:
    # After 7 pages of 77 records (two flushes of 3 pages, and one page since), the coordinator, which has
    # seen only the flushes, asks for half of the way to the end; the worker cuts in the middle of the
    # rest of its own range, past every id it has counted, not only past its last flush.
    end = DATA.end_id
    proposals = iter([*[None] * 7, end, *[None] * 10_000])
    with mock_api(DATA, URL):
        report, messages = crawl_all([Slice(0, DATA.first_id, end)], proposals)
    splits = [m for m in messages if isinstance(m, Split)]
    assert len(splits) == 1 and splits[0].accepted
    ids = sorted(int(i) for i in DATA.ids)
    counted, flushed = ids[7 * 77 - 1], ids[6 * 77 - 1]  # the highest ids counted, and flushed, by then
    rest = counted + 1  # the first id the worker may still count
    assert splits[0].new_end > counted > flushed
    assert abs((splits[0].new_end - rest) - (end - splits[0].new_end)) <= 1
    assert statistics(report) == ground_truth(DATA, as_of=AS_OF)


def test_a_proposal_with_less_than_a_page_on_either_side_is_refused() -> None:
    # `until` just past the first page: the half handed over would hold less than a page's ids.
    proposals = iter([None, int(DATA.ids[80]), *[None] * 10_000])
    with mock_api(DATA, URL):
        report, messages = crawl_all([Slice(0, DATA.first_id, None)], proposals)
    assert [m.accepted for m in messages if isinstance(m, Split)] == [False]
    assert statistics(report) == ground_truth(DATA, as_of=AS_OF)


def test_transient_faults_and_repeated_records_in_process() -> None:
    faults = FaultSpec(seed=9, rate=0.3, kinds=frozenset({"500", "truncated", "html", "stuck", "duplicates"}))
    with mock_api(DATA, URL, faults=faults):
        report, _ = crawl_all([Slice(0, DATA.first_id, DATA.end_id)])
    expected = ground_truth(DATA, as_of=AS_OF)
    duplicates = report["records"]["duplicates"]
    assert duplicates > 0
    assert report["windows"] == expected["windows"]
    assert report["records"]["fetched"] == expected["records"]["fetched"] + duplicates


@pytest.mark.parametrize("offset_param", ["after"])
def test_parameter_names_follow_the_config(offset_param: str) -> None:
    with mock_api(DATA, URL, offset_param=offset_param):
        report, _ = crawl_all([Slice(0, DATA.first_id, None)], offset_param=offset_param)
    assert statistics(report) == ground_truth(DATA, as_of=AS_OF)


def test_a_page_in_any_order_counts_like_the_sorted_page() -> None:
    """Ids as numbers or decimal strings, in any order inside each page, overlapping pages: same counts."""
    settings = job_settings(URL)
    counter = PageCounter(settings, AS_OF)
    records = [DATA.record(i) for i in range(300)]
    rng = random.Random(4)
    pages = [records[start : start + 40] for start in range(0, 300, 25)]  # overlapping pages
    expected, shuffled = Partial(), Partial()
    sorted_cursor = SliceCursor(DATA.first_id, int(DATA.ids[250]), DATA.first_id - 1)
    shuffled_cursor = SliceCursor(DATA.first_id, int(DATA.ids[250]), DATA.first_id - 1)
    for page in pages:
        counter.count_page(expected, page, page[0]["id"], sorted_cursor)
        mixed = [{**r, "id": str(r["id"])} if rng.random() < 0.5 else r for r in page]
        rng.shuffle(mixed)
        counter.count_page(shuffled, mixed, page[0]["id"], shuffled_cursor)
    assert shuffled.records["fetched"] == expected.records["fetched"] == 250 + expected.records["duplicates"]
    assert expected.records["duplicates"] > 0
    got = statistics(build_report(shuffled, settings, AS_OF, {}, partial=False))
    assert got == statistics(build_report(expected, settings, AS_OF, {}, partial=False))
    assert got == ground_truth(DATA, as_of=AS_OF, end=int(DATA.ids[250])) | {"records": got["records"]}
    assert got["records"]["fetched"] - got["records"]["duplicates"] == 250


def test_rows_seen_on_a_recent_page_of_the_slice_count_once() -> None:
    counter = PageCounter(job_settings(URL), AS_OF)
    partial, recent = Partial(), SeenIds()
    records = [DATA.record(i) for i in range(20)]
    counter.count_rows(partial, records[:10], None, recent)
    counter.count_rows(partial, records[8:18], None, recent)  # two rows shifted into the next page
    counter.count_rows(partial, [{"item": 3}], None, recent)  # no id: rejected
    counter.count_rows(partial, records[18:], 1, recent)  # only one row left inside the slice
    assert partial.records["fetched"] == 10 + 10 + 1 + 1
    assert partial.records["duplicates"] == 2
    assert partial.records["received"] == 10 + 10 + 1 + 2


def test_the_next_page_is_requested_while_the_last_one_is_counted() -> None:
    """Counting each page but the last waits until the next page has been asked for: without the fetch
    ahead, that wait would end in its timeout (and the test fail) instead of in the request."""
    import threading

    settings = job_settings(URL, api={"page_size": 100}, crawl={"backoff": 0, "retries": 0})
    piece = Slice(0, DATA.first_id, DATA.end_id)
    requests: list[object] = []
    asked = threading.Condition()

    class Watching(ApiClient):
        def get_page(self, position: object, end: int | None = None):  # type: ignore[no-untyped-def]
            with asked:
                requests.append(position)
                asked.notify_all()
            return super().get_page(position, end)

    def crawl(counter: PageCounter) -> None:
        requests.clear()
        with mock_api(DATA, URL), Watching(settings.api, settings.crawl, Free()) as client:
            crawl_slice(Task(piece, 1, piece.begin, piece.begin - 1, 0), client, counter, 3, lambda m: None)

    crawl(PageCounter(settings, AS_OF))
    pages = len(requests)
    waits: list[bool] = []

    class Waiting(PageCounter):
        def count_page(self, partial: Partial, records: list, offset: int, cursor: SliceCursor) -> None:  # type: ignore[override]
            counted = len(waits)
            if counted + 1 < pages and all(waits):  # one wait in vain is enough to fail
                with asked:
                    waits.append(asked.wait_for(lambda: len(requests) >= counted + 2, timeout=30))
            super().count_page(partial, records, offset, cursor)

    crawl(Waiting(settings, AS_OF))
    assert pages > 10 and all(waits) and len(waits) == pages - 1


@pytest.mark.parametrize("ahead", [True, False])
def test_a_page_peeked_at_is_the_page_taken_with_one_request(ahead: bool) -> None:
    """The crawl may look at the page it asked for before it takes it (to tell a page served again past the
    data from records added at the head): the same page, one request, and a failure raised where it is
    taken, on a thread of its own (the process pool) or on the calling one (Dask)."""
    from lifestats.errors import ApiError
    from lifestats.paginate import Page
    from lifestats.task import _InPlace, _Prefetch

    asked: list[object] = []

    class Client:
        def get_page(self, position: object, end: int | None = None) -> Page:
            asked.append(position)
            if position == "broken":
                raise ApiError("the API failed")
            return Page(position, [{"id": position}], None)

    fetcher = _Prefetch(Client()) if ahead else _InPlace(Client())  # type: ignore[arg-type]
    try:
        fetcher.ask(7, None)
        peeked = fetcher.peek()
        assert peeked is not None and peeked.records == [{"id": 7}]
        assert fetcher.peek() is peeked and fetcher.take() is peeked
        fetcher.ask("broken", None)
        assert fetcher.peek() is None
        with pytest.raises(ApiError, match="the API failed"):
            fetcher.take()
        assert asked == [7, "broken"]
    finally:
        fetcher.close(wait=True)


def test_the_offset_asked_for_once_past_an_empty_page_is_never_a_flush_s_position() -> None:
    """A flush due on the page that chose the offset past an empty page (asked for once, see
    lifestats.paginate.DataEnd._gap) stored that offset as the slice's position: a worker killed while it
    was asked left a checkpoint whose every resume took it for a page of the data, and failed when the
    API refused it (exit 3; audit Y). The flush waits for its answer, and a crawl stopped there keeps the
    empty page before it."""
    import httpx
    import respx

    from lifestats.errors import ApiError

    def answer(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        if offset < 10:
            rows = [{"id": i, "item_id": i % 3} for i in range(max(offset, 0), 10)]
            return httpx.Response(200, json={"response": rows, "meta": {"next_offset": 10}})
        if offset < 5000:
            return httpx.Response(200, json={"response": [], "meta": {"next_offset": 5000}})
        return httpx.Response(401)  # a failure the crawl does not take for the end of the data

    settings = job_settings(URL, api={"page_size": 10}, crawl={"backoff": 0, "retries": 0})
    messages: list[Flush | Split] = []
    piece = Slice(0, 0, 7000)
    with respx.mock, ApiClient(settings.api, settings.crawl, Free()) as client:
        respx.get(URL).mock(side_effect=answer)
        with pytest.raises(ApiError):
            crawl_slice(Task(piece, 1, 0, -1, 0), client, PageCounter(settings, AS_OF), 1, messages.append)
    positions = [message.position for message in messages if isinstance(message, Flush)]
    assert positions and 5000 not in positions and positions[-1] == 10
