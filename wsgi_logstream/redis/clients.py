"""The store's Redis client, on one server or on Redis Cluster, and the extra connections its listener holds.

:func:`make_client` turns what :class:`~wsgi_logstream.redis.RedisStore` was
given into a client: a ``redis://`` URL becomes a pool of
``max_connections`` (per node, on Cluster) whose callers wait for a free
connection rather than fail; a client is used as it is. The listener's
connections are made here too: each is one connection of its own whose
socket timeout outlasts its blocking read, so a quiet stream is never
mistaken for a dead server.
"""

from __future__ import annotations

from typing import Any, Callable, Union

import redis
from redis.backoff import EqualJitterBackoff, NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import parse_url
from redis.retry import Retry

__all__ = ["Client", "close_client", "dedicated_client", "make_client", "node_client"]

#: What the store talks to: one server, or a cluster.
Client = Union[redis.Redis, RedisCluster]

# What a URL-made client's connections get: a slow Redis is waited for, a dead one noticed.
_TIMEOUTS: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 2}


def make_client(url_or_client: Any, *, cluster: Any, max_connections: int) -> tuple[Callable[[], Client], bool, bool]:
    """(what makes the client, whether the store owns it and so closes it, whether it is a cluster).

    A cluster client asks a node for the cluster's layout as it is made, so
    one made from a URL is made at first use: a store made while the cluster
    is down answers 503 until it is up, as one on a single server does,
    rather than failing where it is made.
    """
    if not isinstance(cluster, bool):
        raise TypeError(f"cluster must be True or False, got {cluster!r}")
    if isinstance(url_or_client, str):
        if cluster:
            parsed: dict[str, Any] = parse_url(url_or_client)  # type: ignore[no-untyped-call]
            db = parsed.get("db")  # a bad URL is refused here, as on one server
            if db not in (None, 0):
                raise ValueError(f"url_or_client: Redis Cluster has only database 0, got {url_or_client!r}")

            def made() -> Client:
                return RedisCluster.from_url(
                    url_or_client,
                    max_connections=max_connections,
                    connection_pool_class=redis.BlockingConnectionPool,
                    timeout=5,
                    # A node down answers 503 within about a second, not after redis-py's ten retries.
                    retry=Retry(EqualJitterBackoff(cap=0.25, base=0.02), 3),
                    **_TIMEOUTS,
                )

            return made, True, True
        pool = redis.BlockingConnectionPool.from_url(
            url_or_client, max_connections=max_connections, timeout=5, **_TIMEOUTS
        )
        client = redis.Redis(connection_pool=pool)
        return lambda: client, True, False
    if isinstance(url_or_client, RedisCluster):
        given: Client = url_or_client
        return lambda: given, False, True
    if isinstance(url_or_client, redis.Redis):
        if cluster:
            raise ValueError(
                "cluster=True needs a redis:// URL or a redis.cluster.RedisCluster client, not a redis.Redis"
            )
        plain: Client = url_or_client
        return lambda: plain, False, False
    raise TypeError(
        "url_or_client must be a redis:// URL, a redis.Redis or a redis.cluster.RedisCluster client, "
        f"got {url_or_client!r}"
    )


def close_client(client: Client) -> None:
    """Close a client the store made, every connection of every pool included."""
    if isinstance(client, RedisCluster):
        for node in client.get_nodes():  # type: ignore[no-untyped-call]
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()
        client.close()
    else:
        client.close()
        client.connection_pool.disconnect()


def _dedicated(pool: Any, block: float, **changes: Any) -> redis.Redis:
    kwargs = {**pool.connection_kwargs, **changes}
    timeout = kwargs.get("socket_timeout")
    kwargs["socket_timeout"] = None if timeout is None else max(float(timeout), block + 5.0)
    own = redis.ConnectionPool(connection_class=pool.connection_class, max_connections=1, **kwargs)
    return redis.Redis(connection_pool=own)


def dedicated_client(client: redis.Redis, block: float) -> redis.Redis:
    """A client of one connection, like ``client``'s, for a read that blocks up to ``block`` seconds."""
    return _dedicated(client.connection_pool, block)


def node_client(cluster: RedisCluster, node: ClusterNode, block: float) -> redis.Redis:
    """A client of one connection to one node of ``cluster`` (made like the cluster's own), for pub/sub."""
    connection = node.redis_connection or cluster.get_redis_connection(node)
    # No retry: a pub/sub connection that reconnected by itself would have lost news unseen; its owner
    # hears of every failure and reads everything again.
    return _dedicated(connection.connection_pool, block, retry=Retry(NoBackoff(), 0))
