"""The ``wsgi-logstream`` command (``python -m wsgi_logstream``)."""

from __future__ import annotations

import argparse
import sys
from wsgiref.simple_server import make_server

from . import __version__
from .demo import make_app
from .server import QuietHandler, ThreadingWSGIServer

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wsgi-logstream", description="Watch a log in a browser as it happens.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    with make_server(args.host, args.port, make_app(), ThreadingWSGIServer, QuietHandler) as server:
        print(
            f"wsgi_logstream demo on http://{args.host}:{server.server_address[1]}/  (Ctrl-C to stop)",
            flush=True,
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
    return 0
