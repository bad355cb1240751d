"""Request and task ids: random UUIDs (version 4) made without a system call each time.

``uuid.uuid4()`` reads the kernel's random source for every id, which costs tens of
microseconds in some virtual machines — a visible share of a warm invocation. Ids need to
be unique, not secret, so a generator seeded once from the kernel is enough.
"""

from __future__ import annotations

import os
import random
import uuid

_rng = random.Random(os.urandom(32))


def new_id() -> str:
    """A new random UUID in its canonical text form."""
    return str(uuid.UUID(int=_rng.getrandbits(128), version=4))
