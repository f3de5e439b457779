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
        ("test:\n  api:\n    first_id: 10\n    last_id: 5\n", "test", "last_id (5) must be above first_id (10)"),
        ("test:\n  bots:\n    user_agents: ['(unclosed']\n", "test", "bots.user_agents"),
        ("test:\n  stats:\n    mode: approx\n", "test", "approx mode"),
        ("test:\n  nonsense: {}\n", "test", "nonsense: unknown key"),
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
