"""respx routes that serve the mock API in-process, for fast unit tests of httpx clients.

    with mock_api(ListSource(records), faults=FaultSpec(seed=3, rate=0.2)) as router:
        httpx.get("https://api.example.test/events", params={"offset": 0, "limit": 100})
        router["events"].calls  # the respx calls

Bodies, statuses and headers come from the same `MockApi` / `build_reply` as `mocks.server`, so both serve
identical pages and faults. A `reset` fault raises `httpx.ConnectError` and a `slow` one `httpx.ReadTimeout`
(no real waiting); `latency` does not exist here.
"""

from __future__ import annotations

import functools

import httpx
import respx

from mocks.api import DEFAULT_MAX_PAGE_SIZE, MockApi, RequestLog
from mocks.faults import FaultSpec
from mocks.source import PageSource
from mocks.styles import MockStyle

DEFAULT_URL = "https://api.example.test/events"
ROUTE_NAME = "events"


def mock_api(
    source: PageSource,
    url: str = DEFAULT_URL,
    *,
    token: str | None = None,
    faults: FaultSpec | None = None,
    rate_limit: float | None = None,
    offset_param: str = "offset",
    limit_param: str = "limit",
    max_page_size: int = DEFAULT_MAX_PAGE_SIZE,
    log: RequestLog | None = None,
    style: MockStyle | None = None,
) -> respx.MockRouter:
    """A respx router (use it as a context manager) serving `source` at `url` (GET, any query).

    Requests to other hosts are not mocked and fail (`assert_all_mocked`). Pass `log` to collect
    `LoggedRequest`s exactly as `MockServer.log` does.
    """
    target = httpx.URL(url)
    api = MockApi(
        source,
        path=target.path,
        token=token,
        faults=faults,
        rate_limit=rate_limit,
        offset_param=offset_param,
        limit_param=limit_param,
        max_page_size=max_page_size,
        log=log,
        style=style,
    )
    api.origin = f"{target.scheme}://{target.netloc.decode('ascii')}"
    router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
    router.route(
        method="GET",
        scheme=target.scheme,
        host=target.host,
        port=target.port or (443 if target.scheme == "https" else 80),
        path=target.path,
        name=ROUTE_NAME,
    ).mock(side_effect=functools.partial(respond, api))
    return router


def respond(api: MockApi, request: httpx.Request) -> httpx.Response:
    """The respx side effect: `api`'s answer to `request` as an httpx.Response (or a transport error)."""
    reply = api.handle(request.url.path, request.url.query.decode("ascii"), request.headers.get("authorization"))
    if reply.action == "reset":
        raise httpx.ConnectError("connection reset by peer (mock fault)", request=request)
    if reply.action == "slow":
        raise httpx.ReadTimeout("timed out waiting for the answer (mock slow fault)", request=request)
    headers = [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body))), *reply.headers]
    return httpx.Response(reply.status, headers=headers, content=reply.body)
