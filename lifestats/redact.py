"""Secrets never leave the process: credentials written into a URL are masked wherever it is shown or stored.

Two different needs:

- **Shown** (messages, logs, the report, the checkpoint's copy of ``api.url``): :func:`redact_url` masks
  ``user:password@`` and every query parameter whose *name* says it carries a secret.
- **Stored to be requested again** (the next URL of the ``next_url`` and ``link_header`` styles, kept in
  the checkpoint as the slice's position): :class:`Credentials` masks only what the user gave (the
  ``user:password@`` and secret parameters of ``api.url``, and the bearer token) wherever the API echoes
  it, and puts it back before the request. Everything else the API wrote into its next URL, a signature
  or a page token of its own included, is kept as given: without it the next page cannot be fetched.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Final
from urllib.parse import SplitResult, parse_qsl, quote, unquote, unquote_plus, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameter names that carry a secret, compared in lower case with everything but letters and
# digits left out ("API-Key", "api_key" and "apiKey" alike): these names exactly, any name that ends in
# "key", and any name that holds one of the parts below.
_SECRET_NAMES = frozenset({"auth", "oauth", "sig", "pass", "pwd", "authorization"})
_SECRET_PARTS = ("token", "secret", "passw", "signature", "credential", "session")
_USERINFO = re.compile(r"[^\s/@?#]+@")
# In a stored next URL, a masked value that is not api.url's parameter of the same name says whose it is:
# api.url's parameter NAME is "***(NAME)", the bearer token "***(LIFESTATS_API_TOKEN)".
_TOKEN = "LIFESTATS_API_TOKEN"
# api.url's N-th value written without a name (``?TOKEN``) is "***(~N)".
_BARE = "~"
_SEGMENT = "!"  # a marker's kind: a whole path segment (see Credentials._masked_segment)
# Credentials at least this long are masked wherever a message holds them (Credentials.scrub): a shorter
# value ("1", "id" of "?sort_key=id") is no secret worth the message it would garble ("http://***27.0.0.***").
SCRUBBED_LENGTH: Final = 6


def secret_param(name: str) -> bool:
    """Whether a query parameter of this name carries a secret."""
    plain = re.sub(r"[^a-z0-9]", "", name.lower())
    return plain in _SECRET_NAMES or plain.endswith("key") or any(part in plain for part in _SECRET_PARTS)


def redact_url(url: str) -> str:
    """``url`` with ``user:password@``, secret parameters (in the query, or written as ``;name=value`` in the
    path), values written without a name that may be credentials (``?TOKEN``, ``;TOKEN``) and the fragment
    masked; other text is kept as it is."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL urllib can split ("http://[::1/x"): mask what looks like credentials
        return _mask_loose(re.sub(r"//[^/@\s]*@", f"//{MASK}@", url))
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    elif not netloc and "@" in url:  # not a URL that urllib can split ("http//user:pw@host"): mask anyway
        return _mask_loose(_USERINFO.sub(f"{MASK}@", url, count=1))
    # Piece by piece, each kept as written unless masked: masking a masked URL changes nothing.
    query = _mask_bare_pieces(parts.query, "&") if parts.query else ""
    # A fragment is never sent: shown whole it can only leak (a bare "#token" names no parameter).
    path, fragment = _mask_pairs(_mask_path_params(parts.path)), MASK if parts.fragment else ""
    if netloc == parts.netloc and query == parts.query and path == parts.path and fragment == parts.fragment:
        return url  # nothing to mask: as given (rebuilding it would drop an empty "//", say)
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


# A name=value pair at the start of a text or after ? & ; or #.
_PAIR = re.compile(r"(?:(?<=^)|(?<=[?&;#]))([^=&;#?/\s]+)=([^&;#\s]*)")


def _mask_pairs(text: str) -> str:
    """``text`` with the value of every ``name=value`` pair whose name says it carries a secret masked."""

    def masked(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"{name}={MASK}" if secret_param(unquote_plus(name)) else match.group(0)

    return _PAIR.sub(masked, text) if "=" in text else text


def _mask_loose(text: str) -> str:
    """A URL that does not split, masked by its text: named secrets, and bare pieces of its path and query."""
    head, sep, query = text.partition("?")
    return _mask_pairs(_mask_path_params(head) + (sep + _mask_bare_pieces(query, "&") if sep else ""))


def _bare_secret(piece: str) -> bool:
    """Whether a value written without a name (``?TOKEN``, ``/events;TOKEN``) may be a credential: one
    with a digit or longer than a word. A flag such as ``?pretty`` or ``?include_deleted`` is kept."""
    return any(c.isdigit() for c in piece) or len(piece) > 24


def _mask_path_params(path: str) -> str:
    """``path`` with every ``;`` parameter of its segments masked that is a credential (:func:`_masked_piece`)."""
    if ";" not in path:
        return path
    segments = [segment.partition(";") for segment in path.split("/")]
    return "/".join(f"{head};{_mask_bare_pieces(params, ';')}" if sep else head for head, sep, params in segments)


def _mask_bare_pieces(text: str, separator: str) -> str:
    """Every piece masked that is a credential: a value written without a name, whole (:func:`_bare`), and
    the value of a ``name=value`` pair whose name says it holds a secret."""
    return separator.join(_masked_piece(piece) for piece in text.split(separator))


def _masked_piece(piece: str) -> str:
    if _bare(piece):
        return MASK
    name, _, value = piece.partition("=")
    return f"{name}={MASK}" if value and secret_param(unquote_plus(name)) else piece


def _bare(piece: str) -> bool:
    """A piece written without a name (``TOKEN``, or ``TOKEN=`` as a request carries it) that may be a
    credential: it holds a digit, is longer than a word, or is a word that names a secret (``?mytoken``)."""
    name, _, value = piece.partition("=")
    return bool(name) and not value and (_bare_secret(name) or secret_param(unquote_plus(name)))


def bare_values(url: str) -> list[str]:
    """The values written without a name that :func:`redact_url` masks (``;TOKEN`` in the path, ``?TOKEN``
    in the query), as written: what tells two such URLs apart (see :func:`url_values_digest`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    segments = [segment.partition(";")[2] for segment in parts.path.split("/") if ";" in segment]
    pieces = [piece for params in segments for piece in params.split(";")]
    pieces += parts.query.split("&") if parts.query else []
    return [piece.partition("=")[0] for piece in pieces if _bare(piece)]


def url_values_digest(url: str) -> str | None:
    """A digest of :func:`bare_values` (None when there are none), each read as a request carries it
    (``%20`` and ``+`` alike): kept beside the masked URL, it tells ``?v1`` from ``?v2`` without keeping
    either, should one be a credential. A slow one (scrypt, about 50 ms): a short value, a PIN say, cannot
    be read back from a checkpoint by trying every candidate in a moment."""
    values = bare_values(url)
    if not values:
        return None
    secret = json.dumps([unquote_plus(value) for value in values]).encode()  # one text per list of values
    return hashlib.scrypt(secret, salt=b"lifestats url values", n=2**14, r=8, p=1, dklen=12).hex()


def canonical_url(url: str) -> str:
    """A masked URL in one spelling of its query (``%20`` and ``+`` alike, a bare piece as ``piece=``), so
    that checkpoints written by versions that spelled it otherwise compare equal."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.query:
        return url
    query = urlencode(parse_qsl(parts.query, keep_blank_values=True), safe="*")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def redact_text(text: str, urls: list[str]) -> str:
    """``text`` with every occurrence of each of ``urls`` replaced by its redacted form."""
    for url in urls:
        if url and url in text:
            text = text.replace(url, redact_url(url))
    return text


class Credentials:
    """What the user gave that must not be stored: ``api.url``'s ``user:password@``, secret query
    parameters and values written without a name (``?TOKEN``, ``;TOKEN``), and the bearer token.
    :meth:`mask` takes them out of a URL the API gave wherever they appear in it (the userinfo, a query or
    path parameter with the same value, or the value alone), :meth:`unmask` puts them back; the rest of the
    URL stays byte for byte as the API wrote it. A path segment of a URL of the API's own origin (scheme,
    host and port of ``api.url``) that is one of them alone, spelled exactly as the user wrote it (the token
    as it is), is masked too, and put back so; one spelled otherwise, or in a URL of another origin, is
    kept as it is (putting it back byte for byte would need its spelling, which is the secret). A fragment
    (never sent) that holds one anywhere, the password of the userinfo included, is masked whole and stays
    so."""

    def __init__(self, api_url: str, token: str | None = None) -> None:
        try:
            parts = urlsplit(api_url)
        except ValueError:
            parts = urlsplit("")
        self._userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else None
        self._params: dict[str, str] = {}  # a secret parameter's name -> its raw value in api.url
        self._bare: list[str] = []  # api.url's values written without a name that may be credentials
        for piece, (name, value) in _pieces(parts.query):
            if value and secret_param(unquote_plus(name)):
                self._params.setdefault(unquote_plus(name), value)
            elif _bare(piece) and name not in self._bare:
                self._bare.append(name)
        for name in bare_values(urlunsplit(("", "", parts.path, "", ""))):  # ;TOKEN in the path
            if name not in self._bare:
                self._bare.append(name)
        self._token = token or None
        self._origin = _origin(parts)
        # Each credential as the user wrote it, in a fixed order (a stored segment names its place).
        spellings = [*self._params.values(), *self._bare]
        if self._userinfo is not None and ":" in self._userinfo:
            spellings.append(self._userinfo.partition(":")[2])  # the password
        if self._token is not None:
            spellings.append(self._token)
        self._spellings = [spelling for spelling in spellings if spelling]

    def mask(self, url: str) -> str:
        """``url`` without the user's credentials: what a checkpoint may keep."""
        parts = urlsplit(url)
        netloc = parts.netloc
        if self._userinfo is not None and netloc.rpartition("@")[0] == self._userinfo:
            netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
        pieces = []
        for piece, (name, value) in _pieces(parts.query):
            if not value and (index := self._bare_at(name)) is not None:  # a value without a name
                pieces.append(f"{MASK}({_BARE}{index})")
                continue
            marker = self._marker(name, value)
            pieces.append(piece if marker is None else f"{name}={marker}")
        query = "&".join(pieces)
        own = _origin(parts) == self._origin  # a credential is a whole segment of the API's own URLs only
        path = self._path(parts.path, self._masked_param, self._masked_segment if own else None)
        fragment = MASK if parts.fragment and self._holds_one(parts.fragment) else parts.fragment
        if netloc == parts.netloc and query == parts.query and path == parts.path and fragment == parts.fragment:
            return url
        return urlunsplit((parts.scheme, netloc, path, query, fragment))

    def unmask(self, url: str) -> str:
        """A URL from :meth:`mask` with the user's credentials back (a mask it cannot fill stays)."""
        parts = urlsplit(url)
        netloc = parts.netloc
        if netloc.startswith(f"{MASK}@") and self._userinfo is not None:
            netloc = f"{self._userinfo}@{netloc.rpartition('@')[2]}"
        pieces = []
        for piece, (name, value) in _pieces(parts.query):
            if value is None and (index := _bare_index(name)) is not None and index < len(self._bare):
                pieces.append(self._bare[index])
                continue
            raw = self._value(unquote_plus(name), value) if value is not None and value.startswith(MASK) else None
            pieces.append(piece if raw is None else f"{name}={raw}")
        query = "&".join(pieces)
        own = _origin(parts) == self._origin  # a credential goes back into a path of the API's own origin only
        path = self._path(parts.path, self._unmasked_param, self._unmasked_segment if own else None)
        if netloc == parts.netloc and query == parts.query and path == parts.path:
            return url
        return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))

    def _path(self, path: str, replace: Callable[[str], str | None], whole: Callable[[str], str | None] | None) -> str:
        """``path`` with each ``;`` parameter that ``replace`` maps, and each segment (before its parameters)
        that ``whole`` maps (to a marker, or back), replaced."""
        segments = []
        for segment in path.split("/"):
            head, *params = segment.split(";")
            head = (whole(head) if whole is not None else None) or head
            segments.append(";".join([head, *(replace(p) or p for p in params)]))
        return "/".join(segments)

    def _masked_segment(self, head: str) -> str | None:
        """The marker of a path segment spelled exactly as one of the user's credentials, else None."""
        if head in self._spellings:
            return f"{MASK}({_SEGMENT}{self._spellings.index(head)})"
        return None

    def _unmasked_segment(self, head: str) -> str | None:
        """The credential a segment's marker names, spelled as the user wrote it, else None."""
        prefix = f"{MASK}({_SEGMENT}"
        if head.startswith(prefix) and head.endswith(")") and head[len(prefix) : -1].isdigit():
            index = int(head[len(prefix) : -1])
            return self._spellings[index] if index < len(self._spellings) else None
        return None

    def scrub(self, text: str) -> str:
        """``text`` (a message) with every one of the user's credentials masked wherever it appears, in any
        spelling: an API that echoes the token in its body must not have it shown in the message that quotes
        the body."""
        variants = {v for raw in self._spellings for v in (raw, unquote(raw), unquote_plus(raw), quote(raw, safe=""))}
        for secret in sorted(variants, key=len, reverse=True):  # a longer spelling first: none is left half
            if len(secret) >= SCRUBBED_LENGTH and secret in text:
                text = text.replace(secret, MASK)
        return text

    def _holds_one(self, text: str) -> bool:
        """Whether ``text`` (a fragment) holds one of the user's credentials anywhere in it, in any spelling."""
        raws = self._spellings
        secrets = {unquote_plus(raw) for raw in raws} | {unquote(raw) for raw in raws} | set(raws)
        texts = {text, unquote(text), unquote_plus(text)}
        return any(secret and secret in plain for secret in secrets for plain in texts)

    def _bare_at(self, piece: str) -> int | None:
        """Which of api.url's values without a name ``piece`` is, read as a request carries it, if any."""
        plain = unquote_plus(piece)
        return next((i for i, bare in enumerate(self._bare) if unquote_plus(bare) == plain), None)

    def _masked_param(self, piece: str) -> str | None:
        """The masked form of a path parameter that holds a credential of the user's, else None."""
        name, sep, value = piece.partition("=")
        if sep and value:
            marker = self._marker(name, value)
            return None if marker is None else f"{name}={marker}"
        index = self._bare_at(name)
        return None if index is None else f"{MASK}({_BARE}{index})"

    def _unmasked_param(self, piece: str) -> str | None:
        """A path parameter from :meth:`_masked_param` with the credential back, else None."""
        name, sep, value = piece.partition("=")
        if sep and value.startswith(MASK):
            raw = self._value(unquote_plus(name), value)
            return None if raw is None else f"{name}={raw}"
        index = _bare_index(piece)
        return self._bare[index] if index is not None and index < len(self._bare) else None

    def _marker(self, name: str, value: str | None) -> str | None:
        if not value:
            return None
        plain = unquote_plus(value)
        for own, raw in self._params.items():
            if unquote_plus(raw) == plain:
                return MASK if own == unquote_plus(name) else f"{MASK}({quote(own, safe='')})"
        if self._token is not None and plain == self._token:
            return f"{MASK}({_TOKEN})"
        for index, bare in enumerate(self._bare):  # one of api.url's values without a name, named here
            if unquote_plus(bare) == plain:
                return f"{MASK}({_BARE}{index})"
        return None

    def _value(self, name: str, marker: str) -> str | None:
        if marker == MASK:
            return self._params.get(name)
        if marker.startswith(f"{MASK}(") and marker.endswith(")"):
            whose = unquote(marker[len(MASK) + 1 : -1])
            if whose == _TOKEN:
                return None if self._token is None else quote(self._token, safe="")
            if (index := _bare_index(marker)) is not None:
                return self._bare[index] if index < len(self._bare) else None
            return self._params.get(whose)
        return None


def _origin(parts: SplitResult) -> tuple[str, str | None, int | None]:
    """A URL's scheme, host and port (the scheme's default when it names none); a port that does not parse
    is no origin of the API's."""
    try:
        port = parts.port
    except ValueError:
        return ("", None, -1)
    return (parts.scheme.lower(), parts.hostname, port or _DEFAULT_PORTS.get(parts.scheme.lower()))


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _bare_index(piece: str) -> int | None:
    """The index in a masked value without a name, ``***(~N)``; None for any other piece."""
    prefix = f"{MASK}({_BARE}"
    if piece.startswith(prefix) and piece.endswith(")") and piece[len(prefix) : -1].isdigit():
        return int(piece[len(prefix) : -1])
    return None


def _pieces(query: str) -> list[tuple[str, tuple[str, str | None]]]:
    """The raw ``name=value`` pieces of a query, each with its raw name and value (None: no "=")."""
    if not query:
        return []
    out: list[tuple[str, tuple[str, str | None]]] = []
    for piece in query.split("&"):
        name, sep, value = piece.partition("=")
        out.append((piece, (name, value if sep else None)))
    return out
