"""CPU per record of fetching and reading pages: httpx's own transport against Lifestats' plain one.

    python bench/transport.py [--records 200000] [--page-size 1000] [--repeats 3]

Both crawl the mock API (its own process, 127.0.0.1) page after page through ``ApiClient.get_page``
(limiter, request, body, JSON, paginator), one keep-alive connection; only the transport differs. The
bare loop (``http.client`` + ``orjson``, as in ``bench/cpu.py``) is printed beside them.
"""

from __future__ import annotations

import argparse
import time

import httpx

from bench.cpu import bare_loop, settings_for
from lifestats.fetch import ApiClient
from lifestats.limiter import SharedRateLimiter
from mocks.server import serve_in_subprocess


def crawl(url: str, page_size: int, transport: httpx.BaseTransport | None) -> float:
    """CPU microseconds per record of reading every page through an ApiClient."""
    settings = settings_for(url, page_size, {"workers": 1, "slices": 1, "rate_limit": 100_000}, "exact")
    limiter = SharedRateLimiter(100_000)
    with ApiClient(settings.api, settings.crawl, limiter, transport=transport, id_field=settings.fields.id) as client:
        position, records = client.paginator.first(), 0
        cpu0 = time.process_time()
        while position is not None:
            page = client.get_page(position)
            records += len(page.records)
            position = page.next
        return (time.process_time() - cpu0) / records * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    url, stop = serve_in_subprocess(seed=1, records=args.records, max_page_size=args.page_size)
    try:
        for _ in range(args.repeats):
            records, cpu, _ = bare_loop(url, args.page_size)
            bare = cpu / records * 1e6
            with_httpx = crawl(url, args.page_size, httpx.HTTPTransport())
            plain = crawl(url, args.page_size, None)  # the default: Lifestats' plain transport
            print(
                f"records {records:,}  page {args.page_size:,}:  bare loop {bare:.2f} us/record  "
                f"ApiClient on httpx's transport {with_httpx:.2f}  on the plain transport {plain:.2f}"
            )
    finally:
        stop()


if __name__ == "__main__":
    main()
