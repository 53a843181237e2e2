"""Redaction: replacing secrets in every line before it leaves the process.

``redactor(spec)`` turns what a user passed as ``redact`` (patterns, a
callable, ``True`` for :data:`DEFAULT_REDACTIONS`) into one ``str -> str``
callable, applied in the producer so that no format, history or viewer can
show what it matched.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Pattern, Union

__all__ = ["DEFAULT_REDACTIONS", "REDACTED", "RedactSpec", "Redactor", "redactor"]

#: Patterns for common secrets. Off by default; pass ``redact=True`` (or this
#: tuple, extended) to replace what they match with ``[redacted]``. Where a
#: pattern has a group named ``secret`` only that group is replaced, so the
#: key that names it stays readable (``password=[redacted]``). Each is linear
#: in the length of the line (no nested repetition), so a 10 MB line is safe;
#: each starts with a literal or a one-character lookahead so the regular
#: expression engine can skip ahead (about 10 µs for a 100-character line).
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
    r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
    # The body of a PEM private key block.
    r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----(?P<secret>[A-Za-z0-9+/=\s]+)",
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
