"""Reading a page's JSON straight into compact records of the fields the job reads (``msgspec``).

A page of 1,000 records parsed into dicts builds 1,000 hash tables and a Python object for every field
of every record, fields the job never reads included; the counter then reads each field it needs from
all of them again. Decoded here against the shape the job expects, a body becomes a document with
the same paths as the parsed JSON, except that the records are :class:`Record` structs holding only
the configured fields (``fields`` in the config) and the body keeps only the paths the paginator
reads. On the mock's pages (``bench/decode.py``, medians of 5 rounds): reading 0.40 µs per record
against 0.56 with ``orjson`` and dicts, reading and the 7 fields' columns 0.59 against 0.76, reading and
counting in exact mode 3.21 against 4.10.

Nothing is decided here: anything that does not fit the expected shape (a body that is not JSON, a
records path that holds no list, a record that is not an object, an intermediate path that is not an
object) raises :class:`NotDecoded`, and the caller parses the body with ``orjson`` as before, so every
fault is read, and named, from the whole body. The values are any JSON, as ``orjson`` gives them, with
one difference: an integer beyond the 64-bit range stays an integer here (``orjson`` gives a float, or
refuses a body whose number no float holds). :meth:`Record.to_dict` gives the record exactly as
``orjson`` would have, for the per-record path and the sample of rejects: those see dicts, always. A
sampled reject shows the fields the job reads; the record's other fields are not decoded.
"""

from __future__ import annotations

import keyword
import operator
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final

import msgspec
import orjson

UNSET: Final = msgspec.UNSET


class NotDecoded(ValueError):
    """The body does not have the expected shape: parse it whole instead."""


class Record(msgspec.Struct, gc=False):
    """One record: the configured fields, ``UNSET`` where the record lacks one (see :func:`record_type`)."""

    _attr_of: ClassVar[dict[str, str]] = {}  # record key -> attribute

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, as ``dict.get`` on the record parsed by ``orjson`` gives it (an integer
        beyond 64 bits as ``orjson`` reads it: a float)."""
        attr = self._attr_of.get(key)
        value = UNSET if attr is None else getattr(self, attr)
        return default if value is UNSET else _as_orjson(value)

    def to_dict(self) -> dict[str, Any]:
        """The record as ``orjson`` parses it (its configured fields; one it lacks is absent). A number no
        double holds, which ``orjson`` would refuse, stays an integer."""
        text = msgspec.json.encode(self)
        try:
            return orjson.loads(text)  # type: ignore[no-any-return]
        except orjson.JSONDecodeError:
            return msgspec.json.decode(text)  # type: ignore[no-any-return]


RECORD_TYPES: Final = (dict, Record)  # what a record that is a JSON object arrives as

_ORJSON_INT_MIN: Final = -(2**63)
_ORJSON_INT_MAX: Final = 2**64 - 1


def record_type(keys: Sequence[str]) -> type[Record]:
    """A :class:`Record` struct of the record keys ``keys`` (attributes ``f0``, ``f1``, ... renamed to them)."""
    distinct = list(dict.fromkeys(keys))
    attrs = [f"f{i}" for i in range(len(distinct))]
    cls: Any = msgspec.defstruct(
        "Record",
        [(attr, Any, UNSET) for attr in attrs],
        bases=(Record,),
        rename=dict(zip(attrs, distinct, strict=True)),
        gc=False,
        module=__name__,
    )
    cls._attr_of = dict(zip(distinct, attrs, strict=True))
    return cls  # type: ignore[no-any-return]


def column_getter(records: Sequence[Any], key: str) -> Callable[[Any], Any] | None:
    """How to read ``key`` from each of ``records`` when they are :class:`Record` structs (None: they are
    not); the getter gives ``UNSET`` where a record lacks the key."""
    if not records or not isinstance(records[0], Record):
        return None
    attr = type(records[0])._attr_of.get(key)
    if attr is None:
        return lambda _record: UNSET
    return operator.attrgetter(attr)


def as_dict(record: Any) -> Any:
    """A record for the per-record path: a :class:`Record` as ``orjson`` parses it, anything else as it is."""
    return record.to_dict() if isinstance(record, Record) else record


class _Node:
    """A path's object in the expected body: its children by key, each another node or a leaf."""

    def __init__(self) -> None:
        self.children: dict[str, _Node | str] = {}  # "records" or "value" at the leaves


class PageDecoder:
    """Decodes a body whose records sit at ``records_path`` and whose paginator reads ``value_paths``.

    Build it with :meth:`for_paths`, which gives None when the paths cannot be expressed as one expected
    shape (a path that runs through the records or through another path's value).
    """

    def __init__(self, decoder: msgspec.json.Decoder[Any], convert: Callable[[Any], Any]) -> None:
        self._decoder = decoder
        self._convert = convert

    @classmethod
    def for_paths(cls, records_path: str, value_paths: Sequence[str], record_keys: Sequence[str]) -> PageDecoder | None:
        try:
            return cls._for_paths(records_path, value_paths, record_keys)
        except ValueError:  # a key msgspec cannot name a field after (one with '"', '\\' or a control character)
            return None

    @classmethod
    def _for_paths(
        cls, records_path: str, value_paths: Sequence[str], record_keys: Sequence[str]
    ) -> PageDecoder | None:
        record = record_type(record_keys)
        if records_path == "":
            if any(path != "" for path in value_paths):
                return None  # a bare list of records has no other paths
            records: Any = list[record]  # type: ignore[valid-type]
            return cls(msgspec.json.Decoder(records), lambda body: body)
        root = _Node()
        for path, leaf in [(records_path, "records"), *((p, "value") for p in value_paths)]:
            if path == "" or not _place(root, path.split("."), leaf):
                return None
        decoded = _struct_of(root, record, ["Body"])
        return cls(msgspec.json.Decoder(decoded), _to_document)

    def decode(self, body: bytes) -> Any:
        """The document: dicts along the paths, the records as :class:`Record` structs. Raises
        :class:`NotDecoded` when the body does not have the expected shape."""
        try:
            return self._convert(self._decoder.decode(body))
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:  # bytes that are not UTF-8
            raise NotDecoded(str(exc)) from None


def _place(node: _Node, parts: list[str], leaf: str) -> bool:
    """Put a path in the tree; False when it runs into another path's leaf or another one ends at it."""
    *parents, last = parts
    for part in parents:
        child = node.children.setdefault(part, _Node())
        if not isinstance(child, _Node):
            return False
        node = child
    existing = node.children.get(last)
    if existing is None:
        node.children[last] = leaf
        return True
    return existing == leaf == "value"  # the same value path twice (a total path that is also the next one)


def _struct_of(node: _Node, record: type[Record], names: list[str]) -> type[msgspec.Struct]:
    fields: list[tuple[str, Any, Any]] = []
    rename: dict[str, str] = {}
    for i, (key, child) in enumerate(node.children.items()):
        attr = f"f{i}"
        rename[attr] = key
        if child == "records":
            records: Any = list[record]  # type: ignore[valid-type]
            fields.append((attr, records, msgspec.NODEFAULT))  # required: a body without it is a fault
        elif child == "value":
            fields.append((attr, Any, UNSET))
        else:
            assert isinstance(child, _Node)
            inner = _struct_of(child, record, [*names, _identifier(key)])
            if _holds_records(child):  # on the way to the records: required too
                fields.append((attr, inner, msgspec.NODEFAULT))
            else:
                fields.append((attr, inner | msgspec.UnsetType, UNSET))
    return msgspec.defstruct("_".join(names), fields, rename=rename, gc=False, module=__name__)


def _holds_records(node: _Node) -> bool:
    return any(
        child == "records" or (isinstance(child, _Node) and _holds_records(child)) for child in node.children.values()
    )


def _identifier(key: str) -> str:
    text = "".join(c if c.isalnum() else "_" for c in key) or "_"
    return f"_{text}" if text[0].isdigit() or keyword.iskeyword(text) else text


def _to_document(value: Any) -> Any:
    """A decoded body struct as the dicts of the parsed JSON along its paths (an absent key left out)."""
    if isinstance(value, msgspec.Struct):
        out: dict[str, Any] = {}
        for attr, key in zip(value.__struct_fields__, value.__struct_encode_fields__, strict=True):
            item = getattr(value, attr)
            if item is not UNSET:
                out[key] = _to_document(item)
        return out
    if isinstance(value, list) and value and isinstance(value[0], Record):
        return value  # the records
    return _as_orjson(value)


def _as_orjson(value: Any) -> Any:
    """A value at one of the paginator's paths as ``orjson`` parses it (an integer beyond 64 bits a float)."""
    if type(value) in (list, dict) or (type(value) is int and not _ORJSON_INT_MIN <= value <= _ORJSON_INT_MAX):
        text = msgspec.json.encode(value)
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:  # a number no double holds, which orjson would refuse
            return value
    return value
