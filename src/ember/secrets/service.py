"""The rules of secrets: names and values checked, values sealed before they are stored and
opened only when an instance that lists them starts."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ember.clock import Clock, utcnow
from ember.control.validation import invalid_spec
from ember.errors import SecretNotFound, ServiceUnavailable
from ember.model.function import check_secret_name
from ember.secrets.crypto import DecryptionFailed, SecretCipher
from ember.secrets.store import Sealed, SecretInfo, SqlSecretStore

log = logging.getLogger(__name__)

MAX_SECRET_BYTES = 64 * 1024


class SecretService:
    """Sets, lists and deletes secrets; never returns a value except through ``reveal``,
    which only the launcher calls, just before it sends the values to an instance."""

    def __init__(self, store: SqlSecretStore, cipher: SecretCipher, clock: Clock) -> None:
        self._store = store
        self._cipher = cipher
        self._clock = clock

    def put(self, name: str, value: str) -> tuple[SecretInfo, bool]:
        """Set the secret's value (made when new); returns (secret, created).

        Raises:
            InvalidSpec: a bad name (``name``), or a value that is empty, over 64 KiB
            in UTF-8 or holds a NUL character (``value``).
        """
        errors = []
        try:
            check_secret_name(name)
        except ValueError as exc:
            errors.append({"field": "name", "message": str(exc)})
        size = len(value.encode("utf-8", "surrogatepass"))
        if not value:
            errors.append({"field": "value", "message": "a secret's value cannot be empty"})
        elif size > MAX_SECRET_BYTES:
            errors.append({"field": "value", "message": f"the value is {size} bytes, over "
                                                         f"the {MAX_SECRET_BYTES} limit"})
        elif "\x00" in value:
            # It becomes an environment variable, which execve() ends at a NUL.
            errors.append({"field": "value", "message": "a secret's value cannot hold a "
                                                         "NUL character"})
        if errors:
            raise invalid_spec(errors)
        try:
            ciphertext, nonce, fmt = self._cipher.seal(name, value)
        except UnicodeEncodeError as exc:  # a lone surrogate: no UTF-8 holds it
            raise invalid_spec([{"field": "value", "message": "the value is not valid "
                                                              "Unicode text"}]) from exc
        return self._store.put(name, Sealed(ciphertext, nonce, fmt), utcnow(self._clock))

    def get(self, name: str) -> SecretInfo:
        """The secret's name and times. Raises SecretNotFound."""
        return self._store.get(name)

    def list_secrets(self) -> list[SecretInfo]:
        """Every secret, by name (names and times only)."""
        return self._store.list_secrets()

    def delete(self, name: str, force: bool = False) -> SecretInfo:
        """Delete the secret. Raises SecretNotFound, and Conflict (naming the functions)
        while a function's ``latest`` or one of its versions lists it, unless ``force``."""
        return self._store.delete(name, force)

    def missing(self, names: Sequence[str]) -> list[str]:
        """Those of ``names`` that are not stored, in order."""
        found = self._store.existing(names)
        return [n for n in names if n not in found]

    def reveal(self, names: Sequence[str]) -> dict[str, str]:
        """The values of ``names`` (blocking: reads the database).

        Raises:
            SecretNotFound: one of them was deleted (with force) since the config was saved.
            ServiceUnavailable: a value does not open with this server's master key.
        """
        try:
            sealed = self._store.sealed(names)
        except SecretNotFound as err:
            raise SecretNotFound(
                f"{err.message}; a function lists it in its config (secrets), so its "
                "instances cannot start until it is set again", err.details,
            ) from None
        values = {}
        for name, stored in sealed.items():
            try:
                values[name] = self._cipher.open(name, stored.ciphertext, stored.nonce,
                                                 stored.format)
            except DecryptionFailed:
                raise self._unreadable(name) from None
        return values

    def unreadable(self) -> list[str]:
        """The secrets this server's master key cannot open (checked at start)."""
        return [
            name for name, stored in sorted(self._store.all_sealed().items())
            if not self._opens(name, stored.ciphertext, stored.nonce, stored.format)
        ]

    def check_master_key(self) -> None:
        """Log an error naming the secrets the master key cannot open, and what to do."""
        names = self.unreadable()
        if names:
            log.error(
                "the master key from %s cannot decrypt %d secret(s): %s. They were set with "
                "another master key: start the server with that one (EMBER_MASTER_KEY or "
                "<home>/master.key), or set them again with `ember secret set NAME`; "
                "functions that list them cannot start instances until then",
                self._cipher.source, len(names), ", ".join(names),
            )

    def _opens(self, name: str, ciphertext: bytes, nonce: bytes, fmt: int) -> bool:
        try:
            self._cipher.open(name, ciphertext, nonce, fmt)
        except DecryptionFailed:
            return False
        return True

    def _unreadable(self, name: str) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"secret {name!r} cannot be decrypted with the master key from "
            f"{self._cipher.source}: it was set with another master key (or its row was "
            "altered). Start the server with the master key it was set with "
            f"(EMBER_MASTER_KEY or <home>/master.key), or set it again with "
            f"`ember secret set {name}`",
            {"secret": name, "master_key": self._cipher.source},
        )
