"""``GET /nodes``, ``POST /nodes/{id}/drain`` and ``/undrain``: the servers of the
cluster. Like ``ember.sdk.calls``, each function returns a ``Call`` that both clients
send."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from ember.api.schemas import NodeList, NodeOut
from ember.sdk.calls import Call


def _nodes(response: httpx.Response) -> NodeList:
    return NodeList.model_validate_json(response.content)


def list_nodes() -> Call[NodeList]:
    """Every node that registered, alive, dead or stopped."""
    return Call("GET", "/nodes", _nodes)


def _node(response: httpx.Response) -> NodeOut:
    return NodeOut.model_validate_json(response.content)


def drain_node(node: str) -> Call[NodeOut]:
    """Take a node out of service: no new work, its leases handed over."""
    return Call("POST", f"/nodes/{quote(node, safe='')}/drain", _node)


def undrain_node(node: str) -> Call[NodeOut]:
    """Put a draining node back in service."""
    return Call("POST", f"/nodes/{quote(node, safe='')}/undrain", _node)
