"""Values by key in bounded memory: a few live objects, the rest encoded, and past a budget on disk.

Approximate statistics keep sketches per local day (and per fine series bucket). A day's sketches fill
up and then stop growing, but a year of saturated days is tens of megabytes, and a crawl in time order
only ever updates a few days at a time. :class:`SpillStore` keeps the ``live`` most recently updated
values as objects, every other value in its encoded form, in memory up to ``memory_bytes`` and beyond
that in an anonymous temporary file (gone when the store is closed or the process ends). So the memory
of a long crawl stays that of a few live values plus the budget, however many records and days it
counts; reads decode one value at a time.

The file reuses space: an encoded value is written in place when it fits the slot it had, else into a
free slot or at the end with room to grow (a day's encoding grows a few times until it saturates, so
the file stays within a small multiple of the encoded values).
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_ALIGN = 512


class SpillStore(Mapping[K, V], Generic[K, V]):
    """A mapping of keys to values: ``live`` of them as objects, the others encoded (in memory, then on disk).

    ``store[key]`` gives the value to read (decoded on the fly when not live: changes to it are lost);
    :meth:`updating` gives the live value to change. Not thread-safe.
    """

    def __init__(
        self,
        encode: Callable[[V], bytes],
        decode: Callable[[bytes], V],
        *,
        live: int = 8,
        memory_bytes: int = 8 << 20,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        self._encode = encode
        self._decode = decode
        self.live = max(1, live)
        self.memory_bytes = max(0, memory_bytes)
        self.directory = directory
        self._live: OrderedDict[K, V] = OrderedDict()  # least recently updated first
        self._cold: dict[K, bytes] = {}  # encoded, in memory
        self._cold_size = 0
        self._slots: dict[K, tuple[int, int, int]] = {}  # key -> (offset, length, capacity) in the file
        self._on_disk: set[K] = set()  # keys whose current value is the one in their slot
        self._free: list[tuple[int, int]] = []  # (offset, capacity) of unused slots
        self._end = 0
        self._file: IO[bytes] | None = None

    # -- Mapping ------------------------------------------------------------------------------------------
    def __getitem__(self, key: K) -> V:
        found = self._live.get(key)
        if found is not None:
            return found
        return self._decode(self.encoded(key))

    def __contains__(self, key: object) -> bool:
        return key in self._live or key in self._cold or key in self._on_disk

    def __iter__(self) -> Iterator[K]:
        yield from [*self._live, *self._cold, *self._on_disk]  # three disjoint sets of keys

    def __len__(self) -> int:
        return len(self._live) + len(self._cold) + len(self._on_disk)

    # -- writes -------------------------------------------------------------------------------------------
    def updating(self, key: K, make: Callable[[], V]) -> V:
        """The live value of ``key`` to change in place (``make()`` when absent); the least recently
        updated live value beyond ``live`` is encoded and put away."""
        value = self._live.get(key)
        if value is not None:
            self._live.move_to_end(key)
            return value
        if key in self:
            value = self._decode(self.encoded(key))
            self._drop_cold(key)
        else:
            value = make()
        self._live[key] = value
        while len(self._live) > self.live:
            old, kept = self._live.popitem(last=False)
            self._put_cold(old, self._encode(kept))
        return value

    def put_encoded(self, key: K, body: bytes) -> None:
        """Set ``key`` to the value that ``body`` encodes (replacing a live one)."""
        self._live.pop(key, None)
        self._drop_cold(key)
        self._put_cold(key, body)

    def encoded(self, key: K) -> bytes:
        """The encoded value of ``key`` (KeyError when absent)."""
        value = self._live.get(key)
        if value is not None:
            return self._encode(value)
        body = self._cold.get(key)
        if body is not None:
            return body
        if key not in self._on_disk:
            raise KeyError(key)
        offset, length, _ = self._slots[key]
        assert self._file is not None
        return os.pread(self._file.fileno(), length, offset)

    def close(self) -> None:
        """Forget every value and remove the file."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._live.clear()
        self._cold.clear()
        self._cold_size = 0
        self._slots.clear()
        self._on_disk.clear()
        self._free.clear()
        self._end = 0

    # -- figures ------------------------------------------------------------------------------------------
    def live_values(self) -> list[V]:
        return list(self._live.values())

    def cold_bytes_in_memory(self) -> int:
        return self._cold_size

    def file_bytes(self) -> int:
        """The size of the spill file (0 when nothing was spilled)."""
        return self._end

    # -- internals ----------------------------------------------------------------------------------------
    def _drop_cold(self, key: K) -> None:
        body = self._cold.pop(key, None)
        if body is not None:
            self._cold_size -= len(body)
        self._on_disk.discard(key)  # its slot stays reserved: the value is likely to come back, a bit bigger

    def _put_cold(self, key: K, body: bytes) -> None:
        if self._cold_size + len(body) <= self.memory_bytes:
            self._cold[key] = body
            self._cold_size += len(body)
            return
        self._write(key, body)

    def _write(self, key: K, body: bytes) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(dir=self.directory)  # noqa: SIM115 (kept open: closed by close())
        slot = self._slots.get(key)
        if slot is not None and slot[2] < len(body):  # outgrew its slot
            self._free.append((slot[0], slot[2]))
            slot = None
        if slot is None:
            slot = self._allocate(len(body))
        offset, _, capacity = slot
        os.pwrite(self._file.fileno(), body, offset)
        self._slots[key] = (offset, len(body), capacity)
        self._on_disk.add(key)

    def _allocate(self, length: int) -> tuple[int, int, int]:
        best = None
        for i, (_, capacity) in enumerate(self._free):  # the smallest free slot that fits
            if capacity >= length and (best is None or capacity < self._free[best][1]):
                best = i
        if best is not None:
            offset, capacity = self._free.pop(best)
            return offset, length, capacity
        capacity = -(-(length + length // 2) // _ALIGN) * _ALIGN  # room to grow
        offset, self._end = self._end, self._end + capacity
        return offset, length, capacity
