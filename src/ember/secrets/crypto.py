"""The master key and the encryption of secret values (AES-256-GCM, ``cryptography``).

The master key never enters the database: it comes from ``EMBER_MASTER_KEY`` or from
``<home>/master.key``, which the first start creates (mode 0600). Each value is sealed with
a fresh random 96-bit nonce and the secret's name as associated data, so a ciphertext
copied onto another secret's row fails to open instead of revealing its value there.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
MASTER_KEY_FILE = "master.key"
# The format of a stored value; a row names the one it was written in, so that a later
# format can be introduced while older rows still open.
FORMAT_AES_GCM = 1


class MasterKeyError(ValueError):
    """The configured master key cannot be used; the message says which and why."""


@dataclass(frozen=True)
class MasterKey:
    """The key secrets are encrypted with, and where it came from (for messages)."""

    key: bytes = field(repr=False)
    source: str


def parse_master_key(text: str, source: str) -> bytes:
    """The 32 bytes that ``text`` (standard or URL-safe base64) holds.

    Raises:
        MasterKeyError: ``text`` is not base64 of exactly 32 bytes; the message names
        ``source``.
    """
    cleaned = text.strip()
    try:
        key = base64.b64decode(cleaned.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MasterKeyError(
            f"{source} is not base64: it must hold 32 random bytes in base64, e.g. the "
            "output of `python -c \"import os, base64; print(base64.b64encode(os.urandom(32))"
            ".decode())\"`"
        ) from exc
    if len(key) != KEY_BYTES:
        raise MasterKeyError(
            f"{source} holds {len(key)} bytes: a master key is {KEY_BYTES} bytes in base64"
        )
    return key


def load_master_key(configured: str | None, home: Path) -> MasterKey:
    """The master key: ``configured`` (``EMBER_MASTER_KEY``) when given, else the one in
    ``home/master.key``, made there with mode 0600 when the file does not exist yet. The
    permissions of ``home`` itself are left as they are.

    Raises:
        MasterKeyError: the configured key or the file's content is not a key.
    """
    if configured:
        return MasterKey(parse_master_key(configured, "EMBER_MASTER_KEY"), "EMBER_MASTER_KEY")
    path = home / MASTER_KEY_FILE
    try:
        # O_EXCL: of two servers starting on a new home, one writes the key, the other
        # reads it below; the mode is given at creation, so the key is never readable by
        # others, not even for a moment.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key_file(path)
    try:
        os.fchmod(fd, 0o600)  # the umask may have removed bits, never added: make it exact
        os.write(fd, base64.b64encode(os.urandom(KEY_BYTES)) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    log.warning(
        "generated the master key of secrets at %s: keep a copy elsewhere — secrets "
        "cannot be read without it (or set EMBER_MASTER_KEY)", path,
    )
    return _read_key_file(path)


def _read_key_file(path: Path) -> MasterKey:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("the master key %s can be read by other users (mode %o): chmod 600 it",
                    path, mode)
    return MasterKey(parse_master_key(path.read_text(encoding="ascii", errors="replace"),
                                      str(path)), str(path))


class DecryptionFailed(Exception):
    """A sealed value did not open: another key sealed it, or the row was altered."""


class SecretCipher:
    """Seals and opens secret values with the master key (AES-256-GCM)."""

    def __init__(self, master: MasterKey) -> None:
        self._aead = AESGCM(master.key)
        self.source = master.source

    def seal(self, name: str, value: str) -> tuple[bytes, bytes, int]:
        """``(ciphertext, nonce, format)`` of ``value`` stored as the secret ``name``."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode("utf-8"), _associated(name))
        return sealed, nonce, FORMAT_AES_GCM

    def open(self, name: str, ciphertext: bytes, nonce: bytes, fmt: int) -> str:
        """The value sealed as ``name``.

        Raises:
            DecryptionFailed: the master key is not the one that sealed it, the row was
            altered or copied from another secret, or ``fmt`` is unknown.
        """
        if fmt != FORMAT_AES_GCM:
            raise DecryptionFailed(f"unknown format {fmt}")
        try:
            return self._aead.decrypt(nonce, ciphertext, _associated(name)).decode("utf-8")
        except (InvalidTag, UnicodeDecodeError, ValueError) as exc:
            raise DecryptionFailed(str(exc) or type(exc).__name__) from exc


def _associated(name: str) -> bytes:
    return b"ember-secret:" + name.encode("utf-8")
