"""Where a sync invocation runs when several nodes serve one Ember.

Any node accepts any request. The node that receives ``POST /functions/{name}/invoke``
draws the version (an alias's split is drawn once, there), then:

1. **Warm here** — an instance of that version is free on this node now: it runs here.
2. **Warm elsewhere** — another node's last heartbeat listed that version warm
   (``load.warm``): it runs there (the one of those that rendezvous hashing prefers).
3. **Affinity** — else on the node that rendezvous hashing of the version's pool key over
   the nodes in service prefers, so that one version's cold starts and warm instances
   gather on one node instead of each node keeping its own.

When every one of a version's ``max_instances`` is up on other nodes (``cluster/slots.py``)
and none here, the invocation goes to one of those nodes, to queue for its instances.

It runs here, not there, when the chosen node is saturated (its heartbeat reports as many
invocations in flight as its ``max_instances``) or cannot take it: it could not be reached,
or it answered 429 ``TooManyRequests`` / 503 ``ServiceUnavailable`` before running it.
A node that answered nothing after the request was sent is not tried again here: the
function may have run there, so the caller gets 503 and decides. Draining, drained, dead
and stopped nodes get no forwarded work; a draining node forwards what it receives.

A forwarded request is sent with the node credential (``cluster/peers.py``) and
``X-Ember-Forwarded-By``, and pinned to the drawn version (``?qualifier=<number>``, or
``latest``); the node that receives it runs it itself. Every answer names the node that
ran the function in ``X-Ember-Node``.

Placement reads nodes from the registry's snapshot (as of this node's last heartbeat: no
store read per request), so a node that just died may be chosen for up to ``dead_after_s``;
the call to it then fails to connect, the invocation runs here, and that node gets nothing
more from here until its heartbeat moves again. Async invocations are
not placed: every node's workers consume the shared queue. HTTP triggers and web functions
run on the node that receives them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import httpx

from ember.cluster.nodes import ALIVE, Node, NodeRegistry, preferred
from ember.cluster.peers import PeerClient
from ember.errors import ServiceUnavailable
from ember.pool.pool import PoolKey, pool_key_text

log = logging.getLogger(__name__)

HasRoom = Callable[[PoolKey], bool]  # whether this node has a warm instance free for a pool

FORWARDED_HEADER = "X-Ember-Forwarded-By"
RAN_ON_HEADER = "X-Ember-Node"
# Sent on, from the caller's request, with a forwarded invocation.
_PASSED_ON = ("content-type", "x-ember-log-type", "x-ember-request-id")
# Answered back, from the node that ran it, besides Ember's own X-Ember-* headers.
_PASSED_BACK = ("content-type", "retry-after")
# A forwarded call may wait for a cold start and the queue behind the function's timeout.
_SLACK_S = 30.0


def rendezvous(nodes: list[Node], key: str) -> Node:
    """The node of ``nodes`` (not empty) that rendezvous hashing prefers for ``key``."""
    chosen = preferred(key, [n.id for n in nodes])
    return next(n for n in nodes if n.id == chosen)


def saturated(node: Node) -> bool:
    """Whether a node's last heartbeat reported as many invocations in flight as its
    ``max_instances``."""
    limit = node.capacity.get("max_instances")
    return isinstance(limit, int) and int(node.load.get("in_flight") or 0) >= limit


class Forwarded:
    """The answer of the node that ran a forwarded invocation."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = headers


class Placement:
    def __init__(self, registry: NodeRegistry, peers: PeerClient,
                 has_room: HasRoom) -> None:
        self._registry = registry
        self._peers = peers
        self._has_room = has_room
        # Nodes a call could not reach, with their heartbeat then: skipped until it moves.
        self._unreachable: dict[str, float] = {}

    @property
    def node(self) -> str:
        return self._registry.id

    def choose(self, key: PoolKey) -> Node | None:
        """The node an invocation of the pool ``key`` should run on; None for this one."""
        if self._registry.known() <= 1:  # first: the common case, and the cheapest answer
            return None
        draining = self._registry.draining
        if self._has_room(key) and not draining:
            return None
        nodes = self._registry.snapshot()
        serving = [n for n in nodes if n.state == ALIVE and not self._skipped(n)]
        if not serving:
            return None  # this node drains, and no other serves: better here than nowhere
        text = pool_key_text(key)
        warm = [n for n in serving if not n.this and text in (n.load.get("warm") or ())]
        best = rendezvous(warm or serving, text)
        if best.this or (saturated(best) and not draining):
            return None
        return best

    def holder(self, key: PoolKey, holders: list[str]) -> Node | None:
        """The node, among ``holders`` (those holding every slot of the pool ``key``:
        ``SlotsTaken``), to send the invocation to; None when none serves."""
        serving = [n for n in self._registry.snapshot()
                   if n.id in holders and not n.this and n.state == ALIVE
                   and not self._skipped(n)]
        return rendezvous(serving, pool_key_text(key)) if serving else None

    def _skipped(self, node: Node) -> bool:
        seen = self._unreachable.get(node.id)
        if seen is None:
            return False
        if node.heartbeat_at > seen:  # it heartbeats again: try it again
            del self._unreachable[node.id]
            return False
        return True

    async def forward(self, node: Node, name: str, version: str, body: bytes,
                      headers: Mapping[str, str], timeout_s: float) -> Forwarded | None:
        """Run the invocation on ``node``; None when it could not take it (then run it
        here). Raises ServiceUnavailable when the node took the request and did not answer
        (it may have run)."""
        sent = {k: v for k, v in headers.items() if k.lower() in _PASSED_ON}
        sent[FORWARDED_HEADER] = self._registry.id
        try:
            answer = await self._peers.request(
                node, "POST", f"/functions/{name}/invoke", params={"qualifier": version},
                headers=sent, content=body, timeout_s=timeout_s + _SLACK_S)
        except ServiceUnavailable as err:
            if isinstance(err.__cause__, (httpx.ConnectError, httpx.ConnectTimeout)):
                log.warning("node %s cannot be reached: running %s here, and sending it "
                            "nothing until it heartbeats again", node.id, name)
                self._unreachable[node.id] = node.heartbeat_at
                return None
            raise ServiceUnavailable(
                f"node {node.id}, which ran the invocation, did not answer; it may have run: "
                "check its logs before invoking again", {"node": node.id}) from err
        if answer.status_code in (429, 503) and _not_run(answer):
            return None
        back = {k.lower(): v for k, v in answer.headers.items()
                if k.lower().startswith("x-ember-") or k.lower() in _PASSED_BACK}
        back.setdefault(RAN_ON_HEADER.lower(), node.id)
        return Forwarded(answer.status_code, answer.content, back)


def _not_run(answer: httpx.Response) -> bool:
    """Whether a 429/503 answer says the node refused before running the function (its
    pool was full, it was draining or starting) rather than the function's own answer."""
    try:
        code = answer.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return False
    return code in ("TooManyRequests", "ServiceUnavailable")

