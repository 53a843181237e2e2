"""A TCP proxy a test can kill: ``python tests/apps/tcp_proxy.py LISTEN_PORT UPSTREAM_PORT``.

It forwards every connection to ``127.0.0.1:UPSTREAM_PORT`` byte for byte and
knows nothing of HTTP. A test runs it as a :class:`servers.Program` and kills
it (``SIGKILL``) to cut every connection through it at once, as a network blip
or a restarted load balancer would; started again on the same port, it lets
clients back in.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _serve(listen: int, upstream: int) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, up_writer), _pipe(up_reader, client_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", listen, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1]), int(sys.argv[2])))
