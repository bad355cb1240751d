"""Instance slots: ``max_instances`` of a version held across every node of a cluster.

Each instance a pool starts takes a slot of its pool (``function/version/digest``) first,
and gives it back once the instance is gone. With Redis configured (the queue's server,
which every node of a cluster shares) the slots of a pool are one sorted set,
``{prefix}:slots:{pool}``: members ``{node}/{token}``, scores the time (Redis's own clock,
so the nodes' clocks do not matter) at which the slot lapses. A node renews its slots every
``ttl_s / 3``; the slots of a node killed with SIGKILL lapse after ``ttl_s``, and the others
may start instances in their place then. Taking a slot drops the lapsed ones and adds one
only while fewer than the limit are held, in one script: two nodes never both take the last.

A slot refused raises :class:`SlotsTaken` (a ``TooManyRequests``) naming the nodes that hold
the pool's slots, so that the invocation can go to one of them (``cluster/placement.py``)
rather than wait here for an instance that this node may not start. Without Redis (one
node) every slot is granted: the pool's own count is the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any, Protocol

from ember.errors import TooManyRequests

log = logging.getLogger(__name__)

# KEYS[1]: the pool's set. ARGV: ttl in ms, limit, member. Returns {1} when taken, else
# {0, holders…}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
  return {1}
end
local held = redis.call('ZRANGE', KEYS[1], 0, -1)
table.insert(held, 1, 0)
return held
"""

# KEYS: the sets; ARGV: ttl in ms, then one member per key. Pushes each slot's lapse on.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', key, ttl * 2)
end
return #KEYS
"""


class SlotsTaken(TooManyRequests):
    """Every slot of a pool is held, by the nodes in ``holders``."""

    def __init__(self, pool: str, limit: int, holders: list[str]) -> None:
        super().__init__(
            f"{pool.split('/')[0]} has max_instances {limit} instances up across the "
            "cluster: retry later or raise max_instances",
            {"function": pool.split("/")[0], "max_instances": limit},
        )
        self.holders = holders


class Slots(Protocol):
    async def take(self, pool: str, limit: int) -> str:
        """A slot of ``pool`` (a token for ``give``). Raises SlotsTaken."""
        ...

    async def give(self, pool: str, token: str) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class LocalSlots:
    """One node: every slot granted (the pool counts its own instances)."""

    async def take(self, pool: str, limit: int) -> str:
        return ""

    async def give(self, pool: str, token: str) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisSlots:
    def __init__(self, url: str, prefix: str, node: str, ttl_s: float) -> None:
        import redis.asyncio as aioredis

        self._redis: Any = aioredis.from_url(url)
        self._prefix = prefix
        self._node = node
        self._ttl_ms = max(1000, int(ttl_s * 1000))
        self._held: dict[str, str] = {}  # member → pool
        self._take = self._redis.register_script(_TAKE)
        self._renew = self._redis.register_script(_RENEW)
        self._task: asyncio.Task[None] | None = None

    def _key(self, pool: str) -> str:
        return f"{self._prefix}:slots:{pool}"

    async def take(self, pool: str, limit: int) -> str:
        member = f"{self._node}/{secrets.token_hex(8)}"
        answer = await self._take(keys=[self._key(pool)], args=[self._ttl_ms, limit, member])
        if int(answer[0]) == 1:
            self._held[member] = pool
            return member
        holders = sorted({m.decode().split("/", 1)[0] for m in answer[1:]})
        raise SlotsTaken(pool, limit, holders)

    async def give(self, pool: str, token: str) -> None:
        if self._held.pop(token, None) is None:
            return
        try:
            await self._redis.zrem(self._key(pool), token)
        except Exception:  # it lapses on its own after ttl_s
            log.warning("could not give back an instance slot of %s", pool, exc_info=True)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._keep())

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            held = dict(self._held)
            if not held:
                continue
            try:
                await self._renew(keys=[self._key(p) for p in held.values()],
                                  args=[self._ttl_ms, *held])
            except Exception:
                log.warning("could not renew %d instance slots: other nodes may take them "
                            "after %.0f s", len(held), self._ttl_ms / 1000, exc_info=True)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        held, self._held = self._held, {}
        with contextlib.suppress(Exception):
            for member, pool in held.items():
                await self._redis.zrem(self._key(pool), member)
        await self._redis.aclose()
