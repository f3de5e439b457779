"""Faults: a flaky API, an API that stays down, untrusted TLS, and a token that never leaks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme

from mocks.dataset import DatasetSpec, generate, ground_truth
from mocks.faults import KINDS, FaultSpec
from mocks.server import MockServer

from .conftest import AS_OF, job_settings, run, run_main, statistics

DATA = generate(DatasetSpec(seed=17, records=12_000))
TOKEN = "tok-5ecret-Zq81-never-print-me"


class Switchable:
    """A page source that answers with an error (the mock turns it into a 500) while ``broken``."""

    def __init__(self, inner: Any, broken_from: int) -> None:
        self.inner = inner
        self.broken_from = broken_from
        self.broken = True

    def page(self, offset: int, limit: int) -> tuple[list[dict], int | None]:
        if self.broken and offset >= self.broken_from:
            raise RuntimeError("storage offline")
        return self.inner.page(offset, limit)


def test_chaos_every_fault_at_once_still_counts_exactly(state_dir: Path) -> None:
    faults = FaultSpec(seed=5, rate=0.35, kinds=frozenset(KINDS), max_per_offset=2, retry_after=0.05, slow_seconds=1.0)
    with MockServer(DATA, faults=faults) as server:
        settings = job_settings(
            server.url,
            api={"page_size": 150, "timeout": 0.3},
            crawl={"slices": 12, "workers": 3, "retries": 6},
        )
        outcome = run(settings, state_dir)
        log = server.log
    injected = {entry.fault for entry in log if entry.fault}
    assert {"500", "502", "503", "504", "429", "429-date", "reset", "slow", "truncated", "html", "stuck"} <= {
        kind for label in injected for kind in label.split("+")
    }
    assert "duplicates" in {kind for label in injected for kind in label.split("+")}
    assert outcome.exit_code == 0
    report = outcome.report
    faulted = sum(1 for entry in log if entry.fault)
    print(
        f"\nchaos: {len(log)} requests, {faulted} faulted, {report['run']['retries']} retries, "
        f"{report['records']['duplicates']} duplicate records, kinds {sorted(injected)}"
    )
    expected = ground_truth(DATA, as_of=AS_OF)
    assert report["windows"] == expected["windows"]
    assert report["series"] == expected["series"]
    duplicates = report["records"]["duplicates"]
    assert duplicates > 0
    assert report["records"] == {
        **expected["records"],
        "fetched": expected["records"]["fetched"] + duplicates,
        "duplicates": duplicates,
    }
    assert report["run"]["retries"] > 0
    assert report["run"]["requests"] == len(log)


def test_api_down_exits_3_with_checkpoint_then_resumes_exactly(state_dir: Path) -> None:
    source = Switchable(DATA, broken_from=int(DATA.ids[7000]))
    with MockServer(source) as server:
        settings = job_settings(
            server.url,
            api={"page_size": 200, "first_id": DATA.first_id, "last_id": DATA.end_id},
            crawl={"slices": 8, "workers": 2, "retries": 2},
        )
        failed = run(settings, state_dir)
        assert failed.exit_code == 3
        assert failed.report["partial"] is True
        assert server.url in failed.message and "offset" in failed.message and "HTTP 500" in failed.message
        assert "run the same command to resume" in failed.message
        first_requests = len(server.log)
        # The partial report counts every request the API saw, the failing page's attempts and the other
        # worker's unflushed pages included (one more for a worker stopped between its turn and its send).
        assert first_requests <= failed.report["run"]["requests"] <= first_requests + 2
        source.broken = False
        resumed = run(settings, state_dir)
        second_requests = len(server.log) - first_requests
        clean = run(settings, state_dir.parent / "clean")
    assert clean.exit_code == 0 and clean.report["run"]["resumed"] is False
    assert second_requests < clean.report["run"]["requests"]  # finished slices were not crawled again
    assert resumed.exit_code == 0
    assert resumed.report["run"]["resumed"] is True
    assert statistics(resumed.report) == ground_truth(DATA, as_of=AS_OF)
    assert resumed.report["records"]["fetched"] == len(DATA)


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


def test_untrusted_certificate_is_refused_and_a_ca_bundle_is_honoured(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(bundle))
    with MockServer(DATA, ssl_context=context) as server:
        assert server.url.startswith("https://127.0.0.1:")
        refused = run(job_settings(server.url), tmp_path / "a")
        assert refused.exit_code == 3
        assert "TLS certificate" in refused.message and "not trusted" in refused.message
        refused_requests = len(server.log)
        trusted = run(job_settings(server.url, api={"ca_bundle": str(bundle)}), tmp_path / "b")
    assert refused_requests == 0  # the handshake failed before any request was made
    assert trusted.exit_code == 0
    assert statistics(trusted.report) == ground_truth(DATA, as_of=AS_OF)


CONFIG = """
test:
  api: {{url: {url}, page_size: 200, first_id: {first}, last_id: {last}}}
  fields: {{id: id, item: item, category: category, visitor: visitor, timestamp: timestamp}}
  crawl: {{slices: 4, workers: 1, rate_limit: 5000, retries: 2, backoff: 0.01}}
"""


def test_token_is_sent_but_never_appears_in_any_output_of_a_failing_run(tmp_path: Path) -> None:
    # One worker takes the slices in order: the first three are counted, the last one fails.
    source = Switchable(DATA, broken_from=int(DATA.ids[11_000]))
    with MockServer(source, token=TOKEN) as server:
        (tmp_path / "config.yml").write_text(CONFIG.format(url=server.url, first=DATA.first_id, last=DATA.end_id))
        result = run_main(
            "--env",
            "test",
            "--no-progress",
            "--report-json",
            "r.json",
            "--as-of",
            AS_OF.isoformat(),
            cwd=tmp_path,
            env={"LIFESTATS_API_TOKEN": TOKEN},
        )
        statuses = {entry.status for entry in server.log}
    assert result.returncode == 3, result.stderr
    assert statuses == {200, 500}  # the token was sent and accepted, then the API failed
    outputs = [result.stdout, result.stderr]
    outputs += [p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file()]
    assert len(outputs) >= 4  # stdout, stderr, the report, the checkpoint (and rejects)
    assert all(TOKEN not in text for text in outputs)
    assert all(TOKEN[4:20] not in text for text in outputs)


def test_wrong_token_fails_without_echoing_it(tmp_path: Path) -> None:
    with MockServer(DATA, token=TOKEN) as server:
        outcome = run(
            job_settings(server.url, api={"first_id": 0, "last_id": 10**12}), tmp_path, token="wrong-" + TOKEN
        )
    assert outcome.exit_code == 3
    assert "HTTP 401" in outcome.message
    assert TOKEN not in outcome.message
