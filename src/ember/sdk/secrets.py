"""The routes of secrets: set a value, list secrets, read one's metadata, delete one.

Like ``ember.sdk.calls``, each function returns a ``Call`` that both clients send.

A secret's value is encrypted by the server with its master key and never returned: every
answer holds a name and times only. A function reads the secrets its config lists as
environment variables of the same names::

    ember.set_secret("DB_PASSWORD", password)
    ember.update_function("orders", {"secrets": ["DB_PASSWORD"]})
    # in the function: os.environ["DB_PASSWORD"]

The values are read when an instance starts, so a secret set again reaches the instances
started after it; lines the function logs have its secrets' values masked (``***``).
"""

from __future__ import annotations

import httpx

from ember.api.schemas import SecretList, SecretOut
from ember.sdk.calls import Call, _model, _segment


def _secret_path(name: str) -> str:
    return f"/secrets/{_segment(name)}"


def set_secret(name: str, value: str) -> Call[SecretOut]:
    """Set the secret's value, making the secret when new.

    Args:
        name: a letter, then up to 63 letters, digits or ``_`` (not ``EMBER_…``): the
            environment variable the functions listing it read.
        value: text of at most 64 KiB in UTF-8, without NUL characters.

    Returns:
        The secret's name and times (never its value).

    Raises:
        InvalidSpec: a bad name (``name``) or value (``value``).
    """
    return Call("PUT", _secret_path(name), _model(SecretOut), json={"value": value})


def list_secrets() -> Call[list[SecretOut]]:
    """Every secret by name, with its times (never a value)."""

    def parse(response: httpx.Response) -> list[SecretOut]:
        return SecretList.model_validate_json(response.content).secrets

    return Call("GET", "/secrets", parse)


def get_secret(name: str) -> Call[SecretOut]:
    """The secret's name and times; its value is never returned.

    Raises:
        SecretNotFound: no such secret.
    """
    return Call("GET", _secret_path(name), _model(SecretOut))


def delete_secret(name: str, force: bool = False) -> Call[SecretOut]:
    """Delete the secret; returns what was deleted.

    Args:
        force: delete it even while functions list it (their new instances then fail to
            start, with SecretNotFound, until it is set again).

    Raises:
        SecretNotFound: no such secret. Conflict: a function's ``latest`` or one of its
        versions lists it (``details["functions"]`` names them, ``details["used_by"]``
        as ``fn:latest``, ``fn:2``).
    """
    params = {"force": "true"} if force else {}
    return Call("DELETE", _secret_path(name), _model(SecretOut), params=params)
