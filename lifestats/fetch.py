"""The HTTP side: one page per call, under the shared rate limit, with retries.

:class:`ApiClient` owns an ``httpx.Client`` (keep-alive pooling, optional HTTP/2, verified TLS) and the
run's :class:`~lifestats.paginate.Paginator`. It is transport, retries and waiting only: the paginator
builds each request and reads each answer. Every way a request can fail becomes either a retry (5xx,
429, resets, timeouts, a body that is not JSON, an answer the paginator calls a fault) or, past the
retries, an :class:`~lifestats.errors.ApiError` that names the (redacted) URL and the position.

``api.timeout`` bounds a whole request, from sending it to the last byte: a server that trickles its
answer is cut when the deadline passes. A ``Retry-After`` longer than ``crawl.max_retry_after`` is cut
to that maximum (and said so). Neither the bearer token nor credentials in ``api.url`` appear in a message.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import ipaddress
import itertools
import json
import logging
import resource
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.request import getproxies

import httpx
import orjson
from httpx._utils import URLPattern, get_environment_proxies  # httpx's own reading of HTTP_PROXY, NO_PROXY
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from ._transport import DEADLINE, LEFT, TURN, PlainTransport
from .config import TOKEN_VARIABLE, ApiConfig, CrawlConfig
from .decode import NotDecoded, PageDecoder
from .errors import ApiError, LifestatsError, TransientApiError
from .limiter import RateLimiter
from .paginate import Page, Paginator, dig, make_paginator
from .redact import redact_text, redact_url

__all__ = ["USER_AGENT", "ApiClient", "Page", "RequestCounts", "dig", "retry_after_seconds"]

USER_AGENT = "lifestats/0.1 (+usage statistics batch job)"
log = logging.getLogger(__name__)


@dataclass
class RequestCounts:
    requests: int = 0
    retries: int = 0


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None
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


def _one_line(text: str, urls: list[str], limit: int = 160) -> str:
    """An exception's text for a message: one line, the secrets of ``urls`` masked wherever they appear in
    it (before it is cut, so that no URL is cut in two unmasked), cut at ``limit`` characters."""
    line = redact_text(" ".join(text.split()), urls) or "no detail"
    return line[:limit]


class _Watchdog:
    """One thread per client that shuts a connection down when its request's deadline passes while the body
    is being read (see :class:`_Deadline`).

    Every deadline is ``api.timeout`` after its request started, so the thread never needs waking when a
    request is watched: idle, it checks again after ``timeout`` seconds, before any new deadline can pass.
    One long-lived thread instead of a timer thread per request, which cost about 0.1 ms of CPU each.
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = max(timeout, 0.001)
        self._cond = threading.Condition()
        self._watched: dict[int, tuple[float, socket.socket]] = {}
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, deadline: float) -> int:
        with self._cond:
            token = next(self._tokens)
            self._watched[token] = (deadline, sock)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="request-deadlines", daemon=True)
                self._thread.start()
            elif deadline < min(d for d, _ in self._watched.values()):  # pragma: no cover - deadlines only grow
                self._cond.notify()
        return token

    def release(self, token: int) -> None:
        """The request ended: its connection is not shut down after this returns."""
        with self._cond:
            self._watched.pop(token, None)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for token, (deadline, sock) in list(self._watched.items()):
                    if deadline <= now:
                        del self._watched[token]
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                earliest = min((d for d, _ in self._watched.values()), default=now + self._timeout)
                self._cond.wait(max(earliest - now, 0.0))


class _Deadline:
    """Shuts the connection down when the request's deadline passes while its body is being read.

    httpx bounds each read, not the whole answer: a server that sends a byte now and then, or goes
    silent for a while after some bytes, would hold the request for far longer than ``api.timeout``.
    The body loop checks the deadline after every chunk; the client's :class:`_Watchdog` also ends a read
    that blocks past it (shutting the socket down wakes a blocked ``recv``). Where the transport has no
    socket (tests' mocked transports) only the per-chunk check applies.
    """

    def __init__(self, response: httpx.Response, deadline: float, watchdog: _Watchdog) -> None:
        stream = response.extensions.get("network_stream")
        found = stream.get_extra_info("socket") if stream is not None else None
        self._socket = found if isinstance(found, socket.socket) else None
        self._deadline = deadline
        self._watchdog = watchdog
        self._token: int | None = None

    def __enter__(self) -> _Deadline:
        if self._socket is not None:
            self._token = self._watchdog.watch(self._socket, self._deadline)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            self._watchdog.release(self._token)


_GZIP_MAGIC: Final = b"\x1f\x8b"


def _gunzip(raw: Iterator[bytes], cap: int) -> Iterator[bytes]:
    """A gzip body decoded, every member of it (RFC 1952: a file is one or more members, each decoded in
    turn), in pieces of at most ``cap + 1`` bytes so that the size cap holds however much a piece expands.
    Zero bytes between members are skipped, and whatever follows a member that is no gzip member is
    ignored (as httpx's decoder, and gzip readers, do)."""
    decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
    ignoring = False
    for data in raw:
        while data and not ignoring:
            try:
                piece = decompressor.decompress(data, cap + 1)
            except zlib.error as exc:
                raise httpx.DecodingError(str(exc)) from None
            if piece:
                yield piece
            if not decompressor.eof:
                data = decompressor.unconsumed_tail
                continue
            # What follows the member so far (the decompressor keeps gathering it while it has ended).
            data = decompressor.unused_data.lstrip(b"\0")
            if len(data) < len(_GZIP_MAGIC):
                break  # padding, or not yet enough to tell a next member: the next bytes tell
            if not data.startswith(_GZIP_MAGIC):
                ignoring = True  # stray bytes after the last member
                break
            decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
    rest = decompressor.flush()
    if rest:
        yield rest


class _TooLarge(Exception):
    """An answer over ``api.max_response_bytes`` (its size as the message)."""


def environment_proxies(host: str) -> dict[str, str | None]:
    """The environment's proxies as httpx reads them (URL pattern -> proxy, None: none), and ``NO_PROXY``'s
    networks as curl reads them: an API at an IP address inside an entry such as ``10.0.0.0/8`` goes
    direct (httpx reads that entry as the one address it starts with, and sent such an API through the
    proxy)."""
    proxies = get_environment_proxies()
    if not proxies:
        return proxies
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return proxies  # a host name: NO_PROXY's names are httpx's to match
    for entry in getproxies().get("no", "").split(","):
        entry = entry.strip()
        if "/" not in entry or "://" in entry:
            continue
        try:
            network = ipaddress.ip_network(entry.strip("[]"), strict=False)
        except ValueError:
            continue
        if address.version == network.version and address in network:
            proxies[f"all://[{host}]" if address.version == 6 else f"all://{host}"] = None
    return proxies


class ApiClient:
    """Fetches pages of the configured API, in the configured pagination style."""

    def __init__(
        self,
        api: ApiConfig,
        crawl: CrawlConfig,
        limiter: RateLimiter,
        *,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        id_field: str = "id",
        paginator: Paginator | None = None,
        record_keys: Sequence[str] | None = None,
    ) -> None:
        self.api = api
        self.crawl = crawl
        self.limiter = limiter
        self.counts = RequestCounts()
        self._counting = threading.Lock()  # discovery probes from several threads at once
        self._watchdog = _Watchdog(api.timeout)
        self.paginator = paginator if paginator is not None else make_paginator(api, id_field)
        if token:
            self.paginator.keep_secret(token)
        # With ``record_keys`` (the keys the caller reads of a record, beside the id), bodies are decoded
        # straight into records of those fields; a body of another shape is parsed whole. Without, every
        # body is parsed whole and every record is a dict of all its fields.
        self._decoder = (
            None
            if record_keys is None
            else PageDecoder.for_paths(
                api.records_path, self.paginator.body_paths(), [self.paginator.id_field, *record_keys]
            )
        )
        self._shown_url = redact_url(api.url)
        self._has_token = bool(token)
        self._backoff = wait_random_exponential(multiplier=crawl.backoff, max=crawl.backoff_max)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        # The token goes to the API's origin only: a next link to another host (a CDN, a signed storage
        # URL) is requested without it, as a browser or httpx does on a redirect to another origin.
        self._authorization = {"Authorization": f"Bearer {token}"} if token else {}
        self._origin = _origin(httpx.URL(api.url))
        verify = self._verify(api)
        mounts: dict[str, httpx.BaseTransport | None] = {}
        proxies = environment_proxies(httpx.URL(api.url).host)
        # Which proxy a URL goes through, as httpx picks it (the most specific pattern first): for messages.
        self._proxies = sorted((URLPattern(pattern), proxy) for pattern, proxy in proxies.items())
        self._plain = transport is None and not api.http2  # the requests not proxied take their turn in it
        if transport is None and not api.http2:
            transport = PlainTransport(verify, watchdog=self._watchdog)  # also bounds the headers' arrival
            # httpx reads the environment's proxies (HTTP_PROXY, NO_PROXY, ...) only for a client on its own
            # transport: the same proxies, each on an httpx transport, for a client on this one.
            mounts = {
                pattern: None if proxy is None else httpx.HTTPTransport(proxy=proxy, verify=verify)
                for pattern, proxy in proxies.items()
            }
        elif transport is None:  # httpx's transport reads the proxies itself: only NO_PROXY's networks added
            mounts = {pattern: None for pattern, proxy in proxies.items() if proxy is None}
        self._http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(api.timeout, connect=min(api.connect_timeout, api.timeout)),
            verify=verify,
            http2=api.http2,
            transport=transport,
            mounts=mounts or None,
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

    def get_page(self, position: Any, end: int | None = None, *, retries: int | None = None) -> Page:
        """The page at ``position`` (a slice ending at ``end``), retried with exponential backoff and full jitter
        (``retries``: how often, instead of ``crawl.retries``)."""
        tries_left = self.crawl.retries if retries is None else retries
        retrying = Retrying(
            retry=retry_if_exception_type(TransientApiError),
            stop=stop_after_attempt(tries_left + 1) | stop_after_delay(self.crawl.retry_max_seconds),
            wait=self._wait,
            before_sleep=self._count_retry,
            reraise=True,
        )
        tries = 0

        def attempt() -> Page:
            nonlocal tries
            tries += 1
            return self._get_once(position, end, retry=tries > 1)

        try:
            return retrying(attempt)
        except TransientApiError as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            where = self._where(position, end)
            raise ApiError(f"the API failed at {where} after {attempts} attempts: {exc}", status=exc.status) from None

    def _where(self, position: Any, end: int | None) -> str:
        try:
            url = self._shown(self.paginator.request(position, end))
        except Exception:  # a position that does not build a URL: say what there is
            url = self._shown_url
        described = self.paginator.describe(position)
        return url if url in described else f"{url} ({described})"  # a URL position is described by its URL

    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome else None
        if isinstance(error, TransientApiError) and error.retry_after is not None:
            return 0.0  # the limiter pauses every worker for the Retry-After
        return self._backoff(state)

    def _count_retry(self, state: RetryCallState) -> None:
        with self._counting:
            self.counts.retries += 1

    def _get_once(self, position: Any, end: int | None, *, retry: bool = False) -> Page:
        url = self.paginator.request(position, end)
        turn = _Turn(self, retry)
        # On the plain transport the turn is taken once the connection is ready, so that a new connection's
        # handshake does not delay the request past its turn (the next one would reach the server first);
        # through a proxy, or over HTTP/2, before the request.
        extensions: dict[str, Any] = {LEFT: self.limiter.left}
        if self._plain and self._proxy_of(url) is None:
            extensions[TURN] = turn
        else:
            extensions[DEADLINE] = turn()
        try:
            headers = self._authorization if _origin(url) == self._origin else None
            try:
                with self._http.stream("GET", url, headers=headers, extensions=extensions) as response:
                    deadline = turn.taken()  # a transport that did not take it (a test's double) takes it now
                    with _Deadline(response, deadline, self._watchdog):
                        body = self._read_capped(response, deadline)
            finally:
                turn.taken()  # nor a failure before the connection was ready: every attempt takes one turn
        except _TooLarge as exc:  # the same page is as large every time: no retry, no resume of the same command
            raise ApiError(
                f"the API answered {self._where(position, end)} with a body {exc}, over api.max_response_bytes "
                f"({self.api.max_response_bytes:,}): lower api.page_size or raise api.max_response_bytes, then "
                "run the command again (progress is checkpointed)",
                resumable=False,
            ) from None
        except httpx.TimeoutException as exc:
            raise TransientApiError(f"timed out ({type(exc).__name__})") from None
        except httpx.DecodingError as exc:  # a Content-Encoding the body does not follow (not gzip after all)
            raise TransientApiError(f"the answer's body could not be decoded ({_root(exc)})") from None
        except httpx.TransportError as exc:
            if time.monotonic() >= turn.deadline:  # the deadline closed the connection mid-answer
                raise TransientApiError(
                    f"timed out: no whole answer within api.timeout ({self.api.timeout:g} s)"
                ) from None
            if _certificate_refused(exc):
                raise ApiError(
                    f"the TLS certificate of {self._shown_url} was not trusted ({_root(exc)}); "
                    "set api.ca_bundle to a PEM file of the authority that signed it",
                    resumable=False,
                ) from None
            if any(isinstance(e, OSError) and e.errno in (errno.EMFILE, errno.ENFILE) for e in _chain(exc)):
                # Not the API's failure: this process may open no more files (a retry, or a resume under the
                # same limit, meets the same wall).
                limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
                raise LifestatsError(
                    "a worker ran out of file descriptors and could not connect to the API: raise the limit "
                    f"(ulimit -n, now {'unlimited' if limit == resource.RLIM_INFINITY else limit}) or run fewer "
                    "crawl.workers; what was checkpointed stays resumable"
                ) from None
            through = self._proxy_of(url)
            via = f" through the proxy {redact_url(through)} (from the environment)" if through else ""
            detail = _one_line(_root(exc), [str(url), through or ""])
            raise TransientApiError(f"connection failed{via} ({type(exc).__name__}: {detail})") from None
        if body.startswith(_BOM):  # RFC 8259 lets a parser ignore it; orjson and msgspec do not
            body = body[len(_BOM) :]
        document, whole = self._parse(response, body, url)
        if whole:
            return self.paginator.read(position, document, response)
        try:
            return self.paginator.read(position, document, response)
        except (LifestatsError, TransientApiError) as refused:
            try:
                whole_body = orjson.loads(body)
            except orjson.JSONDecodeError:  # a number orjson cannot hold: the decoded reading's error stands
                raise refused from None
            # Read again from the whole body, so that the message names all of it.
            return self.paginator.read(position, whole_body, response)

    def _proxy_of(self, url: httpx.URL) -> str | None:
        """The proxy of the environment that a request to ``url`` goes through (None: none)."""
        return next((proxy for pattern, proxy in self._proxies if pattern.matches(url)), None)

    def _read_capped(self, response: httpx.Response, deadline: float) -> bytes:
        """The body, within the size cap and before the request's deadline (a trickle is cut)."""
        cap = self.api.max_response_bytes
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise _TooLarge(f"of {int(declared):,} bytes")
        chunks: list[bytes] = []
        size = 0
        codings = [c.strip().lower() for c in response.headers.get("content-encoding", "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        # gzip (and its old name x-gzip) read here: httpx's decoder stops after a body's first gzip member
        # (a server may send several, one per flush of its compressor) and does not know x-gzip. Layers of
        # them (``x-gzip, gzip``: a proxy compressed a compressed body) are undone one after the other.
        own = bool(codings) and set(codings) <= {"gzip", "x-gzip"} and not response.is_stream_consumed
        body: Iterator[bytes] = response.iter_raw() if own else response.iter_bytes()  # (a test double reads it)
        for _ in codings if own else ():
            body = _gunzip(body, cap)
        for chunk in body:
            size += len(chunk)
            if size > cap:
                raise _TooLarge(f"of more than {cap:,} bytes")
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise TransientApiError(
                    f"timed out: the answer took longer than api.timeout ({self.api.timeout:g} s) "
                    f"with {size} bytes received"
                )
        return b"".join(chunks)

    def _parse(self, response: httpx.Response, body: bytes, url: httpx.URL) -> tuple[Any, bool]:
        """The answer's document, and whether it is the whole body parsed (False: decoded into records)."""
        status = response.status_code
        if status == 429:
            self._pause(response, "HTTP 429")
        if status >= 500 or status in (408, 425):
            raise TransientApiError(f"HTTP {status}", status=status)
        if status != 200:
            raise self._refused(status, url, response.headers.get("location"))
        if self._decoder is not None:
            try:
                return self._decoder.decode(body), False
            except NotDecoded:
                pass
        try:
            return orjson.loads(body), True
        except orjson.JSONDecodeError:
            pass
        try:
            return _lenient_json(body), True
        except _TooDeep:
            # Valid JSON, but nested deeper than any parser here reads (orjson stops at 1,024 levels, the
            # standard library at Python's recursion limit): the same page would fail every time.
            raise ApiError(
                f"the answer at {self._shown(url)} nests values more than {_DEPTH_LIMIT:,} levels deep "
                f"({len(body):,} bytes), deeper than Lifestats' JSON parsers read: a record holds a value "
                "nested that deep, which the API would have to serve flatter",
                resumable=False,
            ) from None
        except ValueError:
            kind = response.headers.get("content-type", "unknown type").split(";")[0]
            path = self.api.records_path
            where = f"records_path '{path}'" if path else "the body (records_path '')"
            message = f"HTTP 200 without a list of records at {where}: the body is not JSON ({kind}, {len(body)} bytes)"
            raise TransientApiError(message) from None

    def _pause(self, response: httpx.Response, what: str) -> None:
        """Hold every worker back for the server's Retry-After, at most ``crawl.max_retry_after``."""
        asked = retry_after_seconds(response.headers.get("retry-after"))
        wait = 1.0 if asked is None else asked
        cap = self.crawl.max_retry_after
        note = ""
        if wait > cap:
            note = f"; the API asked for {wait:g} s, more than crawl.max_retry_after, so Lifestats waits {cap:g} s"
            log.warning("the API asked to wait %g s (Retry-After); waiting crawl.max_retry_after = %g s", wait, cap)
            wait = cap
        self.limiter.pause(wait)
        raise TransientApiError(
            f"{what} (retry after {wait:.2f}s{note})", retry_after=wait, status=response.status_code
        )

    def _shown(self, url: httpx.URL) -> str:
        """A request's URL as a message may show it: masked as the checkpoint keeps it (a credential the API
        echoed as a path segment too), then redacted."""
        return redact_url(self.paginator.credentials.mask(str(url)))

    def _refused(self, status: int, url: httpx.URL, location: str | None = None) -> ApiError:
        """A permanent answer: running again will not help until something is changed."""
        shown = self._shown(url)
        if status == 304:  # not a redirect: the request carried no condition, so this API is answering wrongly
            return ApiError(f"the API answered HTTP 304 (not modified) at {shown}", status=status, resumable=False)
        if 300 <= status < 400:
            where = ""
            if location:
                with contextlib.suppress(httpx.InvalidURL, ValueError):  # a Location that is no URL: not named
                    where = f" to {self._shown(url.join(location))}"
            reason = (
                f"the API answered HTTP {status}, a redirect{where}, at {shown}: Lifestats does not follow "
                "redirects; set api.url to where it leads"
            )
            return ApiError(reason, status=status, resumable=False)
        if status in (401, 403):
            if self._has_token:
                reason = f"the API refused the token in {TOKEN_VARIABLE} (HTTP {status} at {shown}): check the token"
            elif httpx.URL(self.api.url).userinfo:
                reason = f"the API refused the user and password in api.url (HTTP {status} at {shown}): check them"
            else:
                reason = f"the API wants a token (HTTP {status} at {shown}) and {TOKEN_VARIABLE} is not set"
        elif status == 404:
            reason = f"the API answered HTTP 404 (not found) at {shown}: check api.url"
        else:
            reason = f"the API answered HTTP {status} at {shown}"
        return ApiError(reason, status=status)


_DEPTH_LIMIT: Final = 1_024  # orjson's


class _TooDeep(ValueError):
    """A JSON body nested deeper than the parsers read."""


class _Turn:
    """A request's turn from the limiter, taken once (by the transport when the connection is ready, else
    by the client), counted as a request, and the request's deadline from then on."""

    def __init__(self, client: ApiClient, retry: bool) -> None:
        self._client = client
        self._retry = retry
        self.deadline = 0.0  # set when the turn is taken

    def __call__(self) -> float:
        """Take the turn (the transport calls this): the deadline of the whole answer."""
        if not self.deadline:
            client = self._client
            client.limiter.acquire(retry=self._retry)
            with client._counting:
                client.counts.requests += 1
            self.deadline = time.monotonic() + client.api.timeout
        return self.deadline

    def taken(self) -> float:
        """Take the turn if the transport did not (a failure before it, or a transport that is no
        :class:`PlainTransport`, such as a test's double): every attempt passes the limiter once."""
        return self()


def _lenient_json(body: bytes) -> Any:
    """A body that orjson refuses, read by the standard library's parser: JSON in UTF-16 or UTF-32 (RFC 8259
    lets a parser detect them), and strings with a lone surrogate escape (``"\\ud83d"``, half of an emoji
    that a server cut in two), which become U+FFFD as when undecodable text is read. ``NaN`` and
    ``Infinity``, which are not JSON, and bodies nested too deep stay refused (ValueError)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return _mend_surrogates(json.loads(body, parse_constant=refuse))
    except RecursionError:
        raise _TooDeep("nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ValueError(str(exc)) from None


def _mend_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: pairs are joined, a lone one becomes U+FFFD
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, list):
        return [_mend_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_mend_surrogates(key): _mend_surrogates(item) for key, item in value.items()}
    return value


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port (the scheme's default spelled out), as browsers compare origins."""
    port = url.port if url.port is not None else {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, port


_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark, which some servers put before a JSON body
