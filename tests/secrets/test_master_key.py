"""The master key: from EMBER_MASTER_KEY or <home>/master.key (made 0600), and a server
whose key cannot open a secret says which and what to do, without a traceback."""

from __future__ import annotations

import base64
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from ember.bootstrap import build
from ember.errors import InvalidSpec
from ember.secrets.crypto import (
    DecryptionFailed,
    MasterKeyError,
    SecretCipher,
    load_master_key,
)
from ember.secrets.masking import Masker
from ember.settings import Settings
from tests.inprocess import Ember

Run = Callable[..., None]

READS = "import os\n\ndef handler(event, context):\n    return {'v': os.environ['TOKEN']}\n"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_first_start_makes_a_0600_key_file_and_leaves_home_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    first = load_master_key(None, home)
    path = home / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o755
    assert first.source == str(path) and len(first.key) == 32
    assert load_master_key(None, home).key == first.key  # read again, not replaced


def test_the_configured_key_wins_and_no_file_is_made(tmp_path: Path) -> None:
    key = new_key()
    loaded = load_master_key(key, tmp_path)
    assert loaded.key == base64.b64decode(key) and loaded.source == "EMBER_MASTER_KEY"
    assert not (tmp_path / "master.key").exists()
    settings = Settings(home=tmp_path / "home", master_key=key)
    assert key not in repr(settings) and key not in str(settings.model_dump())


@pytest.mark.parametrize("bad", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_bad_key_is_refused_naming_the_setting(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(home=tmp_path, master_key=bad)
    assert refused.value.errors()[0]["loc"] == ("master_key",)
    assert "EMBER_MASTER_KEY" in str(refused.value)
    (tmp_path / "master.key").write_text("garbage\n")
    with pytest.raises(MasterKeyError, match=r"master\.key"):
        load_master_key(None, tmp_path)
    with pytest.raises(InvalidSpec, match=r"master\.key"):
        build(Settings(home=tmp_path))


def test_a_value_opens_only_with_its_key_and_name(tmp_path: Path) -> None:
    cipher = SecretCipher(load_master_key(new_key(), tmp_path))
    sealed, nonce, fmt = cipher.seal("A", "value")
    assert cipher.open("A", sealed, nonce, fmt) == "value"
    with pytest.raises(DecryptionFailed):
        cipher.open("B", sealed, nonce, fmt)  # copied onto another secret's row
    with pytest.raises(DecryptionFailed):
        SecretCipher(load_master_key(new_key(), tmp_path)).open("A", sealed, nonce, fmt)


def test_the_master_key_from_the_environment_is_used(
    run: Run, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    key = new_key()
    monkeypatch.setenv("EMBER_MASTER_KEY", key)

    async def scenario(ember: Ember) -> None:
        assert (await ember.http.put("/secrets/TOKEN", json={"value": "v1"})).status_code == 201
        assert ember.services.settings.master_key is not None

    run(scenario, master_key=Settings().master_key)
    assert not (home / "master.key").exists()


def test_a_wrong_master_key_is_a_clear_error(
    run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    async def store(ember: Ember) -> None:
        assert (await ember.http.put("/secrets/TOKEN", json={"value": "v1"})).status_code == 201
        await ember.deploy("reader", READS, secrets=["TOKEN"])
        assert (await ember.invoke("reader", {})).json() == {"v": "v1"}

    run(store, master_key=SecretStr(new_key()))

    async def read(ember: Ember) -> None:
        # Names and times need no key.
        assert (await ember.http.get("/secrets/TOKEN")).status_code == 200
        answer = await ember.invoke("reader", {})
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert error["details"]["secret"] == "TOKEN"
        assert "TOKEN" in error["message"] and "master key" in error["message"]
        assert "ember secret set TOKEN" in error["message"]
        assert "Traceback" not in answer.text
        # Set again with this server's key, it works.
        await ember.http.put("/secrets/TOKEN", json={"value": "v2"})
        assert (await ember.invoke("reader", {})).json() == {"v": "v2"}

    with caplog.at_level(logging.ERROR, logger="ember.secrets.service"):
        run(read, master_key=SecretStr(new_key()))
    said = [r.getMessage() for r in caplog.records if r.name == "ember.secrets.service"]
    assert any("cannot decrypt 1 secret(s): TOKEN" in line for line in said), said


def test_masking_of_values_and_their_lines() -> None:
    mask = Masker(["s3cr3t", "-----BEGIN KEY-----\nAAAAbbbbCCCCdddd\n-----END KEY-----", ""])
    assert mask("the password is s3cr3t.") == "the password is ***."
    assert mask("line AAAAbbbbCCCCdddd of the key") == "line *** of the key"
    assert mask("nothing here") == "nothing here"
    assert Masker(["ab", "abc"])("xabcx ab") == "x***x ***"  # the longer value whole
    assert Masker([]).empty and Masker([""]).empty
