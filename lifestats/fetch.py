"""The HTTP side: one page per call, under the shared rate limit, with retries.

:class:`ApiClient` owns an ``httpx.Client`` (keep-alive pooling, optional HTTP/2, verified TLS) and turns
every way a request can fail into either a retry (5xx, 429, resets, timeouts, a body that is not the
expected JSON, a ``next_offset`` that does not move forward) or, past the retries, an
:class:`~lifestats.errors.ApiError` that names the URL and the offset. The bearer token never appears in
a message.
"""

from __future__ import annotations

import email.utils
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from .config import ApiConfig, CrawlConfig
from .errors import ApiError, TransientApiError
from .limiter import RateLimiter

USER_AGENT = "lifestats/0.1 (+usage statistics batch job)"


@dataclass(frozen=True)
class Page:
    offset: int
    records: list[Any]
    next_offset: int | None


@dataclass
class RequestCounts:
    requests: int = 0
    retries: int = 0


def dig(document: Any, path: str) -> Any:
    """``dig(doc, "meta.next_offset")``; None when any step is missing."""
    for part in path.split("."):
        if not isinstance(document, dict):
            return None
        document = document.get(part)
    return document


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _certificate_refused(exc: BaseException) -> bool:
    return any(isinstance(e, ssl.SSLCertVerificationError) for e in _chain(exc))


def _root(exc: BaseException) -> str:
    for e in _chain(exc):
        if isinstance(e, ssl.SSLCertVerificationError):
            return e.verify_message or str(e)
    return str(exc)


class ApiClient:
    """Fetches pages of the configured API."""

    def __init__(
        self,
        api: ApiConfig,
        crawl: CrawlConfig,
        limiter: RateLimiter,
        *,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api = api
        self.crawl = crawl
        self.limiter = limiter
        self.counts = RequestCounts()
        self._url = httpx.URL(api.url)  # its own query parameters are kept
        self._backoff = wait_random_exponential(multiplier=crawl.backoff, max=crawl.backoff_max)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(api.timeout, connect=api.connect_timeout),
            verify=self._verify(api),
            http2=api.http2,
            transport=transport,
            follow_redirects=False,
        )

    @staticmethod
    def _verify(api: ApiConfig) -> ssl.SSLContext | bool:
        if api.ca_bundle is None:
            return True
        context = ssl.create_default_context()
        context.load_verify_locations(cafile=api.ca_bundle)
        return context

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_page(self, offset: int) -> Page:
        """The page at ``offset``, retried with exponential backoff and full jitter."""
        retrying = Retrying(
            retry=retry_if_exception_type(TransientApiError),
            stop=stop_after_attempt(self.crawl.retries + 1) | stop_after_delay(self.crawl.retry_max_seconds),
            wait=self._wait,
            before_sleep=self._count_retry,
            reraise=True,
        )
        try:
            return retrying(self._get_once, offset)
        except TransientApiError as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise ApiError(
                f"the API failed at {self.api.url} offset {offset} after {attempts} attempts: {exc}"
            ) from None

    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome else None
        if isinstance(error, TransientApiError) and error.retry_after is not None:
            return 0.0  # the limiter pauses every worker for the Retry-After
        return self._backoff(state)

    def _count_retry(self, state: RetryCallState) -> None:
        self.counts.retries += 1

    def _get_once(self, offset: int) -> Page:
        url = self._url.copy_merge_params({self.api.offset_param: offset, self.api.limit_param: self.api.page_size})
        self.limiter.acquire()
        self.counts.requests += 1
        try:
            with self._http.stream("GET", url) as response:
                body = self._read_capped(response)
        except httpx.TimeoutException as exc:
            raise TransientApiError(f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            if _certificate_refused(exc):
                raise ApiError(
                    f"the TLS certificate of {self.api.url} was not trusted ({_root(exc)}); "
                    "set api.ca_bundle to a PEM file of the authority that signed it"
                ) from None
            raise TransientApiError(f"connection failed ({type(exc).__name__})") from None
        return self._parse(response, body, offset)

    def _read_capped(self, response: httpx.Response) -> bytes:
        cap = self.api.max_response_bytes
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise TransientApiError(f"response of {declared} bytes is over the {cap}-byte cap")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > cap:
                raise TransientApiError(f"response is over the {cap}-byte cap")
            chunks.append(chunk)
        return b"".join(chunks)

    def _parse(self, response: httpx.Response, body: bytes, offset: int) -> Page:
        status = response.status_code
        if status == 429:
            wait = retry_after_seconds(response.headers.get("retry-after"))
            wait = 1.0 if wait is None else wait
            self.limiter.pause(wait)
            raise TransientApiError(f"HTTP 429 (retry after {wait:.2f}s)", retry_after=wait)
        if status >= 500 or status in (408, 425):
            raise TransientApiError(f"HTTP {status}")
        if status != 200:
            raise ApiError(f"the API answered HTTP {status} at {self.api.url} offset {offset}", status=status)
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            kind = response.headers.get("content-type", "unknown type").split(";")[0]
            message = f"HTTP 200 with a body that is not JSON ({kind}, {len(body)} bytes)"
            raise TransientApiError(message) from None
        records = dig(document, self.api.records_path)
        if records is None:
            records = []
        if not isinstance(records, list):
            raise TransientApiError(f"'{self.api.records_path}' is not a list")
        next_offset = dig(document, self.api.next_offset_path)
        if next_offset is not None:
            if isinstance(next_offset, bool) or not isinstance(next_offset, int):
                path = self.api.next_offset_path
                raise TransientApiError(f"'{path}' is not an integer: {next_offset!r:.40}")
            if next_offset <= offset:
                raise TransientApiError(f"next_offset {next_offset} does not move forward from offset {offset}")
        return Page(offset=offset, records=records, next_offset=next_offset)
