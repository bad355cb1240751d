"""Node-to-node calls: how one node asks the others, and how a node knows the caller is one.

**The node credential.** Every node of a cluster holds the same master key
(``EMBER_MASTER_KEY``: the secrets in the shared store are sealed with it), so each derives
the same credential from it — ``en_`` and the HMAC-SHA256 of ``"ember node v1"`` under the
master key — without one more secret to hand out. A node calls another with it as its bearer
key and names itself in ``X-Ember-Node``; the API takes such a request as the principal
``node:<id>``, an admin that may do everything but manage keys and read the audit. The
credential is never logged nor shown; a wrong one is refused like any wrong key, and a right
one without the node header too.

**Fan-out.** :meth:`PeerClient.fan_out` sends the same GET to every other node that is up,
at once, with ``X-Ember-Scope: node``: the node asked answers with its own data only (it
does not ask the others again). A node that fails, answers an error or is too slow is
listed as unreachable, as are the nodes seen dead; the query never fails for them.
:meth:`PeerClient.request` is the single call the rest is built on (forwarding invocations
uses it too).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ember.auth.keys import Principal
from ember.cluster.nodes import DEAD, NODE_ID, STOPPED, Node
from ember.errors import ServiceUnavailable, Unauthorized
from ember.model.key import ADMIN

log = logging.getLogger(__name__)

NODE_HEADER = "X-Ember-Node"
SCOPE_HEADER = "X-Ember-Scope"
NODE_SCOPE = "node"  # the value of SCOPE_HEADER: answer with this node's data only
TOKEN_PREFIX = "en_"
_CONTEXT = b"ember node v1"

# Short by default: a query waits for the slowest node it asks.
CONNECT_TIMEOUT_S = 1.0
FAN_OUT_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 64


def derive_credential(master_key: bytes) -> str:
    """The credential every node holding ``master_key`` derives alike."""
    digest = hmac.new(master_key, _CONTEXT, hashlib.sha256).digest()
    return TOKEN_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def node_principal(node: str) -> Principal:
    """Who a request from node ``node`` is, for the policy and the audit."""
    return Principal(f"node:{node}", ADMIN)


def is_node_principal(principal: Principal | None) -> bool:
    return principal is not None and principal.name.startswith("node:")


def node_scope(headers: Mapping[str, str]) -> bool:
    """Whether a request asks for this node's own data only (``X-Ember-Scope: node``)."""
    return headers.get(SCOPE_HEADER.lower(), "").strip().lower() == NODE_SCOPE


class NodeCredential:
    """This node's identity towards the others, and the check of theirs."""

    def __init__(self, node: str, master_key: bytes) -> None:
        self.node = node
        self._token = derive_credential(master_key)

    def __repr__(self) -> str:  # never the credential itself
        return f"NodeCredential(node={self.node!r})"

    def headers(self) -> dict[str, str]:
        """The headers that make a request this node's."""
        return {"Authorization": f"Bearer {self._token}", NODE_HEADER: self.node}

    @staticmethod
    def claims(token: str | None) -> bool:
        """Whether ``token`` is meant as a node credential (rather than an API key)."""
        return bool(token) and str(token).startswith(TOKEN_PREFIX)

    def principal(self, token: str, node: str | None) -> Principal:
        """The calling node's principal. Raises Unauthorized when the credential is not
        this cluster's or ``node`` (the ``X-Ember-Node`` header) is missing or no node id,
        without saying which."""
        valid = hmac.compare_digest(token.encode(), self._token.encode())
        if not valid or node is None or not NODE_ID.match(node):
            raise Unauthorized("the node credential is not valid here (another master key, "
                               "or no X-Ember-Node header naming the calling node)",
                               {"header": "Authorization"})
        return node_principal(node)


@dataclass(frozen=True)
class Answer:
    """One node's answer to a fan-out: its id and its JSON body."""

    node: str
    body: Any


@dataclass
class FanOut:
    """What the other nodes answered. ``unreachable``: the nodes whose data is missing —
    those that failed, answered an error or timed out, and those seen dead."""

    answers: list[Answer] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)

    @property
    def nodes(self) -> list[str]:
        return [a.node for a in self.answers]


class PeerClient:
    """Calls the other nodes of the cluster over HTTP, with one shared connection pool.

    ``nodes`` lists the cluster's nodes as the registry sees them now (it reads the store:
    it is called in a thread)."""

    def __init__(self, credential: NodeCredential, nodes: Callable[[], list[Node]], *,
                 timeout_s: float = FAN_OUT_TIMEOUT_S,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.node = credential.node
        self._credential = credential
        self._nodes = nodes
        self._timeout_s = timeout_s
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    @property
    def credential(self) -> NodeCredential:
        return self._credential

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout_s, connect=CONNECT_TIMEOUT_S),
                limits=httpx.Limits(max_connections=MAX_CONNECTIONS,
                                    max_keepalive_connections=MAX_CONNECTIONS // 4),
                transport=self._transport, follow_redirects=False, trust_env=False,
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def peers(self) -> tuple[list[Node], list[str]]:
        """The other nodes that are up (alive, draining or drained), and the ids of those
        seen dead."""
        found = await asyncio.to_thread(self._nodes)
        others = [n for n in found if not n.this and n.id != self.node]
        up = [n for n in others if n.state not in (DEAD, STOPPED)]
        return up, [n.id for n in others if n.state == DEAD]

    async def request(
        self, node: Node, method: str, path: str, *,
        params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None,
        content: bytes | None = None, json: Any = None, timeout_s: float | None = None,
    ) -> httpx.Response:
        """One call of ``method path`` on ``node`` as this node; any answer is returned,
        error statuses included.

        Raises:
            ServiceUnavailable: the node could not be reached or did not answer in time
                (``details["node"]`` names it).
        """
        sent = {**(headers or {}), **self._credential.headers()}
        url = node.address.rstrip("/") + path
        timeout = (httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S)
                   if timeout_s is not None else httpx.USE_CLIENT_DEFAULT)
        try:
            return await self._client().request(
                method, url, params=_query(params), headers=sent, content=content, json=json,
                timeout=timeout)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"node {node.id} at {node.address} did not answer: "
                f"{type(exc).__name__} {exc}".rstrip(),
                {"node": node.id},
            ) from exc

    async def fan_out(self, path: str, params: Params = None, *,
                      timeout_s: float | None = None) -> FanOut:
        """GET ``path`` from every other node that is up, at once, each asked for its own
        data only; a node that fails or is slower than ``timeout_s`` is listed as
        unreachable instead. ``params``: the query, or a function of the node id giving
        each node's own."""
        up, dead = await self.peers()
        if not up:
            return FanOut([], sorted(dead))
        results = await asyncio.gather(
            *(self._ask(node, path, params(node.id) if callable(params) else params,
                        timeout_s)
              for node in up))
        out = FanOut(unreachable=list(dead))
        for node, body in zip(up, results, strict=True):
            if body is _FAILED:
                out.unreachable.append(node.id)
            else:
                out.answers.append(Answer(node.id, body))
        out.unreachable.sort()
        return out

    async def _ask(self, node: Node, path: str, params: Mapping[str, Any] | None,
                   timeout_s: float | None) -> Any:
        try:
            answer = await self.request(node, "GET", path, params=params,
                                        headers={SCOPE_HEADER: NODE_SCOPE},
                                        timeout_s=timeout_s)
        except ServiceUnavailable as exc:
            log.warning("%s", exc.message)
            return _FAILED
        if answer.status_code != 200:
            log.warning("node %s answered GET %s with %d: %.300s", node.id, path,
                        answer.status_code, answer.text)
            return _FAILED
        try:
            return answer.json()
        except ValueError:
            log.warning("node %s answered GET %s with no JSON", node.id, path)
            return _FAILED


_FAILED = object()
Params = Mapping[str, Any] | Callable[[str], Mapping[str, Any]] | None


def _query(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Query parameters without the unset ones (None)."""
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None}
