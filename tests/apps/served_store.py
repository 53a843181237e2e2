"""The plain-data test store (``dict_store.py``), served on a TCP port so that several processes share it.

``python tests/apps/served_store.py PORT`` serves one store until it is
killed; :func:`connect` gives any process (a gunicorn worker, a Celery or RQ
worker) a :class:`~tests.apps.dict_store.DictStore` on it. It has no lease,
so it proves what runners need of the store interface and nothing about
liveness: the Redis store's tests do that.
"""

from __future__ import annotations

import sys
from multiprocessing.managers import BaseManager
from typing import Any

from tests.apps.dict_store import Backend, DictStore

AUTHKEY = b"wsgi-logstream-tests"


class _Server(BaseManager):
    pass


class _Client(BaseManager):
    pass


_Client.register("backend")


class ServedStore(DictStore):
    """A :class:`DictStore` whose backend is the one a served-store process holds."""

    def __init__(self, port: int) -> None:  # no super().__init__: the manager is elsewhere
        client = _Client(address=("127.0.0.1", port), authkey=AUTHKEY)
        client.connect()
        self._manager: Any = client
        self._backend: Any = client.backend()  # type: ignore[attr-defined]

    def shutdown(self) -> None:
        self._backend = None


def connect(url: str) -> ServedStore:
    """A store on ``dict://127.0.0.1:PORT``."""
    return ServedStore(int(url.rsplit(":", 1)[1]))


def serve(port: int) -> None:
    backend = Backend(10_000, 3600.0, 100)
    _Server.register("backend", callable=lambda: backend)
    server = _Server(address=("127.0.0.1", port), authkey=AUTHKEY).get_server()
    server.serve_forever()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    serve(int(sys.argv[1]))
