"""Signing keys: parsing, where they come from, and where they never go."""

from __future__ import annotations

import base64
import itertools
import os
import pickle
from pathlib import Path

import pytest

from proxystore.exceptions import ConfigurationError
from proxystore.signing import (
    ENV_KEYS,
    ENV_KEYS_FILE,
    SigningKeys,
    new_signing_key,
    resolve_signing_keys,
)

KEY_A = bytes(range(32))
_names = itertools.count()


def _name() -> str:
    """A store name no other call uses (keys given to a name are remembered)."""
    return f"signing-test-{next(_names)}"


KEY_B = bytes(range(1, 33))


def _entry(kid: str, key: bytes) -> str:
    return f"{kid}:{base64.b64encode(key).decode()}"


def test_parse_keeps_order_first_signs_all_verify() -> None:
    keys = SigningKeys.parse(f"{_entry('new', KEY_B)}, {_entry('old', KEY_A)}")
    assert keys.signing_kid == "new"
    assert keys.signing_key == KEY_B
    assert keys.kids == ("new", "old")
    assert keys.key_for("old") == KEY_A
    assert keys.key_for("nope") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no signing key"),
        ("k1", "no ':'"),
        ("k1:not base64!", "not valid base64"),
        (_entry("k1", b"short"), "5 bytes"),
        (_entry("bad kid", KEY_A), "not 1-32"),
        (_entry("k" * 33, KEY_A), "not 1-32"),
        (f"{_entry('k1', KEY_A)},{_entry('k1', KEY_B)}", "appears twice"),
    ],
)
def test_malformed_keys_are_configuration_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        SigningKeys.parse(text)
    assert base64.b64encode(KEY_A).decode() not in str(info.value)


def test_repr_and_pickle_never_show_the_keys() -> None:
    keys = SigningKeys([("k1", KEY_A)])
    assert repr(keys) == "SigningKeys(kids=['k1'])"
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(keys)


def test_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_KEYS_FILE, raising=False)
    monkeypatch.delenv(ENV_KEYS, raising=False)
    assert resolve_signing_keys(None, _name()) is None
    monkeypatch.setenv(ENV_KEYS, _entry("k1", KEY_A))
    keys = resolve_signing_keys(None, _name())
    assert keys is not None
    assert keys.kids == ("k1",)


def test_key_file_must_be_private(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "keys"
    path.write_text(
        f"# rotated 2026-12\n{_entry('k2', KEY_B)}\n\n{_entry('k1', KEY_A)}\n"
    )
    os.chmod(path, 0o640)
    monkeypatch.delenv(ENV_KEYS, raising=False)
    monkeypatch.setenv(ENV_KEYS_FILE, str(path))
    with pytest.raises(ConfigurationError, match=r"0640.*chmod 600"):
        resolve_signing_keys(None, _name())
    os.chmod(path, 0o600)
    keys = resolve_signing_keys(None, _name())
    assert keys is not None
    assert keys.kids == ("k2", "k1")


def test_missing_key_file_and_both_variables_are_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV_KEYS_FILE, str(tmp_path / "absent"))
    monkeypatch.delenv(ENV_KEYS, raising=False)
    with pytest.raises(ConfigurationError, match="cannot read"):
        resolve_signing_keys(None, _name())
    monkeypatch.setenv(ENV_KEYS, _entry("k1", KEY_A))
    with pytest.raises(ConfigurationError, match="both"):
        resolve_signing_keys(None, _name())


def test_option_forms() -> None:
    keys = SigningKeys([("k1", KEY_A)])
    assert resolve_signing_keys(keys, _name()) is keys
    resolved = resolve_signing_keys({"k1": KEY_A, "k0": KEY_B}, _name())
    assert resolved is not None
    assert resolved.kids == ("k1", "k0")
    from_str = resolve_signing_keys(_entry("k1", KEY_A), _name())
    assert from_str is not None
    assert from_str.signing_key == KEY_A
    with pytest.raises(ConfigurationError, match="bare bytes"):
        resolve_signing_keys(KEY_A, _name())


def test_new_signing_key_parses_back() -> None:
    entry = new_signing_key("2026-12")
    keys = SigningKeys.parse(entry)
    assert keys.signing_kid == "2026-12"
    assert len(keys.signing_key) == 32
    assert new_signing_key("2026-12") != entry
