"""Every id a positional or sequential slice has counted, for de-duplication where ids are not ordered.

An id-sliced crawl de-duplicates by its high-water mark (ids come in order). The other styles cannot:
an API that sorts by a field that changes while the crawl runs (``updated_at``) may serve a record
again a hundred pages later. So a slice of those styles remembers every id it has taken, exactly:

- integer ids in sorted numpy runs, merged as they grow (like a log-structured merge tree: each run is
  over twice the size of the next, so a slice of n ids holds about log2(n / 65,536) of them, and a page
  is looked up with one binary search per run): 9 bytes per id, 11 while runs merge;
- string ids in a Python set: 34 bytes per id, and the set keeps the string itself (49 bytes plus
  its text) alive.

``PYTHONPATH=. python bench/seen_memory.py`` measures both.

What it does not see: the ids of another slice (a positional crawl cut into several), and the ids a
slice took before it was resumed or split (a new attempt starts with none). docs/DESIGN.md, "Exactly once".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

_RUN: Final = 1 << 16  # integer ids held in a set before they become a sorted run


class SeenIds:
    """The ids (ints in the signed 64-bit range, or strings) a slice's crawl has taken so far."""

    def __init__(self) -> None:
        self._runs: list[npt.NDArray[np.int64]] = []  # sorted, disjoint, each over twice the next one's size
        self._ints: set[int] = set()  # the newest integer ids, not yet in a run
        self._texts: set[str] = set()

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs) + len(self._ints) + len(self._texts)

    def seen(self, rid: Any) -> bool:
        """Whether the slice took ``rid`` before."""
        if type(rid) is int:
            return rid in self._ints or any(_in_run(run, rid) for run in self._runs)
        return rid in self._texts

    def seen_mask(self, ids: Sequence[Any]) -> list[bool]:
        """:meth:`seen` of each of ``ids``, the integer ones looked up together."""
        out = [rid in self._texts if type(rid) is not int else rid in self._ints for rid in ids]
        if self._runs:
            at = [i for i, rid in enumerate(ids) if type(rid) is int and not out[i]]
            if at:
                values = np.fromiter((ids[i] for i in at), dtype=np.int64, count=len(at))
                hit = np.zeros(len(at), dtype=np.bool_)
                for run in self._runs:
                    places = np.minimum(np.searchsorted(run, values), len(run) - 1)
                    hit |= run[places] == values
                for i in np.flatnonzero(hit).tolist():
                    out[at[i]] = True
        return out

    def remember(self, ids: Iterable[Any]) -> None:
        """Take ``ids`` (none of them seen before)."""
        for rid in ids:
            if type(rid) is int:
                self._ints.add(rid)
            else:
                self._texts.add(rid)
        if len(self._ints) >= _RUN:
            run = np.fromiter(self._ints, dtype=np.int64, count=len(self._ints))
            run.sort()
            self._ints.clear()
            self._runs.append(run)
            while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
                newest = self._runs.pop()
                merged = np.concatenate([self._runs.pop(), newest])
                merged.sort(kind="stable")
                self._runs.append(merged)


def _in_run(run: npt.NDArray[np.int64], rid: int) -> bool:
    place = int(np.searchsorted(run, rid))
    return place < len(run) and int(run[place]) == rid
