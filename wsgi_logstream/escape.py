"""What makes a string safe on the wire: control characters shown, forged lines escaped, JSON that parses.

Shared by the wire formats (:mod:`.formats`) and the log-record renderers they
are built on (:mod:`.records`); the rules per format are in :mod:`.formats`.
"""

from __future__ import annotations

import json
import math
import re
import time
from json.encoder import encode_basestring as quote  # type: ignore[attr-defined]
from typing import Any

__all__ = ["clean", "dash_escaped", "finite", "iso", "json_text", "one_line", "quote", "split_lines", "utf8", "visible"]

# C0 controls except TAB and LF, DEL, and C1 controls.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_OR_SGR = re.compile("\x1b\\[[0-9;]*m|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NEWLINES = re.compile("\r\n?")
_SPLIT = re.compile("\r\n|\r|\n")
# Where a line that is not the library's own would start with "--": at a line
# start (after LF, or U+2028/U+2029, which str.splitlines and some viewers
# break on), after any colour sequences (a terminal shows "\x1b[0m--" as "--").
_DASH_START = re.compile("(?:^|(?<=[\n\u2028\u2029]))(?=(?:\x1b\\[[0-9;]*m)*--)")
_LINE_BREAKS = re.compile("\r\n|[\r\n\u2028\u2029]")


def dash_escaped(text: str) -> str:
    """``text`` (already :func:`visible`) with ``- `` before each line that would start with ``--``."""
    return _DASH_START.sub("- ", text) if "--" in text else text


def one_line(text: str) -> str:
    """``text`` with its line breaks shown as ``␤``, so it cannot end the line it is on."""
    return _LINE_BREAKS.sub("\u2424", text)


def _picture(match: re.Match[str]) -> str:
    char = match.group()
    if len(char) > 1:
        return char  # an SGR colour sequence kept on purpose
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # U+2400 CONTROL PICTURES: ␀ ␁ … ␛ …
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"\\x{code:02x}"  # C1 controls have no pictures


def visible(text: str, *, keep_sgr: bool = False) -> str:
    """``text`` with CR/CRLF as LF and other control characters made visible."""
    if text.isprintable():
        # Nothing to do (most lines): no character of category Cc, and so none the patterns
        # below match. One pass in C, about a tenth of what the pattern's search costs.
        return text
    if "\r" in text:
        text = _NEWLINES.sub("\n", text)
    return (_CONTROL_OR_SGR if keep_sgr else _CONTROL).sub(_picture, text)


def utf8(text: str) -> bytes:
    # Lone surrogates (bytes a subprocess could not decode) become \udcXX text.
    return text.encode("utf-8", "backslashreplace")


def clean(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def finite(number: float | None) -> float | None:
    # NaN and infinities are not JSON: json.dumps would write NaN, which strict
    # parsers (JSON.parse) reject, breaking the whole line.
    return number if number is not None and math.isfinite(number) else None


_second: tuple[int, str] = (-1, "")  # the last whole second formatted by iso(): records come in runs


def iso(epoch: float) -> str | None:
    """``epoch`` as ISO 8601 in UTC with microseconds, ``2026-11-30T21:54:31.123456+00:00`` (None if no such time).

    With its offset, so a reader in any time zone (the page, a script) knows
    which instant it is without knowing the server's zone.
    """
    global _second
    if not math.isfinite(epoch):
        return None
    whole = math.floor(epoch)
    micro = round((epoch - whole) * 1e6)
    if micro == 1_000_000:
        whole, micro = whole + 1, 0
    cached = _second
    if cached[0] != whole:
        try:
            cached = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
        except (OverflowError, OSError, ValueError):
            return None
        _second = cached
    return f"{cached[1]}.{micro:06d}+00:00"


def json_text(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def split_lines(text: str) -> list[str]:
    """``text`` split on CR, LF and CRLF (an SSE field's value cannot hold any of them)."""
    return _SPLIT.split(text)
