"""The aggregator: apply each flush exactly once to the checkpoint, and keep the job's running total.

The checkpoint itself (one DuckDB file, fenced by slice, attempt and sequence number) lives in
:mod:`lifestats.store`; this module decides what of a flush goes where. In exact mode a flush's facts
(:class:`~lifestats.facts.FactsStatistics`) go to the store's ``facts`` table, in the flush's
transaction, and :attr:`Aggregator.total` reads them there as SQL (its ``stats`` is the store's
:class:`~lifestats.store.StoredStatistics`): the coordinator never holds them. The small part of a flush
(record tallies, series floor and cut, approx mode's sketches) is merged into :attr:`Aggregator.total`
and kept in the checkpoint as a blob; every :data:`KEEP_RECENT` flushes the blobs are replaced by one that
sums them all, in the transaction of the flush that triggers it, so a resume reads a bounded number of
blobs instead of replaying the run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson

from .errors import StateDirError
from .facts import FactsStatistics
from .stats import Partial
from .store import (
    CHECKPOINT_FILE,
    REJECTS_FILE,
    SCHEMA_VERSION,
    Checkpoint,
    CheckpointSchemaError,
    Flush,
    SliceState,
)

__all__ = [
    "CHECKPOINT_FILE",
    "KEEP_RECENT",
    "REJECTS_FILE",
    "SCHEMA_VERSION",
    "Aggregator",
    "Checkpoint",
    "CheckpointSchemaError",
    "Flush",
    "SliceState",
]

KEEP_RECENT = 32  # flush blobs kept beside the compacted one before they are folded into it


class Aggregator:
    """Merges applied flushes into the job's running total, and samples rejected records to a file."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        rejects_path: Path,
        keep_rejects: int = 1000,
        keep_recent: int = KEEP_RECENT,
        *,
        exact: bool = True,
    ) -> None:
        self.checkpoint = checkpoint
        self.exact = exact
        self.keep_rejects = keep_rejects
        self.keep_recent = keep_recent
        self.rejects_path = rejects_path
        self.total = self._committed()
        self._rejects_written = _count_lines(rejects_path)

    def _committed(self) -> Partial:
        total = Partial()
        self._recent_bytes = 0  # the blobs beside the compacted one (all of them, when reopened)
        self._compacted_bytes = 0
        for body in self.checkpoint.partials():
            total.merge(Partial.from_bytes(body), keep_rejects=0)
            self._recent_bytes += len(body)
        self._recent = self.checkpoint.recent()
        if self.exact:
            total.stats = self.checkpoint.statistics()  # the facts stay in the store: nothing replayed
        return total

    def reload(self) -> None:
        """Make the total what the checkpoint holds (after an interrupt that may have landed between a
        commit and its merge), so that a partial report shows exactly what a resume starts from."""
        self.total = self._committed()

    def apply(self, flush: Flush) -> bool:
        partial = Partial.from_bytes(flush.partial)
        body, facts = flush.partial, None
        if self.exact and partial.stats is not None:
            if not isinstance(partial.stats, FactsStatistics):
                raise ValueError(f"an exact run received {type(partial.stats).__name__} in a flush, not exact facts")
            facts = partial.stats.table()
            partial.stats = None
            body = partial.to_bytes()
        folded = False

        def fold() -> bytes:
            """The compacted blob: every committed flush and this one (the total, merged first)."""
            nonlocal folded
            folded = True
            self.total.merge(partial, keep_rejects=0)
            small = dataclasses.replace(self.total, stats=None) if self.exact else self.total
            blob = small.to_bytes()
            self._compacted_bytes = len(blob)
            return blob

        # Folded once the recent blobs are many AND weigh as much as the compacted one: an approx total
        # grows to tens of MB, so rewriting it every few flushes would cost its size each time; this way
        # the bytes rewritten stay proportional to the bytes received, and the blobs kept to twice the total.
        due = self._recent + 1 >= self.keep_recent and self._recent_bytes + len(body) >= self._compacted_bytes
        compact = fold if due else None
        try:
            applied = self.checkpoint.apply(flush, body=body, facts=facts, compacted=compact)
        except BaseException:
            if folded:  # the total took a flush that may not have been committed: read it back
                self.reload()
            raise
        if not applied:
            return False
        if folded:
            self._recent = self._recent_bytes = 0
        else:
            self.total.merge(partial, keep_rejects=0)
            self._recent += 1
            self._recent_bytes += len(body)
        try:
            self._write_rejects(flush.slice, partial)
        except OSError as exc:
            raise StateDirError(
                f"cannot write {self.rejects_path} ({exc.strerror or exc}); the checkpoint is intact: "
                "free space or make it writable, then run the same command to resume"
            ) from None
        return True

    def _write_rejects(self, index: int, partial: Partial) -> None:
        room = self.keep_rejects - self._rejects_written
        if room <= 0 or not partial.rejects:
            return
        sample = partial.rejects[:room]
        with self.rejects_path.open("ab") as out:
            for reject in sample:
                out.write(orjson.dumps({"slice": index, **reject}) + b"\n")
        self._rejects_written += len(sample)


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0
