"""How fast and how big the mock API is: startup time, pages per second at page size 1,000 over one
keep-alive loopback connection (the client parses each page with orjson), the server process's CPU
microseconds per record served (what the mock costs next to a client's own per-record cost), its peak
RSS after pages at the start, middle and end of the id range, and the ground truth's time and peak RSS.

    python -m bench.mock_server --records 1000000 10000000 100000000 [--pages 300] [--truth 10000000]
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import orjson

ROOT = Path(__file__).resolve().parent.parent


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a live process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss(pid: int) -> int:
    """VmHWM of a live process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def serve(records: int, pages: int, limit: int) -> dict[str, float]:
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "mocks.server", "--records", str(records), "--watch-stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        url = urlsplit(process.stdout.readline().decode().strip())
        startup = time.perf_counter() - started
        connection = http.client.HTTPConnection(url.hostname, url.port)

        def get(offset: int) -> dict:
            connection.request("GET", f"{url.path}?offset={offset}&limit={limit}")
            return orjson.loads(connection.getresponse().read())

        first = get(0)["response"][0]["id"]
        probe = get(2**62)  # past the end: empty
        assert probe["response"] == []
        # the end of the id range: search for the last page
        lo, hi = first, 2**40 + first
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if get(mid)["response"] else (lo, mid)
        for offset in (first, (first + lo) // 2, lo - 10_000):
            get(offset)
        offset, served, t0 = first + (lo - first) // 3, 0, time.perf_counter()
        cpu0 = _cpu_seconds(process.pid)
        for _ in range(pages):  # a crawl from a third of the way in
            document = get(offset)
            served += len(document["response"])
            offset = document["meta"]["next_offset"] or first
        elapsed = time.perf_counter() - t0
        server_cpu = _cpu_seconds(process.pid) - cpu0
        connection.close()
        return {
            "records": records,
            "startup_s": round(startup, 2),
            "pages_per_s": round(pages / elapsed, 1),
            "records_per_s": round(served / elapsed),
            "server_cpu_us_per_record": round(server_cpu / served * 1e6, 2),  # the mock's own cost
            "peak_rss_mb": round(_peak_rss(process.pid) / 2**20, 1),
        }
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.terminate()
        process.wait(timeout=10)


_TRUTH = """
import resource, sys, time
from datetime import datetime
from mocks.dataset import DatasetSpec, LazyDataset, ground_truth
t0 = time.perf_counter()
ds = LazyDataset(DatasetSpec(records=int(sys.argv[1])))
truth = ground_truth(ds, as_of=datetime.fromisoformat(ds.spec.end), bucket="hour")
print(round(time.perf_counter() - t0, 1), round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      truth["records"]["counted"])
"""


def truth(records: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _TRUTH, str(records)], cwd=ROOT, capture_output=True, check=True)
    seconds, rss, counted = out.stdout.decode().split()
    return {"records": records, "truth_s": float(seconds), "truth_peak_rss_mb": float(rss), "counted": int(counted)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mock_server")
    parser.add_argument("--records", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--truth", type=int, nargs="*", default=[])
    args = parser.parse_args()
    for n in args.records:
        print(serve(n, args.pages, args.limit), flush=True)
    for n in args.truth:
        print(truth(n), flush=True)


if __name__ == "__main__":
    main()
