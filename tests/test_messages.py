"""What a failed run says: resume only when resuming helps, and never a credential from the URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from lifestats.config import load_settings
from mocks.dataset import DatasetSpec, generate
from mocks.server import MockServer

from .conftest import job_settings, run
from .json_api import JsonHandler, serving
from .test_faults import Switchable

DATA = generate(DatasetSpec(seed=43, records=3_000))
SECRET = "pw-Zk81-never-show"
KEY = "key-Qx55-never-show"


@pytest.mark.parametrize("during", ["discovery", "crawl"])
def test_a_refused_token_names_the_variable_and_does_not_suggest_running_again(state_dir: Path, during: str) -> None:
    ids = {} if during == "discovery" else {"first_id": DATA.first_id, "last_id": DATA.end_id}
    with MockServer(DATA, token="the-right-one") as server:
        outcome = run(job_settings(server.url, api=ids), state_dir, token="a-wrong-one")
    message = outcome.message or ""
    print(f"\n401 during {during}: exit {outcome.exit_code}: {message}")
    assert outcome.exit_code == 3
    assert "LIFESTATS_API_TOKEN" in message
    assert "run the same command" not in message and "try again" not in message


def test_a_missing_resource_does_not_suggest_running_again(state_dir: Path) -> None:
    with MockServer(DATA) as server:
        outcome = run(job_settings(server.url.replace("/events", "/evnets")), state_dir)
    message = outcome.message or ""
    print(f"\n404: exit {outcome.exit_code}: {message}")
    assert outcome.exit_code == 3 and "HTTP 404" in message
    assert "run the same command" not in message and "api.url" in message


# How APIs name the key in their URLs (the mock ignores parameters it does not know).
KEY_NAMES = ["api_key", "api_token", "apiToken", "access_key", "client_secret", "private_token", "X-Amz-Signature"]


@pytest.mark.parametrize("name", KEY_NAMES)
def test_credentials_in_the_url_never_reach_a_message_a_report_or_the_checkpoint(state_dir: Path, name: str) -> None:
    source = Switchable(DATA, broken_from=int(DATA.ids[1_500]))
    with MockServer(source) as server:
        url = server.url.replace("http://", f"http://reader:{SECRET}@") + f"?{name}={KEY}"
        settings = job_settings(url, api={"first_id": DATA.first_id, "last_id": DATA.end_id}, crawl={"retries": 1})
        outcome = run(settings, state_dir)
    message = outcome.message or ""
    print(f"\nfailed with credentials in api.url: {message}")
    assert outcome.exit_code == 3 and "run the same command to resume" in message
    assert "***" in message
    stored = b"".join(p.read_bytes() for p in state_dir.rglob("*") if p.is_file())
    for secret in (SECRET, KEY):
        assert secret not in message
        assert secret.encode() not in orjson.dumps(outcome.report)
        assert secret.encode() not in stored


def test_a_token_and_a_password_in_the_url_are_refused_before_any_request(state_dir: Path) -> None:
    from lifestats.errors import ConfigError

    with MockServer(DATA, token="t0ken") as server:
        url = server.url.replace("http://", f"http://reader:{SECRET}@")
        with pytest.raises(ConfigError) as info:
            run(job_settings(url), state_dir, token="t0ken")
        assert server.log == []
    message = str(info.value)
    print(f"\ntoken and password: {message}")
    assert "LIFESTATS_API_TOKEN" in message and "api.url" in message
    assert SECRET not in message and "t0ken" not in message


def test_a_token_read_with_its_line_break_is_used_and_one_no_header_can_carry_is_refused(tmp_path: Path) -> None:
    """``LIFESTATS_API_TOKEN="$(cat token.txt)"`` keeps a Windows file's CR: the token is the text around
    it. A token with a character inside that no header can carry is refused before any request, without
    a traceback and without showing the token."""
    from .conftest import run_main

    with MockServer(DATA, token="SECRETTOK42") as server:
        done = run_main(
            "--url",
            server.url,
            "--no-progress",
            "--report-json",
            "r.json",
            cwd=tmp_path,
            env={"LIFESTATS_API_TOKEN": "SECRETTOK42\r\n"},
        )
        assert done.returncode == 0, done.stderr
        assert orjson.loads((tmp_path / "r.json").read_bytes())["records"]["counted"] > 0
        requests = len(server.log)
        refused = run_main(
            "--url", server.url, "--no-progress", "--fresh", cwd=tmp_path, env={"LIFESTATS_API_TOKEN": "SECRET\tTOK42"}
        )
        assert len(server.log) == requests  # not one request
    assert refused.returncode == 2, refused.stderr
    assert "LIFESTATS_API_TOKEN" in refused.stderr and "Traceback" not in refused.stderr
    assert "SECRET" not in refused.stderr + refused.stdout


@pytest.mark.parametrize(
    "where",
    [
        "http://reader:{secret}@[::1/events?api_key={key}",  # a URL urllib cannot split (a missing "]")
        "http://127.0.0.1:9/events#api_key={key}",  # a fragment (never sent, but shown)
        "http://127.0.0.1:9/events#{key}",  # a bare fragment: no parameter name says it is a secret
        "http://127.0.0.1:9/events;api_key={key}",  # a path parameter
        "http://127.0.0.1:9/events;{key}",  # a path parameter without a name
        "http://127.0.0.1:9/events?{key}&pretty",  # a query value without a name
        "http://reader:{secret}@[::1/events;{key}",  # both, in a URL urllib cannot split
    ],
)
def test_credentials_written_anywhere_in_the_url_stay_out_of_messages(state_dir: Path, where: str) -> None:
    """The api_key of a URL that does not parse was printed in the exit-2 message, and one in a fragment or
    a path parameter in the exit-3 message (SPEC audit); the password was masked."""
    from lifestats.errors import LifestatsError

    url = where.format(secret=SECRET, key=KEY)
    try:
        outcome = run(job_settings(url, crawl={"retries": 0}), state_dir)
        message = outcome.message or ""
        assert outcome.exit_code == 3, message
    except LifestatsError as exc:  # the URL that does not parse: refused before any request
        message = str(exc)
    print(f"\n{where}: {message}")
    assert "***" in message
    assert SECRET not in message and KEY not in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://h/v1;tok3n99/events?format=json&pretty", "http://h/v1;***/events?format=json&pretty"),
        ("http://h/events?include_deleted&a7Fq0zLw", "http://h/events?include_deleted&***"),
        ("http://h/events?page=2&since=2024-01-01", "http://h/events?page=2&since=2024-01-01"),
        ("http://h/events?mytoken&page=2", "http://h/events?***&page=2"),  # a word that names a secret
        ("http://h/events?S3CRETTOKEN999=&api_key=k", "http://h/events?***&api_key=***"),
    ],
)
def test_values_without_a_name_are_masked_when_they_may_be_credentials(url: str, shown: str) -> None:
    """No name says whether ``;TOKEN`` or ``?TOKEN`` carries a secret: one with a digit (or longer than a
    word) is masked, a flag such as ``pretty`` is kept, named values are judged by their names."""
    from lifestats.redact import redact_url

    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # masking a masked URL changes nothing


def test_a_checkpoint_that_kept_a_value_without_a_name_still_resumes(state_dir: Path) -> None:
    """Earlier versions stored ``?TOKEN`` in the checkpoint's copy of ``api.url`` as written; the same
    settings now store it masked, and that checkpoint still resumes (another URL is still refused)."""
    from lifestats.config import fingerprint
    from lifestats.errors import CheckpointMismatch
    from lifestats.merge import Checkpoint

    url = f"http://127.0.0.1:9/events?{KEY}"
    now = fingerprint(job_settings(url))
    assert KEY not in str(now)
    checkpoint = Checkpoint(state_dir)
    assert checkpoint.claim({**now, "url": url}) is False  # as an earlier version stored it
    assert checkpoint.claim(now) is True
    with pytest.raises(CheckpointMismatch, match=r"api\.url"):
        checkpoint.claim(fingerprint(job_settings("http://127.0.0.1:9/other?" + KEY)))


def test_values_without_a_name_tell_two_checkpoints_apart_and_the_same_url_resumes(state_dir: Path) -> None:
    """Masked in the checkpoint, ``?v1`` and ``?v2`` compared equal, so a run on another data set resumed
    the first one's counts; and a URL with a named secret beside a masked value was refused on every resume
    of itself (its masked form masked again differed). A digest of those values tells them apart."""
    from lifestats.config import fingerprint
    from lifestats.errors import CheckpointMismatch
    from lifestats.merge import Checkpoint

    def claim(folder: str, url: str) -> bool:
        return Checkpoint(state_dir / folder).claim(fingerprint(job_settings(url)))

    base = "http://127.0.0.1:9/events"
    for folder, first, other in (
        ("plain", f"{base}?v1", f"{base}?v2"),
        ("named", f"{base}?api_key=k&v1", f"{base}?api_key=k&v3"),
    ):
        assert claim(folder, first) is False
        assert claim(folder, first) is True  # the same URL resumes
        assert claim(folder, first.replace("api_key=k", "api_key=rotated")) is True  # a changed secret too
        with pytest.raises(CheckpointMismatch, match=r"api\.url \(its values written without a name"):
            claim(folder, other)
    # A checkpoint an earlier version wrote, its URL's values as written: told apart from another one too.
    # Spelled otherwise, the same request: the same job.
    assert claim("plain", f"{base}?v1") is True and claim("spelled", f"{base}?a%201") is False
    assert claim("spelled", f"{base}?a+1") is True
    written = {k: v for k, v in fingerprint(job_settings(f"{base}?v1")).items() if k != "url_values"}
    assert Checkpoint(state_dir / "earlier").claim({**written, "url": f"{base}?v1"}) is False
    assert claim("earlier", f"{base}?v1") is True
    with pytest.raises(CheckpointMismatch, match=r"api\.url \(its values written without a name"):
        claim("earlier", f"{base}?v2")


class _EchoesTheToken(JsonHandler):
    """Pages of ids 1-20, then a body that quotes the request's Authorization header where the message quotes
    the body: as a top-level key (no records list) or as the next offset (no integer)."""

    where = "keys"

    def do_GET(self) -> None:
        offset = int(parse_qs(urlsplit(self.path).query)["offset"][0])
        echo = self.headers.get("Authorization", "")
        if offset <= 10:
            rows = [{"id": i, "item": i % 3} for i in range(max(offset, 1), 11)]
            self.send_json(200, {"response": rows, "meta": {"next_offset": 11}})
        elif type(self).where == "keys":
            self.send_json(200, {echo: 1, "detail": echo})
        else:
            self.send_json(200, {"response": [{"id": 11, "item": 0}], "meta": {"next_offset": echo}})


@pytest.mark.parametrize("token", ["sekr3t-T0ken-xyzzy-42", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyZWFkZXIifQ.c2lnbmF0dXJl"])
@pytest.mark.parametrize("where", ["keys", "next_offset"])
def test_a_token_the_api_echoes_in_its_body_is_masked_in_the_message_that_quotes_the_body(
    state_dir: Path, where: str, token: str
) -> None:
    """The message named the body's top-level keys, or the next offset that was no integer, as the API wrote
    them: "... the body's top-level keys: Bearer <token>, detail" (audit X); a long token, cut with the value
    it was in, showed its first 30 characters."""
    _EchoesTheToken.where = where
    with serving(_EchoesTheToken) as base:
        overrides = {
            "api": {"url": f"{base}/events", "page_size": 10, "first_id": 1, "last_id": 100},
            "fields": {"id": "id", "item": "item"},
            "crawl": {"slices": 1, "workers": 1, "retries": 1},
        }
        outcome = run(load_settings(None, "test", environ={}, overrides=overrides), state_dir, token=token)
    message = outcome.message or ""
    print(f"\n{where}: {message}")
    assert outcome.exit_code == 3
    assert "Bearer ***" in message and token[:12] not in message
    stored = b"".join(p.read_bytes() for p in state_dir.rglob("*") if p.is_file())
    assert token.encode() not in orjson.dumps(outcome.report) and token.encode() not in stored


def test_a_credential_too_short_to_be_a_secret_does_not_garble_messages() -> None:
    """A password "1" masked every "1" of a message ("http://***27.0.0.***"), and "?sort_key=id" every "id"
    ("set api.last_***"; audit Z): values shorter than six characters are left to the URL's own masking."""
    from lifestats.redact import Credentials

    message = "the API failed at http://127.0.0.1:8000/events?offset=10 after 1 attempts; set api.last_id"
    assert Credentials("http://reader:1@127.0.0.1:8000/events?sort_key=id").scrub(message) == message
    echoed = "the body's top-level keys: Bearer a-long-token, s3cr3t-pass"
    scrubbed = Credentials("http://reader:s3cr3t-pass@h/e", "a-long-token").scrub(echoed)
    assert scrubbed == "the body's top-level keys: Bearer ***, ***"
