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

import re
from urllib.parse import parse_qsl, quote, unquote, unquote_plus, urlencode, urlsplit, urlunsplit

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
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(secret_param(k) for k, _ in pairs):
            query = urlencode([(k, MASK if secret_param(k) else v) for k, v in pairs], safe="*")
        query = _mask_bare(query, "&")
    # A fragment is never sent: shown whole it can only leak (a bare "#token" names no parameter).
    path, fragment = _mask_bare(_mask_pairs(parts.path), ";"), MASK if parts.fragment else ""
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
    head, sep, query = _mask_pairs(text).partition("?")
    return _mask_bare(head, ";") + (sep + _mask_bare(query, "&") if sep else "")


def _bare_secret(piece: str) -> bool:
    """Whether a value written without a name (``?TOKEN``, ``/events;TOKEN``) may be a credential: one
    with a digit or longer than a word. A flag such as ``?pretty`` or ``?include_deleted`` is kept."""
    return any(c.isdigit() for c in piece) or len(piece) > 24


def _mask_bare(text: str, separator: str) -> str:
    """``text`` (a query split at "&", or a path whose segments carry parameters after ";") with every
    piece that has no "=" and may be a credential masked: no name says whether it is one."""
    if separator == ";":
        return "/".join(_mask_bare_segment(segment) for segment in text.split("/")) if ";" in text else text
    return _mask_bare_pieces(text, separator)


def _mask_bare_segment(segment: str) -> str:
    head, sep, params = segment.partition(";")
    return f"{head};{_mask_bare_pieces(params, ';')}" if sep else segment


def _mask_bare_pieces(text: str, separator: str) -> str:
    pieces = text.split(separator)
    masked = [MASK if _bare(piece) else piece for piece in pieces]
    return separator.join(masked)


def _bare(piece: str) -> bool:
    """A piece written without a name (``TOKEN``, or ``TOKEN=`` as a request carries it) that may be a credential."""
    name, _, value = piece.partition("=")
    return bool(name) and not value and _bare_secret(name)


def redact_text(text: str, urls: list[str]) -> str:
    """``text`` with every occurrence of each of ``urls`` replaced by its redacted form."""
    for url in urls:
        if url and url in text:
            text = text.replace(url, redact_url(url))
    return text


class Credentials:
    """What the user gave that must not be stored: ``api.url``'s ``user:password@`` and secret query
    parameters, and the bearer token. :meth:`mask` takes them out of a URL the API gave wherever they
    appear in it (the userinfo, or a parameter with the same value), :meth:`unmask` puts them back; the
    rest of the URL stays byte for byte as the API wrote it."""

    def __init__(self, api_url: str, token: str | None = None) -> None:
        try:
            parts = urlsplit(api_url)
        except ValueError:
            parts = urlsplit("")
        self._userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else None
        self._params: dict[str, str] = {}  # a secret parameter's name -> its raw value in api.url
        for _, (name, value) in _pieces(parts.query):
            if value and secret_param(unquote_plus(name)):
                self._params.setdefault(unquote_plus(name), value)
        self._token = token or None

    def mask(self, url: str) -> str:
        """``url`` without the user's credentials: what a checkpoint may keep."""
        parts = urlsplit(url)
        netloc = parts.netloc
        if self._userinfo is not None and netloc.rpartition("@")[0] == self._userinfo:
            netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
        query = "&".join(
            piece if marker is None else f"{name}={marker}"
            for piece, name, marker in ((p, n, self._marker(n, v)) for p, (n, v) in _pieces(parts.query))
        )
        if netloc == parts.netloc and query == parts.query:
            return url
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

    def unmask(self, url: str) -> str:
        """A URL from :meth:`mask` with the user's credentials back (a mask it cannot fill stays)."""
        parts = urlsplit(url)
        netloc = parts.netloc
        if netloc.startswith(f"{MASK}@") and self._userinfo is not None:
            netloc = f"{self._userinfo}@{netloc.rpartition('@')[2]}"
        pieces = []
        for piece, (name, value) in _pieces(parts.query):
            raw = self._value(unquote_plus(name), value) if value is not None and value.startswith(MASK) else None
            pieces.append(piece if raw is None else f"{name}={raw}")
        query = "&".join(pieces)
        if netloc == parts.netloc and query == parts.query:
            return url
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

    def _marker(self, name: str, value: str | None) -> str | None:
        if not value:
            return None
        plain = unquote_plus(value)
        for own, raw in self._params.items():
            if unquote_plus(raw) == plain:
                return MASK if own == unquote_plus(name) else f"{MASK}({quote(own, safe='')})"
        if self._token is not None and plain == self._token:
            return f"{MASK}({_TOKEN})"
        return None

    def _value(self, name: str, marker: str) -> str | None:
        if marker == MASK:
            return self._params.get(name)
        if marker.startswith(f"{MASK}(") and marker.endswith(")"):
            whose = unquote(marker[len(MASK) + 1 : -1])
            if whose == _TOKEN:
                return None if self._token is None else quote(self._token, safe="")
            return self._params.get(whose)
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
