"""A command that draws a progress bar with CR, as tqdm does: ``python progress_bar.py GATE BEFORE AFTER PAUSE``.

It prints BEFORE, draws the bar's first state (``  0%|          | 0/100``) on stderr, then waits until the file
GATE exists: the test makes it once it has seen that state, which proves the state was sent without waiting for
a newline. Then it draws 1/100 to 100/100, PAUSE seconds apart, ends the bar with a newline and prints AFTER.
Tests of the server (``test_carriage.py``) and of the page (``test_viewer_sections.py``) run it with
:func:`command`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from wsgi_logstream.command import Command


def command(gate: Path, before: str, after: str, pause: float) -> Command:
    """This script as a :class:`Command` run by the test's own Python."""
    return Command([sys.executable, str(Path(__file__).resolve()), str(gate), before, after, str(pause)])


def main(gate: str, before: str, after: str, pause: str) -> None:
    print(before, flush=True)
    sys.stderr.write("\r  0%|          | 0/100")
    sys.stderr.flush()
    while not os.path.exists(gate):  # the test lets it go once it has seen the first state
        time.sleep(0.01)
    for n in range(1, 101):
        bar = "#" * (n // 10)
        sys.stderr.write(f"\r{n:3d}%|{bar:<10}| {n}/100")
        sys.stderr.flush()
        time.sleep(float(pause))
    sys.stderr.write("\n")
    print(after, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
