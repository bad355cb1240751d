"""The artifact store interface and the limits every code archive is held to.

An artifact is a code or layer zip stored by the sha256 of its bytes. It is checked once,
unpacked once into a read-only directory, and shared by every version and instance that
names the same sha256.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Protocol

from ember.model.function import CodeRef

MIB = 1024 * 1024


@dataclass(frozen=True)
class ArtifactLimits:
    """What a code archive may weigh; anything past a limit is refused before it is unpacked.

    - ``max_zip_bytes``: size of the zip itself (``PayloadTooLarge`` above it).
    - ``max_entries``: number of entries, directories included.
    - ``max_unpacked_bytes``: total uncompressed size, declared and really written.
    - ``max_ratio``: uncompressed/compressed size of one entry above which it is taken for a
      zip bomb; only judged for entries over 1 MiB, since small files compress well honestly.
    """

    max_zip_bytes: int = 50 * MIB
    max_entries: int = 10_000
    max_unpacked_bytes: int = 500 * MIB
    max_ratio: float = 200.0

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if not value > 0:
                raise ValueError(f"ArtifactLimits.{spec.name} must be positive, got {value!r}")


class ArtifactStore(Protocol):
    """Content-addressed storage of code archives, each unpacked once and read-only.

    A sha256 that is not 64 lowercase hex digits names nothing: ``exists`` answers False,
    ``path`` and ``read`` raise ``NotFound``, ``delete`` does nothing.
    """

    def put(self, data: bytes) -> CodeRef:
        """Check ``data`` (a zip), store it by its sha256 and unpack it once.

        Idempotent: the same bytes give the same ``CodeRef`` and nothing is rewritten.

        Raises:
            PayloadTooLarge: ``data`` is over ``max_zip_bytes``.
            InvalidCode: ``data`` is not a zip, or an entry is unsafe (``details`` name the
                entry and the reason); nothing is written then.
        """
        ...

    def path(self, sha256: str) -> Path:
        """The unpacked, read-only directory of an artifact.

        Raises:
            NotFound: no artifact has this sha256.
        """
        ...

    def exists(self, sha256: str) -> bool:
        """Whether an artifact is stored completely (its zip and its unpacked directory)."""
        ...

    def read(self, sha256: str) -> bytes:
        """The original zip bytes of an artifact.

        Raises:
            NotFound: no artifact has this sha256.
        """
        ...

    def delete(self, sha256: str) -> None:
        """Remove an artifact's zip and unpacked directory; a missing artifact is not an error."""
        ...

    def list(self) -> list[str]:
        """The sha256 of every stored artifact, sorted."""
        ...
