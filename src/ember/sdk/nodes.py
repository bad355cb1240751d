"""``GET /nodes``: the servers of the cluster. Like ``ember.sdk.calls``, each function
returns a ``Call`` that both clients send."""

from __future__ import annotations

import httpx

from ember.api.schemas import NodeList
from ember.sdk.calls import Call


def _nodes(response: httpx.Response) -> NodeList:
    return NodeList.model_validate_json(response.content)


def list_nodes() -> Call[NodeList]:
    """Every node that registered, alive, dead or stopped."""
    return Call("GET", "/nodes", _nodes)
