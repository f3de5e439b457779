"""The proxies of the environment (HTTP_PROXY and the like), as httpx and curl read them, carry the
crawl: a forward proxy on 127.0.0.1 is the only way to the API's host here."""

from __future__ import annotations

import json
import os
import socketserver
import threading
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from lifestats.fetch import environment_proxies
from mocks.source import ListSource, page_body

from .conftest import run_main
from .json_api import JsonHandler, serving

SOURCE = ListSource({"id": i, "item": f"i{i % 7}"} for i in range(1, 401))


def _send_page(handler: JsonHandler, query_text: str) -> None:
    """The page of SOURCE that the query's offset and limit name."""
    query = parse_qs(query_text)
    body = page_body(SOURCE, int(query["offset"][0]), int(query["limit"][0]))
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _crawl(tmp_path: Path, config: str, proxies: dict[str, str]) -> Any:
    """The job under ``config`` with only ``proxies`` of the environment's proxy variables; its report."""
    (tmp_path / "config.yml").write_text(config)
    env = {name: "" for name in os.environ if name.lower() in ("http_proxy", "https_proxy", "all_proxy")}
    done = run_main(
        "--config", str(tmp_path / "config.yml"), "--env", "test", "--no-progress", "--report-json", "r.json",
        cwd=tmp_path, env=env | proxies,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads((tmp_path / "r.json").read_text())


class _ForwardProxy(JsonHandler):
    """Answers requests in absolute form for http://api.test/ from SOURCE; refuses anything else."""

    seen: ClassVar[list[str]] = []
    lock = threading.Lock()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        with self.lock:
            self.seen.append(self.path)
        if parts.scheme != "http" or parts.hostname != "api.test":
            self.send_json(502, {"error": f"not a proxy request: {self.path}"})
            return
        _send_page(self, parts.query)


def test_the_crawl_goes_through_the_proxy_the_environment_names(tmp_path: Path) -> None:
    """It used to go straight to the API's host (and fail to find it), whatever HTTP_PROXY said, unless
    api.http2 was on."""
    config = (
        "test:\n  api: {url: 'http://api.test/events', page_size: 50}\n  fields: {item: item}\n"
        "  crawl: {slices: 3, workers: 2, rate_limit: 1000}\n"
    )
    _ForwardProxy.seen = []
    with serving(_ForwardProxy) as proxy:
        report = _crawl(tmp_path, config, {"HTTP_PROXY": proxy, "NO_PROXY": ""})
    assert report["records"]["counted"] == len(SOURCE)
    top = {row["id"]: row["visits"] for row in report["windows"]["all"]["top_items"]}
    assert top == {f"i{k}": sum(1 for i in range(1, 401) if i % 7 == k) for k in range(7)}
    assert _ForwardProxy.seen and all(path.startswith("http://api.test/events?") for path in _ForwardProxy.seen)


def test_a_proxy_that_refuses_is_named_not_the_api(tmp_path: Path) -> None:
    """A dead proxy used to read as the API refusing: the message named only the API's URL."""
    config = tmp_path / "config.yml"
    config.write_text(
        "test:\n  api: {url: 'http://api.test/events', page_size: 50}\n  fields: {item: item}\n"
        "  crawl: {retries: 0, backoff: 0}\n"
    )
    with socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler) as closed:
        dead = f"http://user:pw-never-shown@127.0.0.1:{closed.server_address[1]}"
    env = {name: "" for name in os.environ if name.lower() in ("http_proxy", "https_proxy", "all_proxy")}
    env |= {"HTTP_PROXY": dead, "NO_PROXY": ""}
    done = run_main("--config", str(config), "--env", "test", "--no-progress", cwd=tmp_path, env=env)
    assert done.returncode == 3, done.stderr
    assert f"through the proxy http://***@127.0.0.1:{dead.rsplit(':', 1)[1]}" in done.stderr
    assert "pw-never-shown" not in done.stderr + done.stdout


class _Direct(JsonHandler):
    """The API itself, on 127.0.0.1."""

    def do_GET(self) -> None:
        _send_page(self, urlsplit(self.path).query)


@pytest.mark.parametrize(
    ("no_proxy", "http2"),
    [
        ("127.0.0.0/8", "false"),
        ("10.0.0.0/8, 127.0.0.0/16", "false"),
        ("127.0.0.1/32", "false"),
        ("127.0.0.0/8", "true"),  # httpx's own transport
    ],
)
def test_an_api_at_an_address_in_a_no_proxy_network_goes_direct(tmp_path: Path, no_proxy: str, http2: str) -> None:
    """NO_PROXY=127.0.0.0/8, as curl reads it: the API at 127.0.0.1 is asked directly. httpx reads such an
    entry as the one address 127.0.0.0, and the crawl went to the (here dead) proxy: exit 3."""
    with socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler) as closed:
        dead = f"http://127.0.0.1:{closed.server_address[1]}"
    with serving(_Direct) as base:
        config = (
            f"test:\n  api: {{url: '{base}/events', page_size: 50, http2: {http2}}}\n  fields: {{item: item}}\n"
            "  crawl: {slices: 3, workers: 2, rate_limit: 1000, retries: 0, backoff: 0}\n"
        )
        report = _crawl(tmp_path, config, {"HTTP_PROXY": dead, "NO_PROXY": no_proxy, "no_proxy": no_proxy})
    assert report["records"]["counted"] == len(SOURCE)


def test_an_api_at_an_address_outside_the_no_proxy_networks_goes_through_the_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("NO_PROXY", "10.0.0.0/8,::1/128")
    outside = environment_proxies("192.168.1.5")
    assert outside["http://"] == "http://proxy.test:3128" and "all://192.168.1.5" not in outside
    assert environment_proxies("10.1.2.3")["all://10.1.2.3"] is None
    assert environment_proxies("::1")["all://[::1]"] is None
    assert "all://api.test" not in environment_proxies("api.test")
