"""Every id a positional or sequential slice has counted, for de-duplication where ids are not ordered.

An id-sliced crawl de-duplicates by its high-water mark (ids come in order). The other styles cannot:
an API that sorts by a field that changes while the crawl runs (``updated_at``) may serve a record
again a hundred pages later. So a slice of those styles remembers every id it has taken, exactly:

- integer ids in sorted numpy runs, merged as they grow (like a log-structured merge tree: each run is
  over twice the size of the next, so a slice of n ids holds about log2(n / 65,536) of them, and a page
  is looked up with one binary search per run): 17.4 bytes per id held, 18.5 while runs merge;
- string ids in a Python set: 42.0 bytes per id (55.6 at the peak), and the set keeps the string itself
  (49 bytes plus its text) alive. (Both as ``tracemalloc`` sees them over 2 x 10^6 ids:
  ``bench/seen_memory.py``.)

``PYTHONPATH=. python bench/seen_memory.py`` measures both.

The ids a slice takes go out with each flush (:func:`encode_ids`) and are committed with it; a new
attempt of the slice (a resume, a lost worker) starts from them (:meth:`SeenIds.restore`). What it does
not see: the ids of another slice of a positional crawl cut into several. Those the coordinator
compares at the end of the run (``Checkpoint.repeated_across_slices``) and reports as a warning.
docs/DESIGN.md, "Exactly once".
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

_RUN: Final = 1 << 16  # integer ids held in a set before they become a sorted run
_COUNTS: Final = struct.Struct("<QQ")  # an encoded batch's integer and string ids


class SeenIds:
    """The ids (ints in the signed 64-bit range, or strings) a slice's crawl has taken so far."""

    def __init__(self) -> None:
        self._runs: list[npt.NDArray[np.int64]] = []  # sorted, disjoint, each over twice the next one's size
        self._ints: set[int] = set()  # the newest integer ids, not yet in a run
        self._texts: set[str] = set()
        self._fresh: list[Any] = []  # taken since the last take_fresh()

    @classmethod
    def restore(cls, taken: Iterable[bytes]) -> SeenIds:
        """The ids of earlier flushes (each :func:`encode_ids`), none of them fresh."""
        seen = cls()
        for body in taken:
            seen.remember(decode_ids(body))
        seen._fresh.clear()
        return seen

    def take_fresh(self) -> list[Any]:
        """The ids taken since the last call (for the next flush)."""
        fresh, self._fresh = self._fresh, []
        return fresh

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
        ids = list(ids)
        self._fresh.extend(ids)
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


def encode_ids(ids: Sequence[Any]) -> bytes:
    """Ids (ints in the signed 64-bit range, strings) as bytes for a flush; empty when there are none.

    The integer ids as little-endian int64, then each string as its length and its UTF-8 bytes (a lone
    surrogate, which JSON text can carry, kept as it is)."""
    if not ids:
        return b""
    ints = [rid for rid in ids if type(rid) is int]
    texts = [rid.encode("utf-8", "surrogatepass") for rid in ids if type(rid) is not int]
    out = [_COUNTS.pack(len(ints), len(texts)), np.array(ints, dtype="<i8").tobytes()]
    out.append(np.array([len(text) for text in texts], dtype="<u4").tobytes())
    out.extend(texts)
    return b"".join(out)


def decode_ids(body: bytes) -> list[Any]:
    """The ids of :func:`encode_ids` (the integers first)."""
    ints, texts = decode_id_columns(body)
    ids: list[Any] = ints.tolist()
    ids.extend(texts)
    return ids


def decode_id_columns(body: bytes) -> tuple[npt.NDArray[np.int64], list[str]]:
    """The ids of :func:`encode_ids` as two columns: the integers, and the strings."""
    if not body:
        return np.zeros(0, dtype=np.int64), []
    n_ints, n_texts = _COUNTS.unpack_from(body)
    at = _COUNTS.size
    ints = np.frombuffer(body, dtype="<i8", count=n_ints, offset=at).astype(np.int64)
    at += 8 * n_ints
    lengths = np.frombuffer(body, dtype="<u4", count=n_texts, offset=at).tolist()
    at += 4 * n_texts
    texts = []
    for length in lengths:
        texts.append(body[at : at + length].decode("utf-8", "surrogatepass"))
        at += length
    return ints, texts


def _in_run(run: npt.NDArray[np.int64], rid: int) -> bool:
    place = int(np.searchsorted(run, rid))
    return place < len(run) and int(run[place]) == rid
