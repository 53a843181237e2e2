"""``wsgi-logstream check URL``: does a stream arrive live, and if not, which hop holds it?

A stream can be perfect at the app and still reach the browser all at once at
the end: a reverse proxy that buffers responses, a compression middleware, a
CDN. ``check`` asks the URL for the probe (``?probe=1``, see
:mod:`wsgi_logstream.probe`): lines sent ``interval`` seconds apart, each
stamped with the server's clock, with the same first write, content type and
headers as a real stream of that format. It reads them like a browser would
(asking for gzip, decoding as it goes) and compares, for each line, when it
arrived with when it was sent. Clocks need not agree: what counts is how much
later than the *quickest* line each one arrived (its "held" time).

Three parts: :mod:`.client` reads and times, :mod:`.verdict` names the pattern
and the culprit, :mod:`.report` prints it all for a terminal.
"""

from __future__ import annotations

from .client import Arrival, Reading, probe_url, read_probe
from .report import report, run_check
from .verdict import Culprit, Verdict, analyse, culprits

__all__ = [
    "Arrival",
    "Culprit",
    "Reading",
    "Verdict",
    "analyse",
    "culprits",
    "probe_url",
    "read_probe",
    "report",
    "run_check",
]
