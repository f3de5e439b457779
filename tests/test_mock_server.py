"""The mock API: sources, the real HTTP server, fault injection, respx routes, TLS and the CLI."""

from __future__ import annotations

import email.utils
import json
import ssl
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest
import respx
import trustme

from mocks.api import RequestLog, SlidingWindowLimiter
from mocks.dataset import DatasetSpec, generate
from mocks.faults import KINDS, TRANSIENT_KINDS, FaultSpec, build_reply, records_before
from mocks.routes import DEFAULT_URL, mock_api
from mocks.server import PROJECT_ROOT, MockServer, serve_in_subprocess
from mocks.source import LIFESUM_DIR, ListSource, ReplaySource
from mocks.styles import MockStyle

LIFESUM_PAGE_COUNT = 20


def make_records(n: int = 500) -> list[dict[str, Any]]:
    """Records with gaps (including a long empty stretch) and ids beyond 2**32."""
    ids = [3 * i + (i % 2) for i in range(n // 2)] + [2**33 + 7 * i for i in range(n - n // 2)]
    return [{"id": i, "item": i % 17, "category": f"c{i % 5:02d}"} for i in ids]


@pytest.fixture
def records() -> list[dict[str, Any]]:
    return make_records()


@pytest.fixture
def source(records: list[dict[str, Any]]) -> ListSource:
    return ListSource(records)


@pytest.fixture(scope="module")
def replay() -> ReplaySource:
    return ReplaySource()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as c:
        yield c


def get(client: httpx.Client, url: str, offset: int, limit: int = 100, **kwargs: Any) -> httpx.Response:
    return client.get(url, params={"offset": offset, "limit": limit}, **kwargs)


def crawl(client: httpx.Client, url: str, start: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Follow next_offset from `start`; the records and the number of pages."""
    found: list[dict[str, Any]] = []
    offset: int | None = start
    pages = 0
    while offset is not None:
        response = get(client, url, offset, limit)
        response.raise_for_status()
        body = response.json()
        found += body["response"]
        pages += 1
        assert body["meta"]["next_offset"] is None or body["meta"]["next_offset"] > offset
        offset = body["meta"]["next_offset"]
    return found, pages


def lifesum_meta(number: int) -> dict[str, Any]:
    return json.loads((LIFESUM_DIR / f"{number}.json").read_text())["meta"]


# --------------------------------------------------------------------------------------------- sources


def test_list_source_pages(records: list[dict[str, Any]], source: ListSource) -> None:
    first, next_offset = source.page(0, 10)
    assert first == records[:10]
    assert next_offset == records[9]["id"] + 1
    between, _ = source.page(records[9]["id"] + 1, 3)  # an offset inside a gap
    assert between == records[10:13]
    last, end = source.page(records[-3]["id"], 10)
    assert last == records[-3:] and end is None
    assert source.page(records[-1]["id"] + 1, 10) == ([], None)
    exact, after = source.page(records[-4]["id"], 4)
    assert exact == records[-4:] and after is None


def test_list_source_rejects_duplicate_ids() -> None:
    with pytest.raises(ValueError, match="unique"):
        ListSource([{"id": 1}, {"id": 1}])


def test_replay_source_covers_every_offset(replay: ReplaySource) -> None:
    starts = [lifesum_meta(n)["offset"] for n in range(1, LIFESUM_PAGE_COUNT + 1)]
    assert len(replay.records) == 2000
    assert replay.page_for(0).number == 1
    assert replay.page_for(starts[1] - 1).number == 1
    assert replay.page_for(starts[1]).number == 2
    assert replay.page_for(starts[6] + 50).number == 7
    assert replay.page_for(starts[7] - 1).number == 7
    assert replay.page_for(starts[-1]).number == LIFESUM_PAGE_COUNT
    assert replay.page_for(10**15).number == LIFESUM_PAGE_COUNT


class PageOnly:
    """A source with only `page` (like an arbitrary PageSource): exercises the generic records_before."""

    def __init__(self, inner: ListSource) -> None:
        self.inner = inner

    def page(self, offset: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        return self.inner.page(offset, limit)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_records_before_generic_matches_list_source(source: ListSource, n: int) -> None:
    ids = [r["id"] for r in source.records]
    generic = PageOnly(source)
    for offset in [0, 1, ids[0], ids[0] + 1, ids[1] + 1, ids[5], ids[249] + 1, ids[250], ids[300] + 3, 2**40]:
        assert records_before(generic, offset, n) == source.before(offset, n), offset


# -------------------------------------------------------------------------------------- the HTTP server


def test_server_pages_chain_covers_every_record_once(
    records: list[dict[str, Any]], source: ListSource, client: httpx.Client
) -> None:
    with MockServer(source) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/events")
        found, pages = crawl(client, server.url, 0, 37)
    assert found == records
    assert pages == -(-len(records) // 37)


def test_server_page_shape_and_end(records: list[dict[str, Any]], source: ListSource, client: httpx.Client) -> None:
    with MockServer(source) as server:
        response = get(client, server.url, 5, 4)
        past_end = get(client, server.url, records[-1]["id"] + 1, 4)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    body = orjson.loads(response.content)
    assert list(body) == ["meta", "response"]
    assert body["meta"] == {"code": 200, "limit": 4, "offset": 5, "next_offset": records[5]["id"] + 1}
    assert body["response"] == records[2:6]
    assert past_end.json() == {
        "meta": {"code": 200, "limit": 4, "offset": records[-1]["id"] + 1, "next_offset": None},
        "response": [],
    }


def test_server_keeps_connections_alive(source: ListSource, client: httpx.Client) -> None:
    with MockServer(source) as server:
        ports = set()
        for offset in range(5):
            response = get(client, server.url, offset, 2)
            assert response.status_code == 200
            assert response.headers.get("connection", "").lower() != "close"
            stream = response.extensions["network_stream"]
            ports.add(stream.get_extra_info("client_addr")[1])
    assert len(ports) == 1


def test_the_log_names_the_connection_each_request_came_from(source: ListSource) -> None:
    """Two clients, each on one keep-alive connection: the log tells their requests apart by the port
    each connection has on the client's side (what a benchmark reads per worker)."""
    ports: list[int] = []
    with MockServer(source) as server, httpx.Client(timeout=5.0) as first, httpx.Client(timeout=5.0) as second:
        for client in (first, second, first, second, first):
            response = get(client, server.url, 0, 2)
            assert response.status_code == 200
            ports.append(response.extensions["network_stream"].get_extra_info("client_addr")[1])
        log = server.log
    assert ports[0] == ports[2] == ports[4] != ports[1] == ports[3]
    assert [entry.client for entry in log] == ports


def test_server_caps_page_size(source: ListSource, client: httpx.Client) -> None:
    with MockServer(source, max_page_size=50) as server:
        body = get(client, server.url, 0, 10_000).json()
    assert body["meta"]["limit"] == 50
    assert len(body["response"]) == 50


@pytest.mark.parametrize(
    "query",
    [
        {"limit": 10},
        {"offset": 0},
        {"offset": "abc", "limit": 10},
        {"offset": "-", "limit": 10},
        {"offset": 0, "limit": 0},
        {"offset": "1.5", "limit": 10},
        {"offset": 0, "limit": ""},
    ],
)
def test_server_rejects_bad_parameters(source: ListSource, client: httpx.Client, query: dict[str, Any]) -> None:
    with MockServer(source) as server:
        response = client.get(server.url, params=query)
    assert response.status_code == 400
    assert response.json()["meta"]["code"] == 400
    assert server.log[-1].status == 400


def test_server_custom_parameter_names_and_path(source: ListSource, client: httpx.Client) -> None:
    with MockServer(source, path="/api/v2/food", offset_param="from", limit_param="size") as server:
        assert server.url.endswith("/api/v2/food")
        ok = client.get(server.url, params={"from": 0, "size": 3})
        wrong = get(client, server.url, 0, 3)
        missing = client.get(server.url.replace("/api/v2/food", "/events"), params={"from": 0, "size": 3})
    assert ok.status_code == 200 and len(ok.json()["response"]) == 3
    assert wrong.status_code == 400
    assert missing.status_code == 404


def test_server_requires_token(source: ListSource, client: httpx.Client) -> None:
    with MockServer(source, token="s3cret") as server:
        anonymous = get(client, server.url, 0)
        wrong = get(client, server.url, 0, headers={"Authorization": "Bearer nope"})
        right = get(client, server.url, 0, headers={"Authorization": "Bearer s3cret"})
    assert anonymous.status_code == 401 and wrong.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert "s3cret" not in anonymous.text
    assert right.status_code == 200
    assert [e.status for e in server.log] == [401, 401, 200]


def test_server_binds_loopback_only(source: ListSource) -> None:
    for host in ("0.0.0.0", "192.168.1.10", "example.com"):
        with pytest.raises(ValueError, match="loopback"):
            MockServer(source, host=host)


def test_server_rate_limit_bursts_get_429(source: ListSource, client: httpx.Client) -> None:
    rate = 10
    with MockServer(source, rate_limit=rate) as server:
        responses = [get(client, server.url, i, 5) for i in range(rate + 5)]
    limited = [r for r in responses if r.status_code == 429]
    assert limited, "a burst over the limit must be refused"
    assert all(0 < float(r.headers["retry-after"]) <= 1.0 for r in limited)
    admitted = [e for e in server.log if e.status == 200]
    assert len(admitted) + len(limited) == rate + 5
    # no sliding 1-second window holds more than `rate` admitted requests
    times = [e.t for e in admitted]
    assert all(sum(1 for u in times if t <= u < t + 1.0) <= rate for t in times)
    assert all(e.fault is None for e in server.log)


def test_sliding_window_limiter_decisions() -> None:
    limiter = SlidingWindowLimiter(3)
    assert [limiter.acquire(t) for t in (0.0, 0.1, 0.2)] == [0.0, 0.0, 0.0]
    assert limiter.acquire(0.5) == pytest.approx(0.5)
    assert limiter.acquire(1.0) == 0.0  # the request at 0.0 left the window
    assert limiter.acquire(1.05) == pytest.approx(0.05)
    slow = SlidingWindowLimiter(0.5)
    assert slow.acquire(0.0) == 0.0
    assert slow.acquire(1.0) == pytest.approx(1.0)
    assert slow.acquire(2.0) == 0.0


def test_server_latency_is_added(source: ListSource, client: httpx.Client) -> None:
    with MockServer(source, latency=0.05) as server:
        started = time.monotonic()
        assert get(client, server.url, 0).status_code == 200
        assert time.monotonic() - started >= 0.05


def test_server_log_contents(source: ListSource, client: httpx.Client) -> None:
    with MockServer(source) as server:
        get(client, server.url, 0, 10)
        get(client, server.url, 7, 3)
        client.get(server.url, params={"offset": 9})
        log = server.log
        server.clear_log()
        assert server.log == []
    assert [(e.offset, e.limit, e.status, e.fault) for e in log] == [
        (0, 10, 200, None),
        (7, 3, 200, None),
        (9, None, 400, None),
    ]
    assert log[0].t <= log[1].t <= log[2].t


def test_server_concurrent_clients(records: list[dict[str, Any]], source: ListSource) -> None:
    offsets = [r["id"] for r in records[::10]]
    with MockServer(source) as server, httpx.Client(timeout=5.0) as c, ThreadPoolExecutor(16) as pool:
        bodies = list(pool.map(lambda o: get(c, server.url, o, 10).json(), offsets))
    assert [b["response"] for b in bodies] == [records[i : i + 10] for i in range(0, len(records), 10)]
    assert len(server.log) == len(offsets)


# -------------------------------------------------------------------------------------------- replay


def test_replay_server_semantics(replay: ReplaySource, client: httpx.Client) -> None:
    page2 = lifesum_meta(2)["offset"]
    page7 = lifesum_meta(7)
    page20 = lifesum_meta(20)
    with MockServer(replay) as server:
        below = [get(client, server.url, o, 100).json() for o in (0, 17, page2 - 1)]
        inside7 = get(client, server.url, page7["offset"] + 40, 5).json()
        beyond = get(client, server.url, 10**14, 100).json()
    assert all(b["meta"] == lifesum_meta(1) for b in below)
    assert inside7["meta"] == page7
    assert list(inside7["meta"]) == list(page7)  # the page's meta as given, key order included
    assert len(inside7["response"]) == 100  # limit ignored
    assert inside7["response"][0]["id"] < page7["offset"] + 40  # records below the requested offset
    assert beyond["meta"] == page20 and beyond["meta"]["next_offset"] is None


def test_replay_server_chain_visits_every_page(replay: ReplaySource, client: httpx.Client) -> None:
    with MockServer(replay) as server:
        found, pages = crawl(client, server.url, 0, 100)
    assert pages == LIFESUM_PAGE_COUNT
    assert len(found) == 2000 and len({r["id"] for r in found}) == 2000
    assert found == replay.records
    assert [e.offset for e in server.log] == [lifesum_meta(n)["offset"] for n in range(1, 21)]


# ---------------------------------------------------------------------------------------------- faults


def only(kind: str, **kwargs: Any) -> FaultSpec:
    """Every offset faulted with `kind` on its first attempt only."""
    return FaultSpec(seed=11, rate={kind: 1.0}, max_per_offset=1, **kwargs)


@pytest.mark.parametrize("kind", ["500", "502", "503", "504"])
def test_fault_server_errors(source: ListSource, client: httpx.Client, kind: str) -> None:
    with MockServer(source, faults=only(kind)) as server:
        first = get(client, server.url, 0)
        second = get(client, server.url, 0)
    assert first.status_code == int(kind)
    assert first.headers["content-type"].startswith(("application/json", "text/html"))
    assert int(first.headers["content-length"]) == len(first.content) > 0
    assert second.status_code == 200 and len(second.json()["response"]) == 100
    assert [(e.status, e.fault) for e in server.log] == [(int(kind), kind), (200, None)]


def test_fault_429_retry_after_seconds(source: ListSource, client: httpx.Client) -> None:
    with MockServer(source, faults=only("429", retry_after=0.2)) as server:
        first = get(client, server.url, 0)
        second = get(client, server.url, 0)
    assert first.status_code == 429 and float(first.headers["retry-after"]) == pytest.approx(0.2)
    assert second.status_code == 200


def test_fault_429_retry_after_http_date(source: ListSource, client: httpx.Client) -> None:
    with MockServer(source, faults=only("429-date", retry_after=3.0)) as server:
        first = get(client, server.url, 0)
    assert first.status_code == 429
    when = email.utils.parsedate_to_datetime(first.headers["retry-after"])
    assert when.tzinfo is not None and when.timestamp() >= time.time() + 1.0
    assert first.headers["retry-after"].endswith("GMT")


def test_fault_429_storm_until_max_per_offset(source: ListSource, client: httpx.Client) -> None:
    spec = FaultSpec(seed=1, rate={"429": 1.0}, max_per_offset=4)
    with MockServer(source, faults=spec) as server:
        statuses = [get(client, server.url, 0).status_code for _ in range(6)]
    assert statuses == [429, 429, 429, 429, 200, 200]


def test_fault_reset(source: ListSource, client: httpx.Client) -> None:
    with MockServer(source, faults=only("reset")) as server:
        with pytest.raises(httpx.TransportError):
            get(client, server.url, 0)
        assert get(client, server.url, 0).status_code == 200
    assert [(e.status, e.fault) for e in server.log] == [(0, "reset"), (200, None)]


def test_fault_slow(source: ListSource) -> None:
    with MockServer(source, faults=only("slow", slow_seconds=30.0)) as server, httpx.Client(timeout=0.2) as c:
        with pytest.raises(httpx.ReadTimeout):
            get(c, server.url, 0)
        assert get(c, server.url, 0).status_code == 200
    assert [e.fault for e in server.log] == ["slow", None]


def test_fault_truncated(source: ListSource, client: httpx.Client) -> None:
    with MockServer(source, faults=only("truncated")) as server:
        first = get(client, server.url, 0)
        second = get(client, server.url, 0)
    assert first.status_code == 200
    assert int(first.headers["content-length"]) == len(first.content)
    assert len(first.content) == len(second.content) // 2
    assert second.content.startswith(first.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(first.content)


def test_fault_html(source: ListSource, client: httpx.Client) -> None:
    with MockServer(source, faults=only("html")) as server:
        first = get(client, server.url, 0)
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/html")
    assert first.text.lstrip().lower().startswith("<!doctype html>")


def test_fault_stuck(records: list[dict[str, Any]], source: ListSource, client: httpx.Client) -> None:
    offset = records[20]["id"]
    with MockServer(source, faults=only("stuck")) as server:
        first = get(client, server.url, offset, 10).json()
        second = get(client, server.url, offset, 10).json()
    assert first["meta"]["next_offset"] == offset
    assert first["response"] == records[20:30]
    assert second["meta"]["next_offset"] == records[29]["id"] + 1


def test_fault_duplicates_repeat_previous_records(
    records: list[dict[str, Any]], source: ListSource, client: httpx.Client
) -> None:
    spec = FaultSpec(seed=5, rate={"duplicates": 1.0})
    with MockServer(source, faults=spec) as server:
        first = get(client, server.url, 0, 10).json()
        offset = first["meta"]["next_offset"]
        bodies = [get(client, server.url, offset, 10).content for _ in range(3)]
    assert first["response"] == records[:10]  # nothing below offset 0
    assert bodies[0] == bodies[1] == bodies[2]  # a content fault: every request of that offset
    page = orjson.loads(bodies[0])["response"]
    repeats = spec.duplicates(offset)
    assert 1 <= repeats <= 3
    assert page[:repeats] == records[10 - repeats : 10]
    assert page[repeats:] == records[10:20]
    assert {e.fault for e in server.log} == {"duplicates"}


def test_fault_duplicates_on_replay_repeat_previous_page(replay: ReplaySource) -> None:
    spec = FaultSpec(seed=2, rate={"duplicates": 1.0})
    page7 = lifesum_meta(7)["offset"]
    reply = build_reply(replay, page7 + 30, 100, None, spec, spec.duplicates(page7 + 30))
    body = orjson.loads(reply.body)
    repeats = spec.duplicates(page7 + 30)
    previous = replay.page_for(page7 - 1).records
    assert body["response"][:repeats] == previous[-repeats:]
    assert body["response"][repeats:] == replay.page_for(page7).records
    assert body["meta"] == lifesum_meta(7)


def test_fault_decisions_are_deterministic_and_bounded() -> None:
    spec = FaultSpec(seed=42, rate=0.5, max_per_offset=2)
    again = FaultSpec(seed=42, rate=0.5, max_per_offset=2)
    other = FaultSpec(seed=43, rate=0.5, max_per_offset=2)
    decisions = [spec.decide(o, a) for o in range(500) for a in range(4)]
    assert decisions == [again.decide(o, a) for o in range(500) for a in range(4)]
    assert decisions != [other.decide(o, a) for o in range(500) for a in range(4)]
    assert all(spec.decide(o, a) is None for o in range(500) for a in (2, 3))
    eligible = [spec.decide(o, a) for o in range(500) for a in (0, 1)]
    faulted = [d for d in eligible if d is not None]
    assert 0.4 < len(faulted) / len(eligible) < 0.6
    assert set(faulted) == set(TRANSIENT_KINDS)
    assert [spec.duplicates(o) for o in range(500)] == [again.duplicates(o) for o in range(500)]
    assert {spec.duplicates(o) for o in range(500)} == {0, 1, 2, 3}


def test_fault_spec_validation() -> None:
    with pytest.raises(ValueError, match="unknown"):
        FaultSpec(kinds={"418"})
    with pytest.raises(ValueError, match="unknown"):
        FaultSpec(rate={"teapot": 0.1})
    with pytest.raises(ValueError, match="sum"):
        FaultSpec(rate={"500": 0.7, "reset": 0.7})
    assert FaultSpec(rate=0.3, kinds={"500", "502"}).rates == {"500": 0.15, "502": 0.15}
    assert set(FaultSpec(rate=0.1).rates) == set(KINDS)


def test_server_fault_decisions_ignore_request_order(source: ListSource) -> None:
    """Concurrent clients reorder requests; decisions depend on (seed, offset, attempt) only."""
    spec = FaultSpec(seed=9, rate=0.6, kinds=set(TRANSIENT_KINDS) - {"slow", "reset"}, max_per_offset=2)
    offsets = [r["id"] for r in source.records[:60]]

    def faults_by_offset(order: list[int], workers: int) -> dict[int, list[str | None]]:
        with MockServer(source, faults=spec) as server, httpx.Client(timeout=5.0) as c:
            for _ in range(3):
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(lambda o: get(c, server.url, o, 5), order))
        seen: dict[int, list[str | None]] = defaultdict(list)
        for entry in server.log:
            assert entry.offset is not None
            seen[entry.offset].append(entry.fault)
        return dict(seen)

    forward = faults_by_offset(offsets, 1)
    shuffled = faults_by_offset(offsets[::-1], 8)
    assert forward == shuffled
    assert forward == {o: [spec.decide(o, a) for a in range(3)] for o in offsets}
    assert any(f is not None for faults in forward.values() for f in faults)
    assert all(faults[2] is None for faults in forward.values())


# ----------------------------------------------------------------------------------------------- respx


@pytest.fixture(scope="module")
def respx_client() -> Iterator[httpx.Client]:
    """One client for the respx tests: building an SSL context per httpx.get() costs ~30 ms."""
    with httpx.Client() as c:
        yield c


def respx_get(client: httpx.Client, offset: int, limit: int, **kwargs: Any) -> httpx.Response:
    return client.get(DEFAULT_URL, params={"offset": offset, "limit": limit}, **kwargs)


@pytest.mark.parametrize("use_replay", [False, True])
def test_respx_routes_serve_identical_bodies(
    records: list[dict[str, Any]],
    replay: ReplaySource,
    client: httpx.Client,
    respx_client: httpx.Client,
    use_replay: bool,
) -> None:
    source = replay if use_replay else ListSource(records)
    offsets = [0, 1, 658331400, 2**33, 2**34] if use_replay else [0, 1, records[100]["id"], 2**33 + 5, 2**34]
    with MockServer(source) as server:
        served = [get(client, server.url, o, 25) for o in offsets]
    with mock_api(source) as router:
        mocked = [respx_get(respx_client, o, 25) for o in offsets]
        assert router["events"].call_count == len(offsets)
    for real, fake in zip(served, mocked, strict=True):
        assert (fake.status_code, fake.headers["content-type"], fake.content) == (
            real.status_code,
            real.headers["content-type"],
            real.content,
        )


def test_respx_routes_serve_identical_faults(
    source: ListSource, client: httpx.Client, respx_client: httpx.Client
) -> None:
    kinds = {"500", "502", "503", "504", "429", "truncated", "html", "stuck", "duplicates"}
    spec = FaultSpec(seed=3, rate=0.7, kinds=kinds, max_per_offset=2)
    offsets = [r["id"] for r in source.records[:40]] * 3
    server_log, respx_log = RequestLog(), RequestLog()
    with MockServer(source, faults=spec) as server:
        served = [get(client, server.url, o, 7) for o in offsets]
        server_log = server.request_log
    with mock_api(source, faults=spec, log=respx_log):
        mocked = [respx_get(respx_client, o, 7) for o in offsets]
    for real, fake in zip(served, mocked, strict=True):
        assert (fake.status_code, fake.content, fake.headers.get("retry-after")) == (
            real.status_code,
            real.content,
            real.headers.get("retry-after"),
        )
    strip = [(e.offset, e.limit, e.status, e.fault) for e in server_log.snapshot()]
    assert strip == [(e.offset, e.limit, e.status, e.fault) for e in respx_log.snapshot()]
    assert {e.fault for e in respx_log.snapshot()} - {None} >= {"500", "html", "duplicates"}


def test_respx_transport_faults_and_token(source: ListSource, respx_client: httpx.Client) -> None:
    with mock_api(source, faults=only("reset")):
        with pytest.raises(httpx.ConnectError):
            respx_get(respx_client, 0, 5)
        assert respx_get(respx_client, 0, 5).status_code == 200
    with mock_api(source, faults=only("slow")), pytest.raises(httpx.ReadTimeout):
        respx_get(respx_client, 0, 5)
    with mock_api(source, token="t0k") as router:
        assert respx_get(respx_client, 0, 5).status_code == 401
        assert respx_get(respx_client, 0, 5, headers={"Authorization": "Bearer t0k"}).status_code == 200
        with pytest.raises(respx.models.AllMockedAssertionError):  # other hosts are not mocked
            respx_client.get("https://elsewhere.example.test/events")
        assert router["events"].call_count == 2


# ------------------------------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_tls_trusted_ca_succeeds_and_default_verification_fails(ca: trustme.CA, source: ListSource) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with MockServer(source, ssl_context=server_context) as server:
        assert server.url.startswith("https://127.0.0.1:")
        with httpx.Client(verify=client_context, timeout=5.0) as trusting:
            body = get(trusting, server.url, 0, 3).json()
            assert body["response"] == source.records[:3]
        with httpx.Client(timeout=5.0) as default, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY"):
            get(default, server.url, 0, 3)
        with httpx.Client(verify=client_context, timeout=5.0) as again:  # still serving after a failed handshake
            assert get(again, server.url, 0, 3).status_code == 200
    assert [e.status for e in server.log] == [200, 200]


# ------------------------------------------------------------------------------------- the subprocess


def test_serve_in_subprocess_replay_with_token(client: httpx.Client) -> None:
    url, stop = serve_in_subprocess(replay=True, token="sub-token", rate_limit=1000)
    try:
        assert url.startswith("http://127.0.0.1:")
        assert get(client, url, 0).status_code == 401
        body = get(client, url, 0, headers={"Authorization": "Bearer sub-token"}).json()
        assert body["meta"] == lifesum_meta(1)
    finally:
        stop()
    stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        get(client, url, 0, headers={"Authorization": "Bearer sub-token"})


def test_cli_child_exits_when_stdin_closes() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "mocks.server", "--replay", "--watch-stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=PROJECT_ROOT,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        url = process.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:")
        process.stdin.close()  # as when the parent dies
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


# ------------------------------------------------------------------------------------- the styles


def follow(client: httpx.Client, server_url: str, style: MockStyle, limit: int = 40) -> tuple[list[dict], int]:
    """Page through the mock in `style` as its own documentation says; the records and the request count."""
    found: list[dict] = []
    requests = 0
    url: str | None = server_url
    params: dict[str, Any] | None = {"limit": limit}
    page = 1
    position = 0
    while url is not None:
        response = client.get(url, params=params)
        requests += 1
        assert response.status_code == 200, response.text
        body = response.json()
        records = body if style.key == "" else body[style.key]
        found += records
        if style.name == "offset":
            assert body["count"] == int(response.headers["X-Total-Count"])
            position += len(records)
            params = {"offset": position, "limit": limit}
            url = server_url if records else None
        elif style.name == "page_number":
            page += 1
            params = {"page": page, "limit": limit}
            url = server_url if page <= body["total_pages"] else None
        elif style.name == "cursor":
            params = {"cursor": body["next_cursor"], "limit": limit}
            url = server_url if body["next_cursor"] else None
        elif style.name == "next_url":
            url = str(httpx.URL(str(response.url)).join(body["next"])) if body["next"] else None
            params = None
        elif style.name == "link_header":
            url = response.links.get("next", {}).get("url")
            params = None
        elif style.name == "keyset":
            params = {"id__gte": int(body["next"]) + 1, "limit": limit} if body["next"] else {}
            url = server_url if body["next"] else None
    return found, requests


@pytest.mark.parametrize("name", ["keyset", "offset", "page_number", "cursor", "next_url", "link_header"])
def test_every_style_serves_every_record_once_in_order(
    name: str, records: list[dict[str, Any]], source: ListSource, client: httpx.Client
) -> None:
    style = MockStyle(name)
    with MockServer(source, style=style) as server:
        found, requests = follow(client, server.url, style)
    assert found == records
    assert requests in (len(records) // 40 + 1, len(records) // 40 + 2)


def test_style_shapes_ids_and_order(records: list[dict[str, Any]], source: ListSource, client: httpx.Client) -> None:
    style = MockStyle("offset_id", records_key="", unsorted=True, string_ids=True, id_shift=-(10**6))
    with MockServer(source, style=style) as server:
        first = get(client, server.url, -(2**63), 30).json()
    assert isinstance(first, list)  # a bare array: the next offset is nowhere
    assert sorted(first, key=lambda r: int(r["id"])) != first  # shuffled
    assert sorted(int(r["id"]) for r in first) == [r["id"] - 10**6 for r in records[:30]]
    assert all(isinstance(r["id"], str) for r in first)


def test_keyset_upper_bound_and_token(records: list[dict[str, Any]], source: ListSource, client: httpx.Client) -> None:
    with MockServer(source, style=MockStyle("keyset")) as server:
        low, high = records[10]["id"], records[15]["id"]
        bounded = client.get(server.url, params={"id__gte": low, "id__lt": high, "limit": 100}).json()
        full = client.get(server.url, params={"id__gte": low, "limit": 3}).json()
    assert bounded["rows"] == records[10:15] and bounded["next"] is None
    assert full["rows"] == records[10:13] and full["next"] == str(records[12]["id"])


def test_a_200_without_records_is_an_opt_in_fault(source: ListSource, client: httpx.Client) -> None:
    faults = FaultSpec(seed=1, rate={"no-records": 1.0}, kinds=frozenset({"no-records"}), max_per_offset=1)
    with MockServer(source, faults=faults, style=MockStyle("cursor")) as server:
        broken = client.get(server.url, params={"limit": 5})
        healed = client.get(server.url, params={"limit": 5})
    assert broken.status_code == 200 and "data" not in broken.json() and "error" in broken.json()
    assert len(healed.json()["data"]) == 5
    assert "no-records" not in FaultSpec().kinds  # never injected unless asked for


def test_serve_in_subprocess_in_a_style(client: httpx.Client) -> None:
    url, stop = serve_in_subprocess(seed=3, records=300, style=MockStyle("link_header"))
    try:
        found, _ = follow(client, url, MockStyle("link_header"), limit=100)
    finally:
        stop()
    assert len(found) == 300


@pytest.mark.parametrize("name", ["offset", "keyset", "cursor", "link_header"])
def test_the_command_line_serves_the_generated_dataset_chunk_by_chunk(client: httpx.Client, name: str) -> None:
    """The child serves a LazyDataset (small chunks here, so pages cross them): every record, in order, equal
    to the same spec generated whole in memory."""
    spec = {"seed": 4, "records": 1_200, "chunk": 250, "mean_gap": 2.0, "malformed_share": 0.02}
    expected = generate(DatasetSpec(**spec))
    url, stop = serve_in_subprocess(**spec, style=MockStyle(name))
    try:
        found, _ = follow(client, url, MockStyle(name), limit=333)
    finally:
        stop()
    assert found == orjson.loads(orjson.dumps([expected.record(i) for i in range(len(expected))]))


def test_the_server_serves_a_lazy_dataset_as_its_pages_say() -> None:
    """The fast path (the dataset renders its JSON text itself) answers the same document as the dicts."""
    from mocks.dataset import LazyDataset
    from mocks.source import page_payload

    data = LazyDataset(DatasetSpec(seed=5, records=5000, malformed_share=0.05, null_share=0.05, chunk=1000))
    with MockServer(data) as server, httpx.Client() as client:
        offset: int | None = 0
        pages = 0
        while offset is not None:
            answer = client.get(server.url, params={"offset": offset, "limit": 700})
            assert answer.status_code == 200
            document = orjson.loads(answer.content)
            assert document == page_payload(data, offset, 700)
            offset = document["meta"]["next_offset"]
            pages += 1
    assert pages == 8
