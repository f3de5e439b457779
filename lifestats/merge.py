"""The aggregator: apply each flush exactly once to the checkpoint, and keep the job's running total.

The checkpoint itself (one DuckDB file, fenced by slice, attempt and sequence number) lives in
:mod:`lifestats.store`; this module decides what of a flush goes where. In exact mode a flush's facts
(:class:`~lifestats.facts.FactsStatistics`) go to the store's ``facts`` table, in the flush's
transaction, and :attr:`Aggregator.total` reads them there as SQL (its ``stats`` is the store's
:class:`~lifestats.stored.StoredStatistics`): the coordinator never holds them. The small part of a flush
(record tallies, series floor and cut, approx mode's sketches) is merged into :attr:`Aggregator.total`
and kept in the checkpoint as a blob; once the recent blobs are many (:data:`KEEP_RECENT`) and weigh as
much as the compacted total, they are folded into a new compacted total (a file the checkpoint commits
by generation, written from :attr:`Aggregator.total` a day of sketches at a time) in the transaction of
the flush that triggers it, so a resume reads the total and a bounded number of blobs instead of
replaying the run. Approx mode never imports pyarrow (exact facts are checked for only in exact mode).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import BinaryIO

import orjson

from .errors import StateDirError
from .protocol import Flush
from .stats import Partial
from .store import (
    CHECKPOINT_FILE,
    REJECTS_FILE,
    SCHEMA_VERSION,
    Checkpoint,
    CheckpointSchemaError,
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
        """The total the checkpoint holds: its compacted total (read a day at a time) plus its recent blobs."""
        path = self.checkpoint.total_path()
        if path is None:
            total, self._compacted_bytes = Partial(), 0
        else:
            try:
                with path.open("rb", buffering=1 << 20) as stream:
                    total = Partial.read_from(stream)
                    self._compacted_bytes = stream.tell()
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise StateDirError(
                    f"cannot read the checkpoint's total {path} ({reason}); "
                    "run again with --fresh to start over, or point --state-dir elsewhere",
                    exit_code=2,
                ) from None
        self._recent_bytes = 0
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
            from .facts import FactsStatistics  # exact mode only: pyarrow

            if not isinstance(partial.stats, FactsStatistics):
                raise ValueError(f"an exact run received {type(partial.stats).__name__} in a flush, not exact facts")
            facts = partial.stats.rows()  # SQL sums them: no need to sum them here
            partial.stats = None
            body = partial.to_bytes()
        folded = False

        def fold(stream: BinaryIO) -> None:
            """Write the compacted total: every committed flush and this one (the total, merged first)."""
            nonlocal folded
            folded = True
            self.total.merge(partial, keep_rejects=0)
            small = dataclasses.replace(self.total, stats=None) if self.exact else self.total
            self._compacted_bytes = small.write_to(stream)

        # Folded once the recent blobs are many AND weigh as much as the compacted total: an approx total
        # grows to tens of MB, so rewriting it every few flushes would cost its size each time; this way
        # the bytes rewritten stay proportional to the bytes received, and the blobs kept to twice the total.
        due = self._recent + 1 >= self.keep_recent and self._recent_bytes + len(body) >= self._compacted_bytes
        compact = fold if due else None
        try:
            applied = self.checkpoint.apply(flush, body=body, facts=facts, compacted=compact)
        except BaseException:
            # The flush may be committed or not (an interrupt held during the transaction is raised right
            # after its COMMIT), and a fold may have merged it: the total is read back either way. Left
            # without a committed flush, the next fold would write a total without it and delete its blob.
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
