"""Request and task ids: random UUIDs (version 4) made without a system call each time.

``uuid.uuid4()`` reads the kernel's random source for every id, which costs tens of
microseconds in some virtual machines — a visible share of a warm invocation. Ids need to
be unique, not secret, so a generator seeded once from the kernel is enough.
"""

from __future__ import annotations

import os
import random

_rng = random.Random(os.urandom(32))
# The version (4) and variant (RFC 4122) bits of a random UUID, as uuid.UUID sets them.
_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_SET = (0x8000 << 48) | (4 << 76)


def new_id() -> str:
    """A new random UUID in its canonical text form (what ``str(uuid.UUID(int=n,
    version=4))`` gives, without building the object: this runs on every invocation)."""
    h = f"{(_rng.getrandbits(128) & _CLEAR) | _SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
