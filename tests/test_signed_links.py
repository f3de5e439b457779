"""Next URLs that carry secrets: the API's own are requested as given, the user's are never stored.

A real HTTP server on 127.0.0.1 pages its records with next URLs that hold a page token and an HMAC
signature of its own (checked on every request: a changed or masked one gets 403), and that echo the
user's ``api_key`` from ``api.url`` and, in one variant, the bearer token. The job must fetch every
page (its counts equal the records the server holds, counted here with a Counter) and leave neither
the key nor the token in the state dir or the report.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
import pytest

from lifestats.config import load_settings

from .conftest import run
from .json_api import JsonHandler, serving

API_KEY = "user-KEY-5a1t-never-store"
BEARER = "bearer-TOKEN-77q-never-store"
BARE = "b4reT0KEN-never-store"  # a credential written into api.url without a name (?TOKEN)
SERVER_SECRET = b"the server's own signing key"
PAGES, PER_PAGE = 7, 10
RECORDS = [
    {"id": i, "item": f"item-{i % 5}" if i % 3 else i % 4, "visitor": f"v{i % 11}", "ts": 1_760_000_000 + i}
    for i in range(PAGES * PER_PAGE)
]


def _signature(page: int, page_token: str) -> str:
    return hmac.new(SERVER_SECRET, f"{page}:{page_token}".encode(), hashlib.sha256).hexdigest()


class _Api(JsonHandler):
    style = "next_url"
    echo_bearer = False
    bare = ""  # "piece": api.url and every next URL carry BARE without a name; "named": the next URLs as token=;
    # "segment": the next URLs as a path segment of its own (/events/BARE?page=...)
    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        raw = urlsplit(self.path).query
        query = parse_qs(raw)
        if query.get("api_key") != [API_KEY] or self.headers.get("Authorization") != f"Bearer {BEARER}":
            return self.send_json(401, {"error": "credentials"})
        page = int(query.get("page", ["0"])[0])
        if self.bare == "segment" and page:
            if urlsplit(self.path).path != f"/events/{BARE}":  # byte for byte as the API gave it
                return self.send_json(401, {"error": "credentials"})
        elif self.bare and not {BARE, f"{BARE}=", f"token={BARE}"} & set(raw.split("&")):
            return self.send_json(401, {"error": "credentials"})
        if page:  # a later page: the API's own token and signature must come back unchanged
            page_token = query.get("page_token", [""])[0]
            if page_token != f"pt{page * 7919}" or query.get("sig") != [_signature(page, page_token)]:
                return self.send_json(403, {"error": "bad signature"})
            if self.echo_bearer and query.get("access_token") != [BEARER]:
                return self.send_json(403, {"error": "bad access token"})
        records = RECORDS[page * PER_PAGE : (page + 1) * PER_PAGE]
        following = None
        if page + 1 < PAGES:
            page_token = f"pt{(page + 1) * 7919}"
            following = (
                f"/events{'/' + BARE if self.bare == 'segment' else ''}?page={page + 1}&page_token={page_token}"
                f"&sig={_signature(page + 1, page_token)}&api_key={API_KEY}"
            )
            if self.echo_bearer:
                following += f"&access_token={BEARER}"
            if self.bare in ("piece", "named"):
                following += f"&{BARE}" if self.bare == "piece" else f"&token={BARE}"
        if self.style == "link_header":
            links = {"Link": f'<{following}>; rel="next"'} if following else {}
            return self.send_json(200, records, links)
        return self.send_json(200, {"results": records, "next": following})


@pytest.fixture(
    params=[
        ("next_url", False, ""),
        ("next_url", True, ""),
        ("link_header", False, ""),
        ("link_header", True, ""),
        ("next_url", False, "piece"),
        ("link_header", True, "piece"),
        ("next_url", False, "named"),
        ("next_url", False, "segment"),
        ("link_header", True, "segment"),
    ]
)
def api(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, list[str]]]:
    style, echo_bearer, bare = request.param
    seen: list[str] = []
    handler = type("Api", (_Api,), {"style": style, "echo_bearer": echo_bearer, "bare": bare, "seen": seen})
    with serving(handler) as base:
        yield style, f"{base}/events?{BARE + '&' if bare else ''}api_key={API_KEY}", seen


def test_signed_next_urls_are_followed_and_the_users_secrets_are_not_stored(
    api: tuple[str, str, list[str]], state_dir: Path
) -> None:
    style, url, seen = api
    section: dict[str, Any] = {"url": url, "paginator": style, "page_size": PER_PAGE}
    section |= {"records_path": "results", "next_url_path": "next"} if style == "next_url" else {"records_path": ""}
    settings = load_settings(
        None,
        "test",
        environ={},
        overrides={
            "api": section,
            "fields": {"item": "item", "visitor": "visitor", "timestamp": "ts"},
            "crawl": {"flush_every": 1},  # a position stored after every page: each next URL as it is kept
        },
    )
    outcome = run(settings, state_dir, token=BEARER)

    assert outcome.exit_code == 0, outcome.message
    assert len(seen) == PAGES  # every page once: no 401 or 403, so no retry
    report = outcome.report
    assert report["records"]["counted"] == len(RECORDS)
    truth = collections.Counter(record["item"] for record in RECORDS)
    got = {row["id"]: row["visits"] for row in report["windows"]["all"]["top_items"]}
    assert got == dict(truth)
    assert report["windows"]["all"]["distinct_visitors"] == len({record["visitor"] for record in RECORDS})
    stored = b"".join(path.read_bytes() for path in state_dir.rglob("*") if path.is_file())
    for secret in (API_KEY, BEARER, BARE):
        assert secret.encode() not in stored
        assert secret.encode() not in orjson.dumps(report)
        assert secret not in (outcome.message or "")


def test_a_stored_next_url_keeps_the_apis_own_parameters_and_masks_only_the_users(tmp_path: Path) -> None:
    from lifestats.paginate import make_paginator

    settings = load_settings(
        None,
        "test",
        environ={},
        overrides={
            "api": {
                "url": f"https://robot:pa55@api.test/events?api_key={API_KEY}&kind=visit",
                "paginator": "next_url",
                "records_path": "results",
                "next_url_path": "next",
            }
        },
    )
    paginator = make_paginator(settings.api)
    paginator.keep_secret(BEARER)
    given = (
        f"https://robot:pa55@api.test/events?kind=visit&token=server-tok%2Fen&sig=abc%3D%3D&api_key={API_KEY}"
        f"&key={API_KEY}&access_token={BEARER}&cursor=9"
    )
    stored = paginator.credentials.mask(given)
    assert API_KEY not in stored and BEARER not in stored and "pa55" not in stored
    assert "token=server-tok%2Fen" in stored and "sig=abc%3D%3D" in stored and "cursor=9" in stored
    assert str(paginator.request({"url": stored})) == given  # requested byte for byte as the API gave it
    assert "server-tok" not in paginator.describe({"url": stored})  # but shown without any secret


class _Elsewhere(JsonHandler):
    """A second origin (another port of 127.0.0.1) holding the last page: it logs the Authorization it got."""

    authorizations: list[str | None]

    def do_GET(self) -> None:
        self.authorizations.append(self.headers.get("Authorization"))
        self.send_json(200, {"results": RECORDS[PER_PAGE:], "next": None})


class _Origin(JsonHandler):
    elsewhere: str
    authorizations: list[str | None]

    def do_GET(self) -> None:
        self.authorizations.append(self.headers.get("Authorization"))
        self.send_json(200, {"results": RECORDS[:PER_PAGE], "next": f"{self.elsewhere}/export?part=2"})


def test_the_bearer_token_goes_to_the_apis_origin_only(state_dir: Path) -> None:
    """A next link to another host (a CDN, a signed storage URL) is requested without the user's token."""
    there: list[str | None] = []
    here: list[str | None] = []
    with serving(type("Elsewhere", (_Elsewhere,), {"authorizations": there})) as elsewhere:
        origin = type("Origin", (_Origin,), {"elsewhere": elsewhere, "authorizations": here})
        with serving(origin) as base:
            section = {"url": f"{base}/events", "paginator": "next_url", "records_path": "results"}
            section |= {"next_url_path": "next", "page_size": PER_PAGE}
            settings = load_settings(None, "test", environ={}, overrides={"api": section})
            outcome = run(settings, state_dir, token=BEARER)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["records"]["counted"] == len(RECORDS)
    assert here == [f"Bearer {BEARER}"] and there == [None]


def test_a_value_without_a_name_echoed_in_a_path_parameter_or_under_a_name_is_masked_and_put_back() -> None:
    """Masked only where the API echoed it as a value without a name, api.url's ``;TOKEN`` (or ``?TOKEN``)
    came back in clear in the checkpoint when the next URL held it as a path parameter or as ``token=``."""
    from lifestats.redact import Credentials

    for api_url, given in (
        (f"https://api.test/events?api_key={API_KEY}", f"https://api.test/v1;key={API_KEY}/events?page=3"),
        (f"https://api.test/events?{BARE}", f"https://api.test/events?{BARE.replace('-', '%2D')}&page=3"),
        (f"https://api.test/v1;{BARE}/events", f"https://api.test/v1;{BARE}/events?page=3&sig=s1"),
        (f"https://api.test/events?{BARE}", f"https://api.test/events?page=3&token={BARE}&sig=s1"),
        (f"https://api.test/events?{BARE}", f"https://api.test/events?{BARE}&page=3"),
    ):
        credentials = Credentials(api_url)
        stored = credentials.mask(given)
        assert BARE not in stored and BARE.replace("-", "%2D") not in stored and API_KEY not in stored
        assert "page=3" in stored
        assert unquote(credentials.unmask(stored)) == unquote(given)  # the same request


def test_a_credential_in_a_next_url_s_fragment_is_masked_whole() -> None:
    """A next URL whose fragment held api.url's value without a name, a secret parameter's value, the
    password of its userinfo or the token, in any spelling, was stored in clear in the checkpoint. The
    fragment is never sent: it stays masked, and the request is the same."""
    from urllib.parse import urlsplit

    from lifestats.redact import Credentials

    token, password = "bearer-secret-77", "pa+ss%21word"
    for api_url, given in (
        (f"https://api.test/events?{BARE}", f"https://api.test/events?page=3#from={BARE}"),
        (f"https://api.test/events?api_key={API_KEY}", f"https://api.test/events?page=3#k{API_KEY}"),
        ("https://api.test/events", f"https://api.test/events?page=3#t={token}"),
        (f"https://user:{password}@api.test/events", "https://api.test/events?page=3#p=pa+ss!word"),
        (f"https://user:{password}@api.test/events", "https://api.test/events?page=3#p=pa%2Bss%21word"),
    ):
        credentials = Credentials(api_url, token)
        stored = credentials.mask(given)
        assert urlsplit(stored).fragment == "***", (given, stored)
        back, sent = urlsplit(credentials.unmask(stored)), urlsplit(given)
        assert (back.path, back.query) == (sent.path, sent.query)  # the same request
    credentials = Credentials(f"https://api.test/events?{BARE}")
    assert credentials.mask("https://api.test/events?page=3#top") == "https://api.test/events?page=3#top"


def test_a_credential_echoed_as_a_whole_path_segment_is_masked_and_put_back_byte_for_byte() -> None:
    """A next URL that held a credential as a path segment of its own (``/events/TOKEN/page/3``) was stored
    in clear. Now masked when spelled exactly as the user wrote it, and put back exactly so, in a URL of the
    API's own host only (audit Q: a decoded comparison missed a literal '+' and changed the request's
    spelling; a segment that looked like a mask could be filled in for another host)."""
    from lifestats.redact import Credentials

    token, password, plus = "bearer-secret-77", "pa+ss%21word", "tok+9x"
    cases = [
        (f"https://api.test/events?{BARE}", f"https://api.test/events/{BARE}/page/3?x=1"),
        (f"https://api.test/events?{plus}", f"https://api.test/s/{plus}/p/2"),
        (f"https://api.test/events?api_key={API_KEY}", f"https://api.test/v1/{API_KEY};p=1/events?page=3"),
        ("https://api.test/events", f"https://api.test/{token}/events?page=3"),
        (f"https://user:{password}@api.test/events", f"https://api.test/{password}/events"),
    ]
    for api_url, given in cases:
        credentials = Credentials(api_url, token)
        stored = credentials.mask(given)
        for secret in (BARE, plus, API_KEY, token, password):
            assert secret not in stored, (given, stored)
        assert credentials.unmask(stored) == given  # byte for byte
    credentials = Credentials(f"https://api.test/events?{BARE}")
    # Spelled otherwise, it is kept (it could not be put back as the API spelled it); other segments too.
    other = f"https://api.test/events/{BARE.replace('-', '%2D')}/x"
    assert credentials.mask(other) == other
    # In a URL of another origin (host, port or scheme), a segment is neither masked nor filled in: the
    # credential goes back into the paths of the API's own origin only (audit U).
    for elsewhere in ("https://elsewhere.test", "https://api.test:8443", "http://api.test", "https://localhost"):
        assert credentials.unmask(f"{elsewhere}/***(!0)/x") == f"{elsewhere}/***(!0)/x"
        assert credentials.mask(f"{elsewhere}/{BARE}/x") == f"{elsewhere}/{BARE}/x"
    assert credentials.unmask("https://api.test/***(!0)/x") == f"https://api.test/{BARE}/x"
    assert credentials.unmask("https://api.test:443/***(!0)/x") == f"https://api.test:443/{BARE}/x"


@pytest.mark.parametrize("status", [500, 401, 404])
def test_a_credential_echoed_as_a_path_segment_is_not_in_the_failure_message(state_dir: Path, status: int) -> None:
    """The exit-3 message named the failing request unmasked, with the credential the API had echoed as a
    path segment in clear (audit U)."""

    class Failing(JsonHandler):
        def do_GET(self) -> None:
            if urlsplit(self.path).path == f"/events/{BARE}":
                return self.send_json(status, {"error": "down"})
            records = RECORDS[:PER_PAGE]
            self.send_json(200, {"results": records, "next": f"/events/{BARE}?page=1"})

    with serving(Failing) as base:
        section = {"url": f"{base}/events?{BARE}", "paginator": "next_url", "page_size": PER_PAGE}
        section |= {"records_path": "results", "next_url_path": "next"}
        overrides = {"api": section, "fields": {"item": "item"}, "crawl": {"retries": 0}}
        outcome = run(load_settings(None, "test", environ={}, overrides=overrides), state_dir, token=BEARER)
    assert outcome.exit_code == 3
    assert "/events/" in (outcome.message or "") and BARE not in (outcome.message or "")
