"""The ``wsgi-logstream`` command (``python -m wsgi_logstream``).

Five subcommands, one idea: whatever you want to watch becomes a job whose
log any number of people can open in a browser (or ``curl -N``), leave and
come back to:

* ``run -- CMD ARGS``: a command, each line it prints a record;
* ``tail FILE...``: files, followed like ``tail -F``;
* ``serve MODULE:CALLABLE``: a Python callable, its ``logging`` the log;
* ``demo`` (the default): the demo site;
* ``check URL``: reads the probe through every hop to a stream and says
  whether lines arrive live, and if not who holds them.

One module per concern: :mod:`.parse` (arguments, exit statuses),
:mod:`.targets` (what runs: the target import, the jobs app and its options),
:mod:`.sites` (what each subcommand serves), :mod:`.serve` (token, allowed
hosts, the wsgiref server), :mod:`.arbiter` (``--server gunicorn``),
:mod:`.lifecycle` (signals and the stop), :mod:`.jobview` (all the command
reads of a job), :mod:`.terminal` (what it prints), :mod:`.check` (the check).
``--help`` lists the options, examples and exit statuses.
"""

from __future__ import annotations

import sys
from typing import Sequence

from .parse import UsageError, build_parser
from .targets import make_jobs

__all__ = ["main", "make_jobs"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see ``--help``)."""
    from .sites import SUBCOMMANDS

    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help", "--version")):
        args_list.insert(0, "demo")
    args = build_parser().parse_args(args_list)
    try:
        return int(SUBCOMMANDS[args.subcommand](args))
    except UsageError as error:
        print(f"wsgi-logstream: error: {error}", file=sys.stderr)
        return error.exit_code
