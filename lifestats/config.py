"""Load config.yml, pick the environment, apply environment-variable and flag overrides, validate.

Precedence, lowest first: the file's environment (sharing defaults through YAML anchors and merge
keys), then ``LIFESTATS_<SECTION>_<KEY>`` variables, then command-line flags. Every problem is a
:class:`ConfigError` that names the key, raised before any request is made.
"""

from __future__ import annotations

import os
import re
import ssl
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .bots import canonical_ips
from .errors import ConfigError
from .redact import canonical_url, redact_url, url_values_digest

DEFAULT_ENV = "development"
TOKEN_VARIABLE = "LIFESTATS_API_TOKEN"
ENV_PREFIX = "LIFESTATS_"
# Variables with the prefix that are not overrides of a config key.
RESERVED_VARIABLES = {TOKEN_VARIABLE, "LIFESTATS_ENV"}
# Ids are signed 64-bit integers; an exclusive end may be one past the largest.
MIN_ID = -(2**63)
MAX_END = 2**63
MIN_RATE_LIMIT = 0.01  # requests per second: below it a job of any size would never end

Bucket = Literal["minute", "hour", "day", "week", "month", "year"]


def _takes_bool(annotation: Any) -> bool:
    """Whether a field of this type accepts a boolean (``bool``, ``bool | None``, ``Any``...)."""
    if annotation is bool or annotation is Any:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(_takes_bool(arg) for arg in typing.get_args(annotation))
    return False


class _Section(BaseModel):
    # No infinities or NaN: a rate, a timeout or a size must be a real number.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_stray_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        """``page_size: true`` is a mistake, not 1: a boolean only where the key is a yes/no switch."""
        name = info.field_name
        if isinstance(value, bool) and name is not None and not _takes_bool(cls.model_fields[name].annotation):
            raise ValueError("must be a number or text, not true/false")
        return value


Paginator = Literal["offset_id", "keyset", "offset", "page_number", "cursor", "next_url", "link_header"]
# The styles that read their next reference from the body, and the key that names where.
_NEXT_PATH_KEYS = {"offset_id": "next_offset_path", "cursor": "cursor_path", "next_url": "next_url_path"}


_SCHEDULER: Final = re.compile(r"((tcp|tls|ws|wss|ucx)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):[0-9]{1,5}/?")
# Upper bounds of counts and durations: far above any real use, and below what the libraries underneath
# take (a 64-bit column, a timer's range), so that a typo ends before the first request, not after.
_MANY: Final = 1_000_000
_DAY: Final = 86_400.0
_WEEK: Final = 7 * _DAY


class ApiConfig(_Section):
    # No default: an environment that names no API must not crawl the bundled mock unnoticed.
    url: str = Field("", validate_default=True)
    page_size: int = Field(100, gt=0, le=_MANY)
    first_id: int | None = Field(None, ge=MIN_ID, lt=MAX_END, description="smallest id (signed 64-bit)")
    last_id: int | None = Field(None, gt=MIN_ID, le=MAX_END, description="one past the largest id")
    timeout: float = Field(
        10.0, gt=0, le=_DAY, description="seconds for a whole request, from sending it to the last byte"
    )
    connect_timeout: float = Field(5.0, gt=0, le=_DAY)
    # How the API pages (SPEC section 1); every name below is the API's own.
    paginator: Paginator = "offset_id"
    records_path: str = Field("response", description="dotted path to the list of records; '' = the body itself")
    offset_param: str = "offset"
    limit_param: str = "limit"
    next_offset_path: str = "meta.next_offset"
    id_param: str | None = Field(None, description="keyset: the lower-bound parameter, e.g. id__gte or since_id")
    id_param_inclusive: bool = True
    upper_param: str | None = Field(None, description="keyset: an exclusive upper-bound parameter, e.g. id__lt")
    page_param: str = "page"
    first_page: int = Field(1, ge=0)
    cursor_param: str = "cursor"
    cursor_path: str | None = None
    next_url_path: str | None = None
    total_path: str | None = Field(None, description="dotted path to the number of records in the body")
    total_pages_path: str | None = Field(None, description="page_number: dotted path to the number of pages")
    total_header: str | None = Field(None, description="a header with the number of records, e.g. X-Total-Count")
    ca_bundle: str | None = Field(None, description="PEM file of extra trusted certificate authorities")
    max_response_bytes: int = Field(64 * 1024 * 1024, gt=0, le=2**40)
    http2: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value == "":
            raise ValueError("is not set: give the API's http(s):// URL (or 'embedded' for the bundled mock API)")
        if value != "embedded" and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be 'embedded' or an http(s):// URL")
        if value != "embedded":
            try:
                url = httpx.URL(value)
            except httpx.InvalidURL as exc:  # its reason names the part, never the credentials
                raise ValueError(f"is not a valid URL ({exc})") from None
            if url.port is not None and not 0 < url.port < 65536:
                raise ValueError(f"has port {url.port}, outside 1 to 65535")
        return value

    @field_validator("offset_param", "limit_param", "page_param", "cursor_param")
    @classmethod
    def _param(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a query parameter")
        return value

    @field_validator("next_offset_path", "cursor_path", "next_url_path", "total_path", "total_pages_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(not part for part in value.split("."))):
            raise ValueError("must be a dotted path of keys, e.g. meta.next")
        return value

    @field_validator("records_path")
    @classmethod
    def _records_path(cls, value: str) -> str:
        if value and any(not part for part in value.split(".")):
            raise ValueError("must be a dotted path of keys (e.g. data.items), or '' for a body that is the list")
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle(cls, value: str | None) -> str | None:
        """A bundle that cannot be loaded is a config mistake, found before any request."""
        if value is not None:
            try:
                ssl.create_default_context().load_verify_locations(cafile=value)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot load {value} as PEM certificates ({exc})") from None
        return value

    @model_validator(mode="after")
    def _ids(self) -> ApiConfig:
        if self.first_id is not None and self.last_id is not None and self.last_id <= self.first_id:
            raise ValueError(f"last_id ({self.last_id}) must be above first_id ({self.first_id})")
        return self

    @model_validator(mode="after")
    def _style(self) -> ApiConfig:
        """Each style's required keys, and no key that the style would silently ignore."""
        style = self.paginator
        if style == "keyset" and not self.id_param:
            raise ValueError("paginator 'keyset' needs api.id_param (the lower-bound parameter, e.g. id__gte)")
        if style == "cursor" and not self.cursor_path:
            raise ValueError("paginator 'cursor' needs api.cursor_path (where the body holds the next cursor)")
        if style == "next_url" and not self.next_url_path:
            raise ValueError("paginator 'next_url' needs api.next_url_path (where the body holds the next URL)")
        if style not in ("offset_id", "keyset") and (self.first_id is not None or self.last_id is not None):
            raise ValueError(f"api.first_id and api.last_id apply to the id styles (offset_id, keyset), not {style!r}")
        if self.upper_param is not None and style != "keyset":
            raise ValueError(f"api.upper_param applies to paginator 'keyset', not {style!r}")
        if self.total_pages_path is not None and style != "page_number":
            raise ValueError(f"api.total_pages_path applies to paginator 'page_number', not {style!r}")
        if (self.total_path is not None or self.total_header is not None) and style not in ("offset", "page_number"):
            raise ValueError(f"api.total_path and api.total_header apply to 'offset' and 'page_number', not {style!r}")
        return self

    def pagination_fingerprint(self) -> dict[str, Any]:
        """The keys that decide what a stored position means: a resume needs the same ones."""
        keys = {"paginator", "id_param", "id_param_inclusive", "upper_param", "page_param", "first_page"}
        keys |= {"cursor_param", "cursor_path", "next_url_path", "total_path", "total_pages_path", "total_header"}
        if self.paginator == "page_number":
            keys.add("page_size")  # a page number means other records at another page size
        return self.model_dump(include=keys)

    def next_path_key(self) -> str | None:
        """The config key that names where the body holds the next reference, for the styles that read one."""
        return _NEXT_PATH_KEYS.get(self.paginator)


class FieldsConfig(_Section):
    id: str = "id"
    item: str = "item"
    category: str | None = None
    visitor: str | None = None
    timestamp: str | None = None
    ip: str | None = None
    user_agent: str | None = None

    def record_keys(self) -> list[str]:
        """The record keys the job reads, in field order."""
        keys = (self.id, self.item, self.category, self.visitor, self.timestamp, self.ip, self.user_agent)
        return [key for key in keys if key is not None]


class CrawlConfig(_Section):
    slices: int = Field(100, gt=0, le=_MANY)
    workers: int = Field(4, gt=0, le=256)
    rate_limit: float = Field(100.0, ge=MIN_RATE_LIMIT, description="requests per second for the whole job")
    flush_every: int = Field(25, gt=0, le=_MANY, description="pages between two flushes of a worker")
    retries: int = Field(8, ge=0, le=_MANY, description="retries of one page before the job fails")
    retry_max_seconds: float = Field(300.0, gt=0, le=_WEEK, description="time budget for the retries of one page")
    backoff: float = Field(0.2, ge=0, le=_DAY, description="first retry waits up to this many seconds, doubling")
    backoff_max: float = Field(10.0, ge=0, le=_DAY, description="longest wait between two retries")
    keep_rejects: int = Field(1000, ge=0, le=_MANY, description="rejected records sampled to rejects.jsonl")
    max_retry_after: float = Field(
        300.0, ge=0, le=_WEEK, description="longest pause honoured from a Retry-After header"
    )
    max_rejected_share: float = Field(
        0.5, ge=0, le=1, description="above this share of rejected records the data does not look right (exit 4)"
    )
    stall_timeout: float | None = Field(
        None,
        gt=0,
        le=_WEEK,
        description="seconds with no request sent or answered before the job stops "
        "(default: max(3 x api.timeout, 60, 2 x backoff_max) plus three request intervals of rate_limit)",
    )
    cluster: str | None = Field(None, description="Dask scheduler address (tcp://host:8786), or 'local'")
    cluster_limiter: str = Field(
        "scheduler", description="where a cluster keeps its rate limit: 'scheduler' or a redis:// URL"
    )

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str | None) -> str | None:
        # Dask's own forms: tcp://host:port (the default scheme), tls://, ws://, wss://, ucx://; IPv6 in brackets.
        if value is None or value == "local":
            return value
        if _SCHEDULER.fullmatch(value):
            if int(value.rstrip("/").rpartition(":")[2]) > 65535:
                raise ValueError("has a port above 65535")
            return value
        raise ValueError("must be 'local' or a Dask scheduler address such as tcp://10.0.0.5:8786")

    @field_validator("cluster_limiter")
    @classmethod
    def _cluster_limiter(cls, value: str) -> str:
        if value != "scheduler" and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be 'scheduler' or a redis:// URL")
        return value


class StatsConfig(_Section):
    top_items: int = Field(100, ge=0, le=_MANY)
    top_categories: int = Field(10, ge=0, le=_MANY)
    mode: Literal["exact", "approx"] = "exact"
    series: Bucket = "day"
    series_max_points: int = Field(5000, ge=1, le=_MANY, description="longest series; older buckets are cut")
    timezone: str = "UTC"
    # Sketch sizes of approx mode (see lifestats.sketch.SketchConfig): bigger is more accurate and costs
    # more memory per day kept; exact mode ignores them.
    hll_lg_k: int = Field(12, ge=4, le=21, description="log2 of the registers of each distinct-visitors HLL")
    item_hll_lg_k: int = Field(10, ge=4, le=21, description="log2 of the registers of each top item's HLL")
    frequent_lg_max_map_size: int = Field(11, ge=3, le=26, description="log2 of the frequent-items map size")
    tracked_items: int = Field(200, ge=0, le=_MANY, description="items per day whose distinct visitors are sketched")

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


_ANY_TEXT: Final = ("", "\x00", "7#%")  # a pattern that matches these three matches any text


class BotsConfig(_Section):
    ips: list[str] = Field(default_factory=list)
    user_agents: list[str] = Field(default_factory=list)
    known_crawlers: bool = False

    @field_validator("user_agents")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regular expression {pattern!r}: {exc}") from exc
            if all(re.search(pattern, text) for text in _ANY_TEXT):  # "", "x*", "bot|": an empty match anywhere
                raise ValueError(
                    f"the pattern {pattern!r} matches every user agent (an empty string too), so every record "
                    "would be a bot: check it for an empty alternative ('a|') or a pattern that may match nothing"
                )
        return value


class MockConfig(_Section):
    """The dataset that ``api.url: embedded`` serves: synthetic, or the Lifesum pages replayed."""

    dataset: Literal["synthetic", "lifesum"] = "synthetic"
    seed: int = 7
    records: int = Field(20_000, gt=0, le=2**62)
    latency: float = Field(0.0, ge=0)
    empty_share: float = Field(0.2, ge=0, lt=1)


class Settings(_Section):
    api: ApiConfig  # its url has no default (see load_settings)
    fields: FieldsConfig = FieldsConfig()
    crawl: CrawlConfig = CrawlConfig()
    stats: StatsConfig = StatsConfig()
    bots: BotsConfig = BotsConfig()
    mock: MockConfig = MockConfig()

    @model_validator(mode="after")
    def _bots_have_their_fields(self) -> Settings:
        """Bot rules over a field the run does not read would silently catch nothing."""
        bots, fields = self.bots, self.fields
        if bots.ips and fields.ip is None:
            raise ValueError("bots.ips is set but fields.ip is not: name the record key that holds the ip (e.g. ip)")
        if (bots.user_agents or bots.known_crawlers) and fields.user_agent is None:
            rule = "bots.user_agents" if bots.user_agents else "bots.known_crawlers"
            raise ValueError(
                f"{rule} is set but fields.user_agent is not: name the record key that holds the user agent "
                "(e.g. user_agent)"
            )
        return self


SECTIONS = tuple(Settings.model_fields)


def choose_env(flag: str | None, environ: Mapping[str, str]) -> str:
    """``--env``, else ``LIFESTATS_ENV``, else ``ENV``, else ``development``."""
    return flag or environ.get("LIFESTATS_ENV") or environ.get("ENV") or DEFAULT_ENV


def load_settings(
    path: str | Path | None,
    env: str,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """The validated settings of ``env`` in ``path`` with variable and flag overrides applied.

    ``path`` None means no file: defaults plus overrides, on the bundled mock API unless they name one. A
    file's environment must name its API (``api.url``): one that does not is refused, rather than
    counting the mock's synthetic records as if they were the API's.
    """
    environ = os.environ if environ is None else environ
    data = _read_env(Path(path), env) if path is not None else {"api": {"url": "embedded"}}
    data.setdefault("api", {})
    from_environ = _env_overrides(environ)
    for source in (from_environ, overrides or {}):
        for section, values in source.items():
            data.setdefault(section, {}).update(values)
    where = f"{path} [{env}]" if path is not None else f"[{env}]"
    # A key set by a variable (and not by a flag after it) is named with its variable in a message.
    variables = {
        f"{section}.{key}": f"{ENV_PREFIX}{section.upper()}_{key.upper()}"
        for section, values in from_environ.items()
        for key in values
        if key not in (overrides or {}).get(section, {})
    }
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where, variables)) from None


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (plain YAML keeps the last one and
    drops the first without a word: a second ``crawl:`` block would undo the first's rate limit). Keys
    that a merge (``<<: *defaults``) brings in may be overridden, as anchors are meant to be."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the safe loader refuses it below
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"the key {key!r} is written twice", key_node.start_mark
                )
        return super().construct_mapping(node, deep)


def _read_env(path: Path, env: str) -> dict[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start + 1})") from None
    try:
        document = yaml.load(text, Loader=_UniqueKeys)  # a SafeLoader that refuses duplicate keys
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path} must map environment names to settings")
    if env not in document:
        names = ", ".join(sorted(str(k) for k in document if not str(k).startswith("."))) or "none"
        raise ConfigError(f"{path} has no environment {env!r} (it has: {names})")
    settings = document[env]
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise ConfigError(f"{path} [{env}] must be a mapping of sections")
    out: dict[str, dict[str, Any]] = {}
    for section, values in settings.items():
        if section not in SECTIONS:
            raise ConfigError(f"{path} [{env}]: unknown section {section!r} (the sections: {', '.join(SECTIONS)})")
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path} [{env}]: section {section!r} must be a mapping")
        out[str(section)] = dict(values)
    return out


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``LIFESTATS_CRAWL_RATE_LIMIT=50`` -> ``{"crawl": {"rate_limit": 50}}`` (values parsed as YAML)."""
    out: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in RESERVED_VARIABLES:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("_")
        if section not in SECTIONS:
            raise ConfigError(
                f"environment variable {name}: there is no section {section!r} "
                f"(sections: {', '.join(SECTIONS)}; other variables: {', '.join(sorted(RESERVED_VARIABLES))})"
            )
        model = Settings.model_fields[section].annotation
        if key not in model.model_fields:  # type: ignore[union-attr]
            raise ConfigError(f"environment variable {name}: {section} has no key {key!r}")
        annotation = model.model_fields[key].annotation  # type: ignore[union-attr]
        if annotation is str or (annotation == str | None and raw not in _YAML_NULLS):
            # A name (a record key, a parameter, a path) is the text as written: YAML would read "on" as
            # true and "123" as a number, and a variable has no quotes to say otherwise.
            value: Any = raw if raw != "" or annotation is str else None
        else:
            try:
                value = yaml.safe_load(raw) if raw != "" else None
            except yaml.YAMLError:
                value = raw
        out.setdefault(section, {})[key] = value
    return out


_YAML_NULLS: Final = frozenset({"", "~", "null", "Null", "NULL"})


def _describe(exc: ValidationError, where: str, variables: Mapping[str, str] | None = None) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        if key in (variables or {}):
            key = f"{key} (from the environment variable {(variables or {})[key]})"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        value = error["input"]
        if isinstance(value, str) and ("://" in value or "@" in value):
            value = redact_url(value)  # a URL's credentials never reach a message
        # A whole section (a check across its keys) is not shown: its message names the keys, and the
        # section may hold a URL's credentials.
        whole = isinstance(value, (dict, list)) or value == ""  # nothing worth showing either way
        shown = "" if whole or error["type"] in ("extra_forbidden", "missing") else f" (got {value!r})"
        lines.append(f"{key}: {message}{shown}" if error["loc"] else f"{message}{shown}")
    return f"bad configuration in {where}:\n  " + "\n  ".join(lines)


_EXACT_STATS: Final[set[str]] = {"mode", "series", "timezone"}
# A checkpoint of approx mode holds sketches of fixed sizes: other sizes cannot be merged with them.
_STATS_FINGERPRINT: Final = {
    "exact": _EXACT_STATS,
    "approx": _EXACT_STATS | {"hll_lg_k", "item_hll_lg_k", "frequent_lg_max_map_size", "tracked_items"},
}


def fingerprint(settings: Settings) -> dict[str, Any]:
    """The settings that change what a run counts: a checkpoint only resumes a run with equal ones."""
    api = settings.api
    values = url_values_digest(api.url)  # values without a name are masked: a digest tells them apart
    return {
        # Credentials never reach the checkpoint (a changed one still resumes).
        "url": canonical_url(redact_url(api.url)),
        **({"url_values": values} if values is not None else {}),
        "mock": settings.mock.model_dump(exclude=_MOCK_PACE) if api.url == "embedded" else None,
        "first_id": api.first_id,
        "last_id": api.last_id,
        "records_path": api.records_path,
        "next_offset_path": api.next_offset_path,
        "offset_param": api.offset_param,
        "pagination": api.pagination_fingerprint(),
        "fields": settings.fields.model_dump(),
        "bots": _bots_fingerprint(settings.bots.model_dump()),
        "stats": settings.stats.model_dump(include=_STATS_FINGERPRINT[settings.stats.mode]),
    }


def _bots_fingerprint(bots: dict[str, Any], *, stored: bool = False) -> dict[str, Any]:
    """``bots`` with its ips in their canonical form: another spelling of the same addresses marks the same
    records as bots, so it does not refuse a resume (``stored``: see :func:`lifestats.bots.canonical_ips`)."""
    ips = bots.get("ips")
    if isinstance(ips, list) and all(isinstance(ip, str) for ip in ips):
        return {**bots, "ips": canonical_ips(ips, stored=stored)}
    return bots


# How fast the embedded API answers changes no record it serves.
_MOCK_PACE: Final = {"latency"}


def comparable(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored fingerprint without the parts that earlier versions kept but that change no count: the
    slicing (a resume crawls the checkpoint's own slices, whatever ``crawl.slices`` says now) and the
    embedded API's latency; its URL masked again, as this version masks it, and its bot ips in their
    canonical form."""
    kept = {part: value for part, value in stored.items() if part != "slices"}
    if isinstance(kept.get("url"), str):  # masked as this version masks (it masks more than earlier ones)
        url = kept["url"]
        if "url_values" not in kept and (values := url_values_digest(url)) is not None:
            kept["url_values"] = values  # an earlier version kept them as written
        kept["url"] = canonical_url(redact_url(url))
    if isinstance(kept.get("bots"), dict):
        kept["bots"] = _bots_fingerprint(kept["bots"], stored=True)
    if isinstance(kept.get("mock"), dict):
        kept["mock"] = {key: value for key, value in kept["mock"].items() if key not in _MOCK_PACE}
    return kept


# Where each part of the fingerprint comes from in the config (a part that is a section names its keys).
_FINGERPRINT_KEYS: Final = {
    "url": "api.url",
    "url_values": "api.url (its values written without a name, as a digest)",
    "pagination": "api",
    "mock": "mock",
}


def fingerprint_changes(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The config keys whose values differ between two fingerprints, each with both values, as
    ``"stats.timezone: 'UTC' in the checkpoint, 'Asia/Tokyo' now"``."""
    changes: list[str] = []

    def walk(key: str, old: Any, new: Any) -> None:
        if isinstance(old, dict) and isinstance(new, dict):
            for name in sorted(set(old) | set(new), key=str):
                walk(f"{key}.{name}", old.get(name), new.get(name))
        elif old != new:
            changes.append(f"{key}: {_shown(old)} in the checkpoint, {_shown(new)} now")

    for part in sorted(set(stored) | set(now)):
        key = _FINGERPRINT_KEYS.get(part, part if part in ("fields", "bots", "stats") else f"api.{part}")
        walk(key, stored.get(part), now.get(part))
    return changes


def _shown(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else f"{text[: width - 5]}...{text[-2:]}"
