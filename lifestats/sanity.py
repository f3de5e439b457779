"""The end-of-crawl check that the crawl looks like data (SPEC section 1).

A crawl can run to its end and still have counted nothing useful: a records path or an id field that
names the wrong thing, slices that miss the API's ids, a field mapping that rejects most records, or an
optional field whose key no record has (a typo in ``fields.visitor`` gives every window 0 distinct
visitors, one in ``fields.ip`` lets every bot through). Such a run writes its report with ``warnings``
and exits 4 rather than pass for a complete, correct answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .config import Settings

# The record tallies (in ``Partial.records``) behind the field check: how many counted records the check
# saw (a checkpoint written before it existed saw fewer than were counted, and is not judged), and, per
# optional field, whether any record had it: a worker stops adding once its partial has one.
FIELDS_CHECKED: Final = "fields_checked"
# The tally of slices whose data was taken to end where the API failed, past every retry, to answer the
# offset that an empty page named past every id known (lifestats.paginate.DataEnd.failed_past_the_data).
PEEKS_FAILED: Final = "peeks_failed"
OPTIONAL_FIELDS: Final = ("category", "visitor", "timestamp", "ip", "user_agent")


def having(field: str) -> str:
    """The tally of records that had ``field`` (one of :data:`OPTIONAL_FIELDS`) in a usable form."""
    return f"having_{field}"


# What a field that no record had leaves out of the report, and what "had" means for it.
_LOST: Final = {
    "category": ("as a string or an integer in the signed 64-bit range", "no category is ranked"),
    "visitor": ("as a string or an integer in the signed 64-bit range", "no distinct visitor is counted"),
    "timestamp": ("", "no record is in a window but `all`, nor in the series"),
    "ip": ("as a string", "bots.ips matched nothing"),
    "user_agent": ("as a string", "bots.user_agents and bots.known_crawlers matched nothing"),
}


def data_warnings(
    records: Mapping[str, int],
    max_rejected_share: float,
    fields: Mapping[str, str | None] | None = None,
    *,
    unique_id: str | None = None,
) -> list[str]:
    """Sentences saying what looks wrong with the crawled records; empty when all is well.

    ``records`` holds the run's counts: ``received`` (every record on every page), ``fetched`` (those
    inside the slices), ``rejected``, ``duplicates``, ``counted``, ``bots`` and the field tallies.
    ``fields``: the record key of each optional field the check should judge (the ones the config names
    and the run uses). ``unique_id``: the id key, when a duplicate means an id that two records share (the
    styles that do not slice by id: there, more duplicates than ``max_rejected_share`` say that the key is
    not unique to a record, such as a visitor's, or that the API serves its records again).
    """
    received = records.get("received", 0)
    fetched = records.get("fetched", 0)
    rejected = records.get("rejected", 0)
    warnings = []
    if received > 0 and fetched == 0:
        warnings.append(
            f"the API sent {received:,} records but none lay inside the crawl's slices: check fields.id "
            "and api.first_id / api.last_id"
        )
    if fetched > 0 and rejected / fetched > max_rejected_share:
        warnings.append(
            f"{rejected:,} of {fetched:,} records ({rejected / fetched:.0%}) were rejected, more than "
            f"crawl.max_rejected_share ({max_rejected_share:.0%}): check the fields section "
            "(rejects.jsonl in the state dir has samples with reasons)"
        )
    bots, counted = records.get("bots", 0), records.get("counted", 0)
    if bots > 0 and counted == 0:
        warnings.append(
            f"all {bots:,} records that were not rejected were bots, so nothing was counted: check bots.ips, "
            "bots.user_agents and bots.known_crawlers"
        )
    duplicates = records.get("duplicates", 0)
    if unique_id is not None and fetched > 0 and duplicates / fetched > max_rejected_share:
        warnings.append(
            f"{duplicates:,} of {fetched:,} records ({duplicates / fetched:.0%}) had an id the crawl had already "
            f"taken, more than crawl.max_rejected_share ({max_rejected_share:.0%}), and counted once: check that "
            f"fields.id ('{unique_id}') is unique to each record, or whether the API serves its records again"
        )
    failed = records.get(PEEKS_FAILED, 0)
    if failed:
        warnings.append(
            f"{failed:,} slice{'s' if failed > 1 else ''} ended at an empty page whose next offset, past every id "
            "known, the API failed to answer (after every retry): taken as the end of the data, so records past "
            "it, if any, were not counted; run the job again once the API answers there, or set api.last_id to "
            "one past the highest id the API holds"
        )
    warnings += _field_warnings(records, fields or {})
    return warnings


def _field_warnings(records: Mapping[str, int], fields: Mapping[str, str | None]) -> list[str]:
    counted = records.get("counted", 0)
    if counted == 0 or records.get(FIELDS_CHECKED, 0) != counted:
        return []  # nothing to judge, or counts from a checkpoint written before the check
    warnings = []
    for field in OPTIONAL_FIELDS:
        key = fields.get(field)
        if not key or records.get(having(field), 0):
            continue
        form, lost = _LOST[field]
        if field in ("ip", "user_agent"):
            seen = counted + records.get("bots", 0)
            whom = f"the {seen:,} records checked for bots"
        else:
            whom = f"the {counted:,} counted records"
        how = "missing, null or of another type in every one" if form else "missing or null in every one"
        warnings.append(
            f"fields.{field} names the key {key!r}, which none of {whom} had{' ' + form if form else ''} "
            f"({how}), so {lost}: check fields.{field}"
        )
    return warnings


def judged_fields(settings: Settings) -> dict[str, str | None]:
    """The record key of each optional field the run reads, for :func:`data_warnings`: ip and user_agent
    only where a bot rule reads them."""
    fields, bots = settings.fields, settings.bots
    keys: dict[str, str | None] = {name: getattr(fields, name) for name in OPTIONAL_FIELDS}
    if not bots.ips:
        keys["ip"] = None
    if not (bots.user_agents or bots.known_crawlers):
        keys["user_agent"] = None
    return keys
