"""The end-of-crawl check that the crawl looks like data (SPEC section 1).

A crawl can run to its end and still have counted nothing useful: a records path or an id field that
names the wrong thing, slices that miss the API's ids, a field mapping that rejects most records. Such
a run writes its report with ``warnings`` and exits 4 rather than pass for a complete, correct answer.
"""

from __future__ import annotations

from collections.abc import Mapping


def data_warnings(records: Mapping[str, int], max_rejected_share: float) -> list[str]:
    """Sentences saying what looks wrong with the crawled records; empty when all is well.

    ``records`` holds the run's counts: ``received`` (every record on every page), ``fetched`` (those
    inside the slices), ``rejected``.
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
    return warnings
