"""Configuration: environments, merge keys, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifestats.config import choose_env, fingerprint, load_settings
from lifestats.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

CONFIG = """
defaults: &defaults
  api: &api
    url: https://api.example.test/events
    page_size: 100
  crawl: &crawl
    workers: 4
    rate_limit: 100
production:
  <<: *defaults
  crawl:
    <<: *crawl
    rate_limit: 40
test:
  <<: *defaults
  api:
    <<: *api
    page_size: 7
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(CONFIG)
    return path


def test_merge_keys_share_defaults(config_file: Path) -> None:
    prod = load_settings(config_file, "production", environ={})
    assert prod.crawl.rate_limit == 40
    assert prod.crawl.workers == 4
    assert prod.api.page_size == 100
    test = load_settings(config_file, "test", environ={})
    assert test.api.page_size == 7
    assert test.api.url == "https://api.example.test/events"
    assert test.crawl.rate_limit == 100


def test_environment_variables_override_file_and_flags_override_both(config_file: Path) -> None:
    environ = {"LIFESTATS_CRAWL_RATE_LIMIT": "12.5", "LIFESTATS_API_PAGE_SIZE": "50", "LIFESTATS_API_TOKEN": "x"}
    settings = load_settings(config_file, "production", environ=environ)
    assert settings.crawl.rate_limit == 12.5
    assert settings.api.page_size == 50
    flagged = load_settings(config_file, "production", environ=environ, overrides={"crawl": {"rate_limit": 3}})
    assert flagged.crawl.rate_limit == 3


def test_env_selection_order() -> None:
    assert choose_env("prod", {"LIFESTATS_ENV": "a", "ENV": "b"}) == "prod"
    assert choose_env(None, {"LIFESTATS_ENV": "a", "ENV": "b"}) == "a"
    assert choose_env(None, {"ENV": "b"}) == "b"
    assert choose_env(None, {}) == "development"


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("test:\n  crawl:\n    workers: 0\n", "test", "crawl.workers"),
        ("test:\n  crawl:\n    wrokers: 2\n", "test", "crawl.wrokers: unknown key"),
        ("test:\n  stats:\n    timezone: Mars/Olympus\n", "test", "stats.timezone"),
        ("test:\n  stats:\n    series: fortnight\n", "test", "stats.series"),
        ("test:\n  api:\n    url: ftp://x\n", "test", "api.url"),
        (
            "test:\n  api:\n    url: embedded\n    first_id: 10\n    last_id: 5\n",
            "test",
            "last_id (5) must be above first_id (10)",
        ),
        ("test:\n  api:\n    page_size: 10\n", "test", "api.url: is not set"),  # never the mock unasked
        ("test:\n  api: {url: 'http://127.0.0.1:abc/x'}\n", "test", "api.url: is not a valid URL (Invalid port"),
        ("test:\n  api: {url: embedded}\n  crawl: {cluster: notanaddress}\n", "test", "crawl.cluster: must be 'local'"),
        ("test:\n  api: {url: embedded}\n  crawl: {cluster: 'foo://x:1'}\n", "test", "crawl.cluster: must be 'local'"),
        ("test:\n  api: {url: embedded}\n  crawl: {cluster: 'tcp://'}\n", "test", "(got 'tcp://')"),
        ("test:\n  api: {url: embedded}\n  crawl: {cluster: '127.0.0.1:99999'}\n", "test", "port above 65535"),
        ("test:\n  api: {url: 'http://127.0.0.1:99999/x'}\n", "test", "api.url: has port 99999"),
        ("test:\n  api: {url: embedded, timeout: 1e12}\n", "test", "api.timeout: Input should be less than"),
        ("test:\n  api: {url: embedded}\n  stats: {top_items: 9223372036854775808}\n", "test", "stats.top_items"),
        (
            "test:\n  api: {url: embedded}\n  crawl: {slices: 2}\n  crawl: {workers: 1}\n",
            "test",
            "'crawl' is written twice",
        ),
        ("test:\n  api: {url: embedded, url: embedded}\n", "test", "'url' is written twice"),
        ("test:\n  crawl:\n    slices: 3\n", "test", "api.url: is not set"),
        ("test:\n  api: {url: embedded}\n  bots: {ips: [10.0.0.1]}\n", "test", "bots.ips is set but fields.ip is not"),
        (
            "test:\n  api: {url: embedded}\n  fields: {ip: ip}\n  bots: {user_agents: [Bot]}\n",
            "test",
            "bots.user_agents is set but fields.user_agent is not",
        ),
        ("test:\n  bots:\n    user_agents: ['(unclosed']\n", "test", "bots.user_agents"),
        # patterns that match any text, every record a bot: an empty alternative, a pattern that may match nothing
        ("test:\n  bots:\n    user_agents: [bot, 'crawler|']\n", "test", "the pattern 'crawler|' matches every user"),
        ("test:\n  bots:\n    user_agents: ['x*']\n", "test", "the pattern 'x*' matches every user agent"),
        ("test:\n  bots:\n    user_agents: ['']\n", "test", "the pattern '' matches every user agent"),
        ("test:\n  stats:\n    mode: approx\n    hll_lg_k: 30\n", "test", "stats.hll_lg_k"),
        ("test:\n  nonsense: {}\n", "test", "unknown section 'nonsense'"),
        ("test:\n  ratelimit: 5\n", "test", "unknown section 'ratelimit'"),
        ("test: {}\n", "staging", "no environment 'staging'"),
        ("test: [unclosed\n", "test", "not valid YAML"),
        ("- a\n- b\n", "test", "must map environment names"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, text: str, env: str, expected: str) -> None:
    path = tmp_path / "config.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env, environ={})
    assert expected in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("pattern", ["^$", "(?=bot)", "bot", "^Mozilla", "(?i)spider", ".", r"\bbot\b"])
def test_patterns_that_do_not_match_everything_are_kept(pattern: str) -> None:
    overrides = {"api": {"url": "embedded"}, "fields": {"user_agent": "ua"}, "bots": {"user_agents": [pattern]}}
    assert load_settings(None, "test", environ={}, overrides=overrides).bots.user_agents == [pattern]


def test_unknown_override_variable_names_the_variable(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="LIFESTATS_CRAWL_SPEED"):
        load_settings(config_file, "production", environ={"LIFESTATS_CRAWL_SPEED": "3"})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.yml", "development", environ={})


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("test: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(path, "test", environ={})


def test_shipped_config_environments_are_valid() -> None:
    for env in ("development", "test", "lifesum", "production"):
        load_settings(REPO / "config.yml", env, environ={})


def test_fingerprint_ignores_settings_that_do_not_change_counts(config_file: Path) -> None:
    base = load_settings(config_file, "production", environ={})
    faster = load_settings(config_file, "production", environ={}, overrides={"crawl": {"workers": 9, "rate_limit": 5}})
    other_fields = load_settings(config_file, "production", environ={}, overrides={"fields": {"item": "food_id"}})
    assert fingerprint(base) == fingerprint(faster)
    assert fingerprint(base) != fingerprint(other_fields)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("test:\n  api:\n    page_size: true\n", "api.page_size: must be a number or text, not true/false"),
        ("test:\n  api:\n    timeout: yes\n", "api.timeout: must be a number"),
        ("test:\n  crawl:\n    workers: false\n", "crawl.workers: must be a number"),
        (
            "test:\n  crawl:\n    rate_limit: 1.0e-9\n",
            "crawl.rate_limit: Input should be greater than or equal to 0.01",
        ),
        ("test:\n  crawl:\n    rate_limit: .inf\n", "crawl.rate_limit"),
        ("test:\n  api:\n    timeout: .nan\n", "api.timeout"),
        ("test:\n  api:\n    last_id: 18446744073709551616\n", "api.last_id"),
        ("test:\n  api:\n    first_id: -9223372036854775809\n", "api.first_id"),
        ("test:\n  crawl:\n    stall_timeout: 0\n", "crawl.stall_timeout"),
    ],
)
def test_bad_numbers_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "config.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, "test", environ={})
    assert expected in str(info.value)


def test_switches_still_take_booleans_and_numbers_still_parse_from_variables(config_file: Path) -> None:
    environ = {"LIFESTATS_API_HTTP2": "true", "LIFESTATS_API_PAGE_SIZE": "50", "LIFESTATS_CRAWL_RATE_LIMIT": "0.01"}
    settings = load_settings(config_file, "production", environ=environ)
    assert (settings.api.http2, settings.api.page_size, settings.crawl.rate_limit) == (True, 50, 0.01)
    ids = load_settings(config_file, "production", environ={"LIFESTATS_API_FIRST_ID": str(-(2**63))})
    assert ids.api.first_id == -(2**63)
    with pytest.raises(ConfigError, match=r"LIFESTATS_API_PAGE_SIZE|api\.page_size"):
        load_settings(config_file, "production", environ={"LIFESTATS_API_PAGE_SIZE": "true"})


def test_a_name_from_a_variable_is_the_text_as_written_and_a_bad_value_names_its_variable(config_file: Path) -> None:
    """Variables were read as YAML, so a parameter or record key that YAML reads as a boolean or a number
    ("on", "no", "123") was refused with "must be a number or text, not true/false", and a variable has no
    quotes to say otherwise; a bad value's message named the file but not the variable (SPEC audit)."""
    environ = {
        "LIFESTATS_API_LIMIT_PARAM": "on",
        "LIFESTATS_FIELDS_CATEGORY": "no",
        "LIFESTATS_FIELDS_ITEM": "123",
        "LIFESTATS_FIELDS_VISITOR": "2024",
        "LIFESTATS_FIELDS_TIMESTAMP": "null",  # an optional key set to null: unset, as in the file
    }
    settings = load_settings(config_file, "production", environ=environ)
    assert (settings.api.limit_param, settings.fields.category) == ("on", "no")
    assert (settings.fields.item, settings.fields.visitor, settings.fields.timestamp) == ("123", "2024", None)
    with pytest.raises(ConfigError) as info:
        load_settings(config_file, "production", environ={"LIFESTATS_CRAWL_WORKERS": "many"})
    assert "crawl.workers (from the environment variable LIFESTATS_CRAWL_WORKERS)" in str(info.value)
    with pytest.raises(ConfigError) as info:  # a flag given after it: the flag's value is the one refused
        load_settings(
            config_file, "production", environ={"LIFESTATS_CRAWL_WORKERS": "2"}, overrides={"crawl": {"workers": 0}}
        )
    assert "crawl.workers" in str(info.value) and "LIFESTATS_CRAWL_WORKERS" not in str(info.value)


def test_an_empty_variable_is_an_empty_string_where_a_string_is_required_and_unset_where_optional(
    config_file: Path,
) -> None:
    environ = {"LIFESTATS_API_RECORDS_PATH": "", "LIFESTATS_API_FIRST_ID": ""}
    settings = load_settings(config_file, "production", environ=environ)
    assert settings.api.records_path == ""  # the body itself is the list of records
    assert settings.api.first_id is None  # discovered


@pytest.mark.parametrize("name", ["LIFESTATS_CRAWLL_WORKERS", "LIFESTATS_STAT_TOP_ITEMS", "LIFESTATS_TOKEN"])
def test_an_unknown_section_variable_is_refused_like_an_unknown_key(config_file: Path, name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(config_file, "production", environ={name: "3"})
    assert name in str(info.value) and info.value.exit_code == 2


def test_the_variables_that_are_not_keys_still_work(config_file: Path) -> None:
    environ = {"LIFESTATS_API_TOKEN": "t", "LIFESTATS_ENV": "production", "LIFESTATS_API_URL": "https://b.test/e"}
    assert load_settings(config_file, "production", environ=environ).api.url == "https://b.test/e"


def test_credentials_in_the_url_stay_out_of_the_fingerprint_and_of_messages(config_file: Path) -> None:
    secret = "s3cret-Pw-91"
    url = f"https://user:{secret}@api.example.test/events?api_key={secret}x"
    settings = load_settings(config_file, "production", environ={}, overrides={"api": {"url": url}})
    stored = fingerprint(settings)
    assert secret not in str(stored)
    other = load_settings(
        config_file, "production", environ={}, overrides={"api": {"url": url.replace(secret, "rotated")}}
    )
    assert fingerprint(other) == stored  # a rotated password still resumes
    for bad in (f"ftp://u:{secret}@x.test/", f"http//u:{secret}@x.test/events", f"u:{secret}@x.test/events"):
        with pytest.raises(ConfigError) as info:
            load_settings(config_file, "production", environ={}, overrides={"api": {"url": bad}})
        assert secret not in str(info.value) and "api.url" in str(info.value)
    # An error about the section as a whole (two keys that disagree) does not show the section, URL and all.
    with pytest.raises(ConfigError) as info:
        load_settings(
            config_file, "production", environ={}, overrides={"api": {"url": url, "first_id": 9, "last_id": 1}}
        )
    assert secret not in str(info.value) and "last_id" in str(info.value)


def test_a_ca_bundle_that_cannot_be_loaded_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "not.pem").write_text("hello")
    for bundle in (tmp_path / "missing.pem", tmp_path / "not.pem"):
        with pytest.raises(ConfigError, match=r"api\.ca_bundle"):
            load_settings(None, "test", environ={}, overrides={"api": {"ca_bundle": str(bundle)}})


def test_a_config_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_bytes(b'test:\n  api: {url: embedded}\n  bots: {ips: ["caf\xe9"]}\n')
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 49\)"):
        load_settings(path, "test", environ={})
