"""The HTTP client: pages, retries, 429 pauses, fatal errors that name the URL and never the token."""

from __future__ import annotations

import email.utils
import errno
import socketserver
import threading
import time
from typing import Any

import httpx
import orjson
import pytest
import respx

from lifestats.config import load_settings
from lifestats.errors import ApiError, LifestatsError
from lifestats.fetch import ApiClient, retry_after_seconds

URL = "https://api.example.test/events"
TOKEN = "s3cr3t-token-value"


class RecordingLimiter:
    def __init__(self) -> None:
        self.acquired = 0
        self.retries: list[bool] = []  # each acquire's retry flag, in order
        self.pauses: list[float] = []

    def acquire(self, *, retry: bool = False) -> None:
        self.acquired += 1
        self.retries.append(retry)

    def left(self) -> None:
        return None

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)


def page(offset: int, ids: list[int], next_offset: int | None) -> httpx.Response:
    body = {"meta": {"code": 200, "offset": offset, "next_offset": next_offset}, "response": [{"id": i} for i in ids]}
    return httpx.Response(200, content=orjson.dumps(body), headers={"content-type": "application/json"})


def client(limiter: RecordingLimiter, **api: object) -> ApiClient:
    settings = load_settings(
        None, "test", environ={}, overrides={"api": {"url": URL, **api}, "crawl": {"retries": 3, "backoff": 0}}
    )
    return ApiClient(settings.api, settings.crawl, limiter, token=TOKEN)


@respx.mock
def test_page_request_sends_offset_limit_and_bearer_token() -> None:
    route = respx.get(URL).mock(return_value=page(10, [10, 11], 12))
    limiter = RecordingLimiter()
    got = client(limiter, page_size=2).get_page(10)
    assert got.records == [{"id": 10}, {"id": 11}]
    assert got.next_offset == 12
    request = route.calls.last.request
    assert request.url.params["offset"] == "10"
    assert request.url.params["limit"] == "2"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert limiter.acquired == 1


@respx.mock
@pytest.mark.parametrize(
    "fault",
    [
        httpx.Response(503),
        httpx.Response(502, text="<html>bad gateway</html>"),
        httpx.Response(200, text="<html><body>Error</body></html>", headers={"content-type": "text/html"}),
        httpx.Response(200, content=b'{"meta": {"next_offset": 3}, "response": [{"id":'),
        httpx.ConnectError("reset"),
        httpx.ReadTimeout("slow"),
        page(5, [5], 5),  # next_offset that does not move forward
    ],
)
def test_transient_faults_are_retried_and_every_attempt_passes_the_limiter(fault: object) -> None:
    limiter = RecordingLimiter()
    respx.get(URL).mock(side_effect=[fault, fault, page(5, [5, 6], 7)])
    api = client(limiter)
    assert api.get_page(5).next_offset == 7
    assert limiter.acquired == 3
    assert limiter.retries == [False, True, True]  # the limiter is told which sends are retries
    assert api.counts.requests == 3
    assert api.counts.retries == 2
    respx.get(URL).mock(side_effect=[page(7, [7], None)])
    assert api.get_page(7).next_offset is None
    assert limiter.retries[3:] == [False]  # the next page's first attempt is not one


@respx.mock
def test_429_pauses_the_shared_limiter_for_retry_after_in_seconds_and_as_a_date() -> None:
    limiter = RecordingLimiter()
    date = email.utils.formatdate(timeval=2_000_000_000, usegmt=True)
    respx.get(URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "1.5"}),
            httpx.Response(429, headers={"Retry-After": date}),
            page(0, [1], None),
        ]
    )
    assert client(limiter).get_page(0).next_offset is None
    assert limiter.pauses[0] == 1.5
    assert retry_after_seconds(date, now=lambda: 2_000_000_000 - 7) == 7.0


@respx.mock
def test_a_page_broken_past_its_retries_fails_naming_url_and_offset_without_the_token() -> None:
    limiter = RecordingLimiter()
    respx.get(URL).mock(return_value=httpx.Response(500))
    with pytest.raises(ApiError) as info:
        client(limiter).get_page(4242)
    message = str(info.value)
    assert URL in message and "offset 4242" in message and "HTTP 500" in message and "4 attempts" in message
    assert TOKEN not in message
    assert info.value.exit_code == 3


@respx.mock
def test_client_errors_are_not_retried() -> None:
    limiter = RecordingLimiter()
    respx.get(URL).mock(return_value=httpx.Response(401))
    with pytest.raises(ApiError, match="HTTP 401"):
        client(limiter).get_page(0)
    assert limiter.acquired == 1


@respx.mock
@pytest.mark.parametrize("declared", [True, False])
def test_a_response_over_the_size_cap_fails_at_once_naming_the_settings(declared: bool) -> None:
    """It was retried 8 times (the same page is as large every time) and ended 'run the same command to
    resume' without naming the setting."""
    limiter = RecordingLimiter()
    body = orjson.dumps({"response": list(range(50)), "meta": {"next_offset": None}})
    headers = {} if declared else {"Transfer-Encoding": "chunked"}
    respx.get(URL).mock(
        return_value=httpx.Response(200, content=iter([body]) if not declared else body, headers=headers)
    )
    with pytest.raises(ApiError, match=r"over api\.max_response_bytes \(100\): lower api\.page_size") as info:
        client(limiter, max_response_bytes=100).get_page(0)
    assert limiter.acquired == 1
    assert info.value.resumable is False
    assert (f"a body of {len(body):,} bytes" if declared else "a body of more than 100 bytes") in str(info.value)


@respx.mock
def test_configurable_paths_and_parameter_names() -> None:
    body = {"data": {"items": [{"id": 3}]}, "paging": {"next": 9}}
    route = respx.get(URL).mock(return_value=httpx.Response(200, content=orjson.dumps(body)))
    api = client(
        RecordingLimiter(),
        records_path="data.items",
        next_offset_path="paging.next",
        offset_param="after",
        limit_param="per_page",
    )
    got = api.get_page(3)
    assert (got.records, got.next_offset) == ([{"id": 3}], 9)
    assert route.calls.last.request.url.params["after"] == "3"
    assert route.calls.last.request.url.params["per_page"] == "100"


@respx.mock
def test_a_next_offset_that_never_moves_forward_ends_with_a_clear_error() -> None:
    respx.get(URL).mock(return_value=page(70, [70, 71], 70))
    with pytest.raises(ApiError, match="next_offset 70 does not move forward from offset 70"):
        client(RecordingLimiter()).get_page(70)


@respx.mock
def test_query_parameters_of_the_configured_url_are_kept() -> None:
    route = respx.get(url__startswith=URL).mock(return_value=page(0, [1], None))
    api = client(RecordingLimiter(), url=f"{URL}?kind=visit")
    api.get_page(0)
    params = route.calls.last.request.url.params
    assert (params["kind"], params["offset"], params["limit"]) == ("visit", "0", "100")


class _Trickle(socketserver.BaseRequestHandler):
    """Answers 200 with a valid JSON page, one byte every 50 ms (a whole answer takes seconds); with
    ``head`` set, the status line and a long header first, a byte at a time too (minutes). Says in
    ``whole_head`` whether it got to send all of the head before the client hung up."""

    head = False
    version = "HTTP/1.1"
    whole_head: list[bool]
    whole_body: list[bool]
    done: threading.Event

    def handle(self) -> None:
        body = orjson.dumps({"meta": {"next_offset": None}, "response": [{"id": i} for i in range(12)]})
        self.request.recv(65536)
        padding = f"X-Padding: {'.' * 4000}\r\n" if self.head else ""
        length = f"Content-Length: {len(body)}\r\n"
        head = f"{self.version} 200 OK\r\nContent-Type: application/json\r\n{padding}{length}\r\n"
        sent_head = sent_body = False
        try:
            if self.head:
                for byte in head.encode():
                    self.request.sendall(bytes([byte]))
                    time.sleep(0.05)  # the server's behaviour under test, not a synchronisation
            else:
                self.request.sendall(head.encode())
            sent_head = True
            for byte in body:
                self.request.sendall(bytes([byte]))
                time.sleep(0.05)
            sent_body = True
        except OSError:
            return  # the client hung up: what a whole-request timeout does
        finally:
            self.whole_head.append(sent_head)
            self.whole_body.append(sent_body)
            self.done.set()


@pytest.mark.parametrize(
    ("head", "version"),
    # the body only, or the status line and headers too; and an HTTP/1.0 answer, whose connection closes
    # after it (http.client then forgets the socket, and the body was not watched: it ran its whole length)
    [(False, "HTTP/1.1"), (True, "HTTP/1.1"), (False, "HTTP/1.0")],
)
def test_a_server_that_trickles_its_answer_is_cut_at_the_timeout(head: bool, version: str) -> None:
    whole_head: list[bool] = []
    whole_body: list[bool] = []
    done = threading.Event()
    attributes = {"head": head, "version": version, "whole_head": whole_head, "whole_body": whole_body, "done": done}
    handler = type("Trickle", (_Trickle,), attributes)
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as server:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/events"
            settings = load_settings(
                None, "test", environ={}, overrides={"api": {"url": url, "timeout": 0.5}, "crawl": {"retries": 0}}
            )
            with ApiClient(settings.api, settings.crawl, RecordingLimiter()) as api, pytest.raises(ApiError) as info:
                api.get_page(0)
            assert done.wait(30)  # the server noticed the client hang up
        finally:
            server.shutdown()
    assert "timed out" in str(info.value) and "api.timeout (0.5 s)" in str(info.value)
    assert whole_head == [not head]  # a trickled head was cut before it was all sent
    assert whole_body == [False]  # and a trickled body before it was all sent


@respx.mock
@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (b"not gzip at all", {"content-encoding": "gzip"}, "could not be decoded"),
        (b'{"meta": {}, "response": [{"id": 1, "item": "caf\xe9"}]}', {}, "not JSON"),
    ],
)
def test_a_body_that_cannot_be_decoded_is_retried_like_any_broken_answer(
    body: bytes, headers: dict[str, str], reason: str
) -> None:
    """A Content-Encoding the body does not follow, bytes that are not UTF-8: retried, then a clear exit 3."""

    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=httpx.ByteStream(body), headers=headers)

    respx.get(url__startswith=URL).mock(side_effect=[broken, page(0, [1], None)])
    settings = load_settings(None, "test", environ={}, overrides={"api": {"url": URL}, "crawl": {"backoff": 0}})
    keys = [key for key in settings.fields.model_dump().values() if key]
    api = ApiClient(settings.api, settings.crawl, RecordingLimiter(), record_keys=keys)
    assert [record.get("id") for record in api.get_page(0).records] == [1]
    respx.get(url__startswith=URL).mock(side_effect=broken)
    with pytest.raises(ApiError) as info:
        api.get_page(0)
    assert reason in str(info.value)


def _gzip_members(data: bytes, cuts: int) -> bytes:
    """``data`` as a gzip body of ``cuts + 1`` members, each compressed on its own (as a server that
    flushes its compressor per part of the answer sends it)."""
    import gzip

    size = -(-len(data) // (cuts + 1))
    return b"".join(gzip.compress(data[i : i + size]) for i in range(0, len(data), size))


def _serve_gzip(body: bytes, encoding: str) -> Any:
    """A real HTTP server on 127.0.0.1 answering every request with ``body`` as ``Content-Encoding: encoding``."""
    from .json_api import JsonHandler, serving

    class Api(JsonHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", encoding)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return serving(Api)


@pytest.mark.parametrize(
    ("encoding", "members", "padding"),
    [
        ("gzip", 3, b""),
        ("x-gzip", 1, b""),
        ("GZip", 2, b"\0" * 8),
        ("identity, gzip", 3, b""),
        ("gzip", 2, b"\r\n-- stray bytes after the body"),  # ignored, as before (httpx ignored them)
        ("x-gzip, gzip", 2, b""),  # two layers: compressed twice
        ("gzip, gzip, gzip", 1, b""),
    ],
)
def test_a_gzip_body_of_several_members_or_named_x_gzip_is_read_whole(
    encoding: str, members: int, padding: bytes
) -> None:
    """A gzip body may hold several members (RFC 1952); httpx's decoder read the first only, so the page was
    "not JSON", retried and the job stopped with exit 3. ``x-gzip`` (gzip's old name, RFC 9110) was not
    decoded at all."""
    records = [{"id": i, "item": f"food {i}", "category": i % 5} for i in range(300)]
    document = {"meta": {"next_offset": None}, "response": records}
    body = _gzip_members(orjson.dumps(document), members - 1) + padding
    for _ in range(encoding.count("gzip") - 1):  # each further layer compresses the body again
        body = _gzip_members(body, 0)
    with _serve_gzip(body, encoding) as base:
        overrides = {"api": {"url": f"{base}/events"}, "crawl": {"retries": 0}}
        settings = load_settings(None, "test", environ={}, overrides=overrides)
        keys = [key for key in settings.fields.model_dump().values() if key]
        for record_keys in (keys, None):  # decoded into records, and parsed whole
            with ApiClient(settings.api, settings.crawl, RecordingLimiter(), record_keys=record_keys) as api:
                assert [record.get("id") for record in api.get_page(0).records] == list(range(300))


def test_a_gzip_body_is_held_to_the_size_cap_once_decoded() -> None:
    """A small body that expands past api.max_response_bytes is refused as too large, whatever its members."""
    document = {"meta": {"next_offset": None}, "response": [{"id": 1, "item": "x" * 2_000_000}]}
    body = _gzip_members(orjson.dumps(document), 1)
    assert len(body) < 100_000
    with _serve_gzip(body, "gzip") as base:
        overrides = {"api": {"url": f"{base}/events", "max_response_bytes": 1_000_000}, "crawl": {"retries": 0}}
        settings = load_settings(None, "test", environ={}, overrides=overrides)
        with (
            ApiClient(settings.api, settings.crawl, RecordingLimiter()) as api,
            pytest.raises(ApiError, match="max_response_bytes"),
        ):
            api.get_page(0)


@respx.mock
def test_retry_after_is_capped_by_crawl_max_retry_after_and_says_so() -> None:
    limiter = RecordingLimiter()
    respx.get(URL).mock(side_effect=[httpx.Response(429, headers={"Retry-After": "3600"}), page(0, [1], None)])
    assert client(limiter).get_page(0).records == [{"id": 1}]
    assert limiter.pauses == [300.0]  # the default cap
    capped = RecordingLimiter()
    respx.get(URL).mock(return_value=httpx.Response(429, headers={"Retry-After": "3600"}))
    settings = load_settings(
        None, "test", environ={}, overrides={"api": {"url": URL}, "crawl": {"retries": 1, "max_retry_after": 2}}
    )
    with pytest.raises(ApiError) as info:
        ApiClient(settings.api, settings.crawl, capped).get_page(0)
    assert capped.pauses == [2.0, 2.0]
    assert "asked for 3600 s, more than crawl.max_retry_after" in str(info.value)


@respx.mock
@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_or_missing_token_names_the_variable_never_the_token(status: int) -> None:
    respx.get(URL).mock(return_value=httpx.Response(status))
    limiter = RecordingLimiter()
    with pytest.raises(ApiError) as refused:
        client(limiter).get_page(0)
    assert "refused the token in LIFESTATS_API_TOKEN" in str(refused.value) and TOKEN not in str(refused.value)
    assert not refused.value.resumable and refused.value.status == status
    assert limiter.acquired == 1  # not retried
    settings = load_settings(None, "test", environ={}, overrides={"api": {"url": URL}})
    with pytest.raises(ApiError) as missing:
        ApiClient(settings.api, settings.crawl, RecordingLimiter()).get_page(0)
    assert "LIFESTATS_API_TOKEN is not set" in str(missing.value)
    # A user and password in api.url, no token: those were refused (the message named the missing token).
    with_user = URL.replace("https://", "https://reader:pw-never-shown@")
    respx.get(url__startswith=with_user.replace("reader:pw-never-shown@", "")).mock(return_value=httpx.Response(status))
    settings = load_settings(None, "test", environ={}, overrides={"api": {"url": with_user}})
    with pytest.raises(ApiError) as basic:
        ApiClient(settings.api, settings.crawl, RecordingLimiter()).get_page(0)
    assert "refused the user and password in api.url" in str(basic.value)
    assert "pw-never-shown" not in str(basic.value) and "LIFESTATS_API_TOKEN" not in str(basic.value)


@respx.mock
@pytest.mark.parametrize("status", [404, 416, 422])
def test_a_404_names_the_url_and_is_permanent(status: int) -> None:
    """416 and 422 too: a resume sends the same request and meets the same answer (they were advised as
    resumable: "run the same command to resume")."""
    respx.get(url__startswith=URL).mock(return_value=httpx.Response(status))
    with pytest.raises(ApiError) as info:
        client(RecordingLimiter()).get_page(7)
    assert f"HTTP {status}" in str(info.value) and f"{URL}?offset=7&limit=100" in str(info.value)
    assert not info.value.resumable


@respx.mock
def test_credentials_in_the_url_never_appear_in_a_message() -> None:
    secret_url = "https://robot:pa55word@api.example.test/events?api_key=k3y-value&kind=visit"
    respx.get(host="api.example.test", path="/events").mock(
        side_effect=[
            httpx.Response(500),
            httpx.Response(500),
            httpx.Response(500),
            httpx.Response(500),
            httpx.Response(404),
        ]
    )
    with pytest.raises(ApiError) as transient:
        client(RecordingLimiter(), url=secret_url).get_page(3)
    with pytest.raises(ApiError) as permanent:
        client(RecordingLimiter(), url=secret_url).get_page(3)
    for error in (transient.value, permanent.value):
        text = str(error)
        assert "pa55word" not in text and "k3y-value" not in text and "robot" not in text
        assert "api.example.test/events" in text


@respx.mock
@pytest.mark.parametrize(
    ("body", "shape"),
    [
        ({"meta": {"code": 200}, "error": "busy, try again"}, "missing; the body's top-level keys: meta, error"),
        ({"meta": {}, "response": None}, "null"),
        ({"meta": {}, "response": {"id": 1}}, "an object with keys: id"),
        (b"<html><body>Maintenance</body></html>", "the body is not JSON (text/html, 37 bytes)"),
    ],
)
def test_a_200_without_a_list_of_records_is_a_fault_naming_the_path_and_keys(body: object, shape: str) -> None:
    def answer() -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.Response(200, content=body, headers={"content-type": "text/html; charset=utf-8"})
        return httpx.Response(200, content=orjson.dumps(body))

    limiter = RecordingLimiter()
    respx.get(URL).mock(side_effect=[answer(), page(0, [1], None)])
    assert client(limiter).get_page(0).records == [{"id": 1}]  # retried, not read as the end
    respx.get(URL).mock(side_effect=lambda request: answer())
    with pytest.raises(ApiError) as info:
        client(RecordingLimiter()).get_page(0)
    assert "records_path 'response'" in str(info.value) and shape in str(info.value)
    assert URL in str(info.value)


def test_the_watchdog_shuts_a_read_that_blocks_past_its_deadline() -> None:
    """A read blocked on a silent connection is woken once the deadline passes (its socket shut down)."""
    import socket
    import time

    from lifestats.fetch import _Watchdog

    ours, theirs = socket.socketpair()
    with ours, theirs:
        watchdog = _Watchdog(timeout=0.2)
        watchdog.watch(ours, time.monotonic() + 0.2)
        ours.settimeout(60)  # far past the deadline: only the watchdog ends this read in time
        assert ours.recv(1) == b""  # shut down, not timed out


@respx.mock
def test_a_redirect_is_not_followed_and_names_where_it_leads() -> None:
    route = respx.get(url__startswith=URL).mock(
        return_value=httpx.Response(302, headers={"Location": "https://elsewhere.test/v2/events?api_key=k3y"})
    )
    with pytest.raises(ApiError) as info:
        client(RecordingLimiter()).get_page(0)
    message = str(info.value)
    assert route.call_count == 1  # not retried: the same request gets the same redirect
    assert "HTTP 302" in message and "https://elsewhere.test/v2/events" in message and "k3y" not in message
    assert not info.value.resumable


@respx.mock
@pytest.mark.parametrize("record_keys", [None, ["item"]])  # parsed whole, and decoded into records
def test_a_body_that_starts_with_a_byte_order_mark_is_read(record_keys: list[str] | None) -> None:
    body = b'\xef\xbb\xbf{"meta": {"next_offset": 12}, "response": [{"id": 10, "item": "caf\xc3\xa9"}, {"id": 11}]}'
    respx.get(URL).mock(return_value=httpx.Response(200, content=body, headers={"content-type": "application/json"}))
    settings = load_settings(None, "test", environ={}, overrides={"api": {"url": URL}, "crawl": {"retries": 0}})
    got = ApiClient(settings.api, settings.crawl, RecordingLimiter(), record_keys=record_keys).get_page(10)
    assert [record.get("item") for record in got.records] == ["café", None] and got.next_offset == 12


@respx.mock
@pytest.mark.parametrize("record_keys", [None, ["item"]])
def test_a_lone_surrogate_escape_is_read_as_the_replacement_character(record_keys: list[str] | None) -> None:
    """Half of an emoji (``"\\ud83d"``, as JavaScript's JSON.stringify writes a string cut in two) is JSON
    that orjson refuses: one such record used to stop the crawl on its page ("not JSON", exit 3)."""
    items = rb'{"id": 10, "item": "a\ud83dz"}, {"id": 11, "item": "\ud83d\ude00"}, {"id": 12, "item": "\udc00"}'
    body = b'{"meta": {"next_offset": 13}, "response": [' + items + b"]}"
    respx.get(URL).mock(return_value=httpx.Response(200, content=body, headers={"content-type": "application/json"}))
    settings = load_settings(None, "test", environ={}, overrides={"api": {"url": URL}, "crawl": {"retries": 0}})
    got = ApiClient(settings.api, settings.crawl, RecordingLimiter(), record_keys=record_keys).get_page(10)
    assert [record.get("item") for record in got.records] == ["a\ufffdz", "\U0001f600", "\ufffd"]
    assert got.next_offset == 13


@respx.mock
def test_a_body_in_utf_16_is_read() -> None:
    text = '{"meta": {"next_offset": 12}, "response": [{"id": 10, "item": "café"}, {"id": 11, "item": "b"}]}'
    respx.get(URL).mock(
        return_value=httpx.Response(
            200, content=text.encode("utf-16"), headers={"content-type": "application/json; charset=utf-16"}
        )
    )
    settings = load_settings(None, "test", environ={}, overrides={"api": {"url": URL}, "crawl": {"retries": 0}})
    got = ApiClient(settings.api, settings.crawl, RecordingLimiter(), record_keys=["item"]).get_page(10)
    assert [record.get("item") for record in got.records] == ["café", "b"]


@respx.mock
@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"response": [{"id": 1, "item": NaN}]}', "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "more than 1,024 levels deep"),
    ],
)
def test_what_no_json_parser_should_read_stays_a_fault(body: bytes, said: str) -> None:
    respx.get(URL).mock(return_value=httpx.Response(200, content=body, headers={"content-type": "application/json"}))
    with pytest.raises(ApiError, match=said):
        client(RecordingLimiter(), records_path="response").get_page(0)


@respx.mock
def test_a_304_is_not_called_a_redirect() -> None:
    respx.get(url__startswith=URL).mock(return_value=httpx.Response(304))
    with pytest.raises(ApiError) as info:
        client(RecordingLimiter()).get_page(0)
    message = str(info.value)
    assert "HTTP 304 (not modified)" in message and "redirect" not in message
    assert not info.value.resumable


def test_a_connection_failure_names_its_cause() -> None:
    """It said only "connection failed (ConnectError)": a refused port and an unknown host read the same."""
    with socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler) as closed:
        port = closed.server_address[1]
    settings = load_settings(
        None, "test", environ={}, overrides={"api": {"url": f"http://127.0.0.1:{port}/events"}, "crawl": {"retries": 0}}
    )
    with pytest.raises(ApiError, match=r"connection failed \(ConnectError: .*(refused|Errno 111)"):
        ApiClient(settings.api, settings.crawl, RecordingLimiter()).get_page(0)


@respx.mock
@pytest.mark.parametrize("record_keys", [None, ["item"]])
def test_a_body_nested_deeper_than_the_parsers_read_fails_at_once_saying_so(record_keys: list[str] | None) -> None:
    """A record with a field nested 1,100 lists deep is valid JSON that no parser here reads: it was retried
    as "not JSON" (9 tries, then exit 3 blaming the API, and a resume would meet it again)."""
    deep = b"[" * 1_100 + b"]" * 1_100
    body = b'{"meta": {"next_offset": 12}, "response": [{"id": 10, "item": "a", "extra": ' + deep + b"}]}"
    respx.get(URL).mock(return_value=httpx.Response(200, content=body, headers={"content-type": "application/json"}))
    limiter = RecordingLimiter()
    settings = load_settings(None, "test", environ={}, overrides={"api": {"url": URL}, "crawl": {"retries": 3}})
    with pytest.raises(ApiError, match="more than 1,024 levels deep") as raised:
        ApiClient(settings.api, settings.crawl, limiter, record_keys=record_keys).get_page(10)
    assert limiter.acquired == 1  # not retried
    assert raised.value.resumable is False


def test_a_worker_out_of_file_descriptors_is_not_an_api_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that cannot open a socket (EMFILE) was reported as "the API failed ... after 3 attempts",
    exit 3, though the API was fine (audit of changes): it is the machine's limit, named, exit 1, not
    retried."""
    import http.client

    attempts: list[int] = []

    def out_of_descriptors(self: http.client.HTTPConnection) -> None:
        attempts.append(1)
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(http.client.HTTPConnection, "connect", out_of_descriptors)
    settings = load_settings(None, "test", environ={}, overrides={"api": {"url": "http://127.0.0.1:9/events"}})
    with pytest.raises(LifestatsError) as info:
        ApiClient(settings.api, settings.crawl, RecordingLimiter()).get_page(0)
    assert not isinstance(info.value, ApiError) and info.value.exit_code == 1
    assert "ran out of file descriptors" in str(info.value) and "ulimit -n, now" in str(info.value)
    assert attempts == [1]  # not retried
