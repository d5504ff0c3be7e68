"""A Redis Cluster as a source: the keys of every master, read node by node (see cluster.py)."""

from __future__ import annotations

from ..cluster import discover, is_cluster
from ..endpoints import RedisEndpoint, translate_redis_errors
from .redis import RedisSource


def open_source(endpoint: RedisEndpoint, **options) -> RedisSource:
    """A source for `endpoint`: a `RedisSource` for a standalone server, a `ClusterSource`
    (same methods) when the server is a node of a Redis Cluster. Takes RedisSource's options."""
    client = endpoint.connect()
    with translate_redis_errors(endpoint):
        clustered = is_cluster(client)
    if not clustered:
        return RedisSource(endpoint, client=client, **options)
    topology = discover(endpoint, client)
    client.close()
    return ClusterSource(endpoint, topology, **options)  # noqa: F821  (built by the cluster-read work)
