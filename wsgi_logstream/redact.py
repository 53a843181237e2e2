"""Redaction: replacing secrets in every line before it leaves the process.

``redactor(spec)`` turns what a user passed as ``redact`` (patterns, a
callable, ``True`` for :data:`DEFAULT_REDACTIONS`) into one ``str -> str``
callable, applied in the producer so that no format, history or viewer can
show what it matched.

A pattern sees one string at a time, but some secrets span records: ``cat
id_rsa`` logs a PEM private key one line per record, and no line of its body
matches anything on its own. :func:`record_redactor` therefore gives each
stream its own :class:`RecordRedactor`, which remembers that a ``-----BEGIN
... PRIVATE KEY-----`` line opened a key and hides every record after it, up
to the matching ``-----END ... PRIVATE KEY-----``, whatever that takes.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Callable, Iterable, Pattern, Union

__all__ = ["DEFAULT_REDACTIONS", "REDACTED", "RecordRedactor", "RedactSpec", "Redactor", "record_redactor", "redactor"]

_PEM_PATTERN = r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----(?P<secret>[A-Za-z0-9+/=\s]+)"
_PEM_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")

#: Patterns for common secrets. Off by default; pass ``redact=True`` (or this
#: tuple, extended) to replace what they match with ``[redacted]``. Where a
#: pattern has a group named ``secret`` only that group is replaced, so the
#: key that names it stays readable (``password=[redacted]``). Each is linear
#: in the length of the line, so a 10 MB line is safe: no nested repetition,
#: and no pattern starts a match whose scan can overlap the scan of a match
#: tried at a later position (the JWT pattern starts only where a run of its
#: characters starts, or ``eyJeyJeyJ…`` would be scanned once per ``eyJ``:
#: quadratic). Each starts with a literal or a one-character lookahead so the
#: engine can skip ahead (about 10 µs for a 100-character line). With the PEM
#: pattern in the set, a stream also hides a key printed one line per record.
DEFAULT_REDACTIONS: tuple[str, ...] = (
    # Authorization: Bearer x / Basic x / any scheme, and a bare "Bearer x".
    r"(?i)(?=a)authorization[\"']?\s*[:=]\s*[\"']?(?:[A-Za-z]+\s+)?(?P<secret>[^\s\"',;]+)",
    r"(?i)(?=b)bearer\s+(?P<secret>[A-Za-z0-9\-._~+/]{8,}=*)",
    # key=value, key: value, "key": "value", also inside longer names (DB_PASSWORD, client_secret).
    r"(?i)(?=[pstack])(?:pass(?:word|wd)|pwd|secret|token|(?:api|access|private)[_-]?key|credentials?)"
    r"[\"']?\s*[:=]\s*[\"']?(?P<secret>[^\s\"'&,;]+)",
    r"(?i)(?=[sc])(?:set-)?cookie\s*:\s*(?P<secret>[^\r\n]+)",
    # Credentials in a URL: scheme://user:password@host keeps the user.
    r"://[^/\s:@]+:(?P<secret>[^/\s@]+)@",
    # Well-known token shapes: AWS key ids, GitHub, Slack, Stripe, Google, JWTs.
    r"A[KS]IA[0-9A-Z]{16}",
    r"gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}",
    r"xox[abposr]-[A-Za-z0-9-]{10,}",
    r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
    r"AIza[0-9A-Za-z_\-]{35}",
    r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
    # The body of a PEM private key block (and, per stream, the records between its BEGIN and END lines).
    _PEM_PATTERN,
)

REDACTED = "[redacted]"

Redactor = Callable[[str], str]
RedactSpec = Union[None, bool, str, Pattern[str], Redactor, Iterable[Union[str, Pattern[str]]]]


def redactor(value: Any) -> Redactor | None:
    if value is None or value is False:
        return None
    if value is True:
        value = DEFAULT_REDACTIONS
    if callable(value) and not isinstance(value, (str, re.Pattern)):
        return value  # type: ignore[no-any-return]
    if isinstance(value, (str, re.Pattern)):
        value = (value,)
    try:
        patterns = tuple(value)
    except TypeError:
        raise TypeError(f"redact must be patterns, a callable or True, got {value!r}") from None
    compiled: list[Pattern[str]] = []
    for pattern in patterns:
        if isinstance(pattern, re.Pattern):
            if not isinstance(pattern.pattern, str):
                raise TypeError(f"redact patterns must be str patterns, got {pattern!r}")
            compiled.append(pattern)
        elif isinstance(pattern, str):
            try:
                compiled.append(re.compile(pattern))
            except re.error as exc:
                raise ValueError(f"redact pattern {pattern!r} is not a valid regular expression: {exc}") from None
        else:
            raise TypeError(f"redact patterns must be strings or compiled patterns, got {pattern!r}")
    if not compiled:
        return None
    return _PatternRedactor(tuple(compiled))


class _PatternRedactor:
    """Replaces every match of each pattern (or its ``secret`` group) with ``[redacted]``."""

    def __init__(self, patterns: tuple[Pattern[str], ...]) -> None:
        self.patterns = patterns

    def __call__(self, text: str) -> str:
        for pattern in self.patterns:
            text = pattern.sub(_replace_secret if "secret" in pattern.groupindex else REDACTED, text)
        return text


def _replace_secret(match: re.Match[str]) -> str:
    start, end = match.span("secret")
    if start < 0:  # the group did not take part in this match
        return REDACTED
    whole = match.string
    return whole[match.start() : start] + REDACTED + whole[end : match.end()]


def record_redactor(redact: Redactor | None) -> RecordRedactor | None:
    """A fresh :class:`RecordRedactor` for one stream, or None if ``redact`` is None.

    Fresh per stream because it has state: a key opened in one stream must not
    hide (or be closed by) another stream's records. Keys that span records are
    followed when ``redact`` came from patterns that include the PEM pattern of
    :data:`DEFAULT_REDACTIONS` (``redact=True``, ``--redact default``); a
    callable given as ``redact`` is applied as it is, record by record.
    """
    if redact is None:
        return None
    blocks = isinstance(redact, _PatternRedactor) and any(p.pattern == _PEM_PATTERN for p in redact.patterns)
    return RecordRedactor(redact, blocks=blocks)


class RecordRedactor:
    """Redacts one stream's records in order, hiding PEM private keys that span records.

    After a record that holds a ``-----BEGIN ... PRIVATE KEY-----`` line with no
    matching END after it, every record is hidden (its message becomes
    ``[redacted]``; the formatter's prefix, such as the time and level, stays)
    until one holds the ``-----END ... PRIVATE KEY-----`` line. The BEGIN and
    END lines themselves stay, so a reader sees that a key was there.

    A key that never ends keeps the rest of the stream hidden. A bound (say, 200
    records) would leak the body of a key whose END line was lost or mangled, or
    anything longer than the bound; hiding too much shows as ``[redacted]``
    lines a reader notices, hiding too little cannot be undone.

    Records may come from several threads; the open/closed state changes under
    a lock so that no change is lost. Records without ``-----BEGIN`` while no key
    is open take no lock.
    """

    __slots__ = ("_blocks", "_lock", "_open", "_redact")

    def __init__(self, redact: Redactor, *, blocks: bool) -> None:
        self._redact = redact
        self._blocks = blocks
        self._open = False
        self._lock = threading.Lock()

    def __call__(self, text: str) -> str:
        """``text`` through the patterns alone (logger names, progress messages, errors)."""
        return self._redact(text)

    def record(self, line: str, message: str) -> tuple[str, str]:
        """The record's formatted ``line`` and its ``message``, redacted, in the order the stream logs them."""
        if self._blocks and (self._open or "-----BEGIN" in line or "-----BEGIN" in message):
            with self._lock:
                line, message = self._hide_blocks(line, message)
        return self._redact(line), self._redact(message)

    def _hide_blocks(self, line: str, message: str) -> tuple[str, str]:
        opened = self._open
        hidden_message, open_after_message = _hide_blocks(message, opened)
        # What the formatter put before the message (time, level, name) is not
        # the record's content: it stays. Everything from the message on is content.
        at = line.find(message)
        if at >= 0:
            rest, self._open = _hide_blocks(line[at + len(message) :], open_after_message)
            return line[:at] + hidden_message + rest, hidden_message
        hidden_line, open_after_line = _hide_blocks(line, opened)
        self._open = open_after_line or open_after_message
        return hidden_line, hidden_message


def _hide_blocks(text: str, opened: bool) -> tuple[str, bool]:
    """``text`` with what lies inside PEM private key blocks replaced, and whether one is open at its end."""
    parts: list[str] = []
    pos = 0
    while True:
        if opened:
            end = _PEM_END.search(text, pos)
            stop = len(text) if end is None else end.start()
            inside = text[pos:stop]
            parts.append(REDACTED if inside.strip() else inside)
            if end is None:
                return "".join(parts), True
            parts.append(end.group())
            pos, opened = end.end(), False
        else:
            begin = _PEM_BEGIN.search(text, pos)
            if begin is None:
                parts.append(text[pos:])
                return "".join(parts), False
            parts.append(text[pos : begin.end()])
            pos, opened = begin.end(), True
