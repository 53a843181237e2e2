"""Cross-site request guard: may a browser request from another origin start, cancel or run something here?

A page on any site can make a visitor's browser send a form ``POST`` or load a
URL as an ``<img>``: it cannot read the answer, but the request still starts a
job, cancels one, or runs a plain stream's target. Browsers say where such a
request comes from, and :func:`cross_site_refusal` decides from that alone; it
reads the environ and changes nothing, so the request pipeline calls it for the
requests that start, cancel or run something (never for one that only views).

How it decides, in order:

1. Fetch Metadata (``Sec-Fetch-Site``, sent by every current browser):
   ``same-origin`` and ``none`` (typed, bookmarked, opened from another
   program) are allowed. ``cross-site`` and ``same-site`` are refused unless
   the request's ``Origin`` is one of ``allowed_origins``: *same-site* is not
   *same-origin* (every port of ``127.0.0.1``, every subdomain of a site, is the
   same site), and another origin is another origin. An unknown value is
   refused unless ``Origin`` is this server's own origin or an allowed one.
2. Without Fetch Metadata (older browsers): ``Origin``, compared with this
   server's own origin, ``scheme://host:port`` from ``wsgi.url_scheme`` and
   ``Host`` (or ``SERVER_NAME``/``SERVER_PORT``). ``Origin: null`` (a sandboxed
   frame, a ``data:`` page, some redirects) counts as cross-site.
3. Neither header: not a browser acting for a page (``curl``, scripts, the
   command's own ``check``), allowed.

Subresource loads (``Sec-Fetch-Mode: no-cors`` with ``Sec-Fetch-Dest: image``,
``script``, ...) need no rule of their own: from another site they carry
``Sec-Fetch-Site: cross-site`` or ``same-site`` and are refused by rule 1 (they
carry no ``Origin``, so ``allowed_origins`` cannot admit them either); from the
same origin they are the site's own pages.

Behind a proxy that rewrites ``Host``, the fallback of rule 2 compares with the
proxy's upstream name: add the public origin to ``allowed_origins`` (or let the
proxy pass ``Host`` through) for browsers without Fetch Metadata.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

__all__ = ["cross_site_refusal", "normalise_origins"]

_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
# scheme://host[:port]: host a name, an IPv4 address or a bracketed IPv6 address.
_ORIGIN = re.compile(r"([a-z][a-z0-9+.-]*)://(\[[0-9a-f:.]+\]|[a-z0-9._~%!$&'()*+,;=-]+)(?::([0-9]{1,5}))?")
_HOST = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9._~%!$&'()*+,;=-]+)(?::([0-9]{0,5}))?")


def _origin(scheme: str, host: str, port: str | None) -> str:
    if port is not None:
        port = port.lstrip("0") or "0"
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _parse_origin(value: str) -> str | None:
    """``value`` as a canonical origin (lower case, no default port), or None if it is not one."""
    match = _ORIGIN.fullmatch(value.strip().lower())
    if match is None:
        return None
    scheme, host, port = match.groups()
    if port is not None and int(port) > 65535:
        return None
    return _origin(scheme, host, port)


def _own_origin(environ: Mapping[str, Any]) -> str | None:
    """This server's origin as the client addressed it, or None if the environ does not say."""
    scheme = str(environ.get("wsgi.url_scheme") or "http").lower()
    host_header = environ.get("HTTP_HOST")
    if host_header:
        match = _HOST.fullmatch(str(host_header).strip().lower())
        if match is None:
            return None
        host, port = match.groups()
        return _origin(scheme, host, port or None)
    name = environ.get("SERVER_NAME")
    if not name:
        return None
    port = environ.get("SERVER_PORT")
    return _origin(scheme, str(name).lower(), str(port) if port else None)


def _admitted(origin: str | None, allowed_origins: frozenset[str], own: str | None) -> bool:
    if origin is None:
        return False
    canonical = _parse_origin(origin)
    return canonical is not None and (canonical in allowed_origins or canonical == own)


def cross_site_refusal(environ: Mapping[str, Any], *, allowed_origins: frozenset[str] = frozenset()) -> str | None:
    """A short reason to refuse ``environ`` (a 403) if a browser sent it for a page of another origin, else None.

    ``allowed_origins`` holds canonical origins, as :func:`normalise_origins`
    returns them. The caller applies this to requests that start, cancel or run
    something; a request that only reads is for the browser's same-origin policy.
    """
    origin = environ.get("HTTP_ORIGIN")
    origin = None if origin is None else str(origin)
    site = str(environ.get("HTTP_SEC_FETCH_SITE") or "").strip().lower()
    if site in ("same-origin", "none"):
        return None
    if site in ("cross-site", "same-site"):
        if origin is not None and _admitted(origin, allowed_origins, None):
            return None
        return f"refused: a {site} request from another origin (Sec-Fetch-Site: {site}) may not start, cancel or run anything here"
    own = _own_origin(environ)
    if site:
        if _admitted(origin, allowed_origins, own):
            return None
        return (
            "refused: a browser request of unknown origin (Sec-Fetch-Site) may not start, cancel or run anything here"
        )
    if origin is None:
        return None  # no browser acting for a page: curl, scripts
    if origin.strip().lower() == "null":
        return "refused: a request from an opaque origin (Origin: null) may not start, cancel or run anything here"
    if _admitted(origin, allowed_origins, own):
        return None
    return "refused: a request from another origin (Origin) may not start, cancel or run anything here"


def normalise_origins(value: Any) -> frozenset[str]:
    """The ``allowed_origins`` option, checked: origins (``scheme://host[:port]``) in canonical form.

    ``None`` means none. A single string is one origin; a trailing ``/`` is
    allowed (it is how origins get pasted). Canonical: lower case, without the
    scheme's default port (``https://a.example:443`` is ``https://a.example``),
    since browsers send ``Origin`` that way; Schemes other than http and https, paths, ``*`` and
    ``null`` are refused: each would admit more, or other, than its author meant.
    """
    if value is None:
        return frozenset()
    if isinstance(value, str):
        value = (value,)
    try:
        items: Iterable[Any] = tuple(value)
    except TypeError:
        raise TypeError(f"allowed_origins must be a list of origins (scheme://host[:port]), got {value!r}") from None
    origins: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"allowed_origins must hold strings (scheme://host[:port]), got {item!r}")
        text = item.strip()
        canonical = _parse_origin(text[:-1] if text.endswith("/") else text)
        if canonical is None or not canonical.startswith(("http://", "https://")):
            raise ValueError(
                f"allowed_origins: {item!r} is not an origin: http(s)://host[:port], no path, no '*', not 'null'"
            )
        origins.add(canonical)
    return frozenset(origins)
