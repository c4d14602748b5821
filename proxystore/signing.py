"""Keys that sign and verify payloads (HMAC-SHA256), and where they come from.

A store with signing keys signs every payload it writes with its first key
and refuses to deserialize a payload that is not signed by one of its keys
(see `proxystore.frame`). Keys come from the ``signing_keys=`` option of any
store or, when that is not given, from the environment:

- ``PROXYSTORE_SIGNING_KEYS``: ``kid:base64key[,kid:base64key...]``;
- ``PROXYSTORE_SIGNING_KEYS_FILE``: a file with one ``kid:base64key`` per
  line (blank lines and ``#`` comments allowed), readable by its owner only.

The first key signs, all of them verify: to rotate, put the new key first on
every consumer and producer, and drop the old one once no stored payload is
signed with it. A key is at least 32 random bytes; a key id (kid) is 1-32 of
``[A-Za-z0-9_.-]`` and travels in each signed payload to say which key
verifies it.

Keys never travel with a proxy: they are not part of a store's `config()`,
cannot be pickled, and their repr shows the key ids only. What travels is
``signing_keys="env"``: the consumer must have keys of its own.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
import threading
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn, TypeAlias

from proxystore.exceptions import ConfigurationError

ENV_KEYS = "PROXYSTORE_SIGNING_KEYS"
"""Environment variable holding ``kid:base64key[,kid:base64key...]``."""

ENV_KEYS_FILE = "PROXYSTORE_SIGNING_KEYS_FILE"
"""Environment variable naming a file of ``kid:base64key`` lines (mode 0600)."""

MIN_KEY_BYTES = 32
"""The shortest key accepted, in bytes (the output size of SHA-256)."""

KID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,32}")
"""What a key id looks like."""


class SigningKeys:
    """One key that signs and every key that verifies, by key id.

    Args:
        keys: ``(kid, key)`` pairs or a mapping of kid to key, in order: the
            first signs, all verify.
        source: Where the keys came from, for error messages.

    Raises:
        ConfigurationError: If there is no key, a kid is malformed or
            repeated, or a key is shorter than `MIN_KEY_BYTES`.

    Example:
        ```python
        keys = SigningKeys([("2026-12", new_key), ("2026-06", old_key)])
        store = FileStore("shared", "/shared/dir", signing_keys=keys)
        ```
    """

    __slots__ = ("_keys", "_signing_kid")

    def __init__(
        self,
        keys: Mapping[str, bytes] | Iterable[tuple[str, bytes]],
        *,
        source: str = "signing_keys",
    ) -> None:
        pairs = list(keys.items() if isinstance(keys, Mapping) else keys)
        if not pairs:
            raise ConfigurationError(f"{source} holds no signing key")
        self._keys: dict[str, bytes] = {}
        for pair in pairs:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise ConfigurationError(
                    f"{source}: expected (kid, key) pairs, got a {type(pair).__name__}"
                )
            kid, key = pair
            if not isinstance(kid, str) or KID_PATTERN.fullmatch(kid) is None:
                raise ConfigurationError(
                    f"{source}: key id {kid!r} is not 1-32 of [A-Za-z0-9_.-]"
                )
            if kid in self._keys:
                raise ConfigurationError(f"{source}: key id {kid!r} appears twice")
            if not isinstance(key, (bytes, bytearray)):
                raise ConfigurationError(
                    f"{source}: key {kid!r} must be bytes, got {type(key).__name__}"
                )
            if len(key) < MIN_KEY_BYTES:
                raise ConfigurationError(
                    f"{source}: key {kid!r} is {len(key)} bytes; signing keys "
                    f"are at least {MIN_KEY_BYTES} random bytes"
                )
            self._keys[kid] = bytes(key)
        self._signing_kid: str = next(iter(self._keys))

    @classmethod
    def parse(cls, text: str, *, source: str = ENV_KEYS) -> SigningKeys:
        """Parse ``kid:base64key`` entries separated by commas or newlines.

        Blank entries and lines starting with ``#`` are skipped. Error
        messages name the key id, never the key.

        Raises:
            ConfigurationError: If an entry is malformed.
        """
        pairs: list[tuple[str, bytes]] = []
        for raw in re.split(r"[,\n]", text):
            entry = raw.strip()
            if not entry or entry.startswith("#"):
                continue
            kid, colon, encoded = entry.partition(":")
            kid = kid.strip()
            if not colon:
                raise ConfigurationError(
                    f"{source}: an entry has no ':'; expected kid:base64key"
                )
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise ConfigurationError(
                    f"{source}: the key of {kid!r} is not valid base64"
                ) from None
            pairs.append((kid, key))
        return cls(pairs, source=source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SigningKeys:
        """Read keys from a file that only its owner can read.

        Raises:
            ConfigurationError: If the file is missing, readable by group or
                others, or malformed.
        """
        path = os.fspath(path)
        try:
            with open(path, encoding="ascii") as file:
                mode = os.fstat(file.fileno()).st_mode
                if stat.S_IMODE(mode) & 0o077:
                    raise ConfigurationError(
                        f"signing key file {path!r} has mode "
                        f"{stat.S_IMODE(mode):04o}; it must be readable by its "
                        f"owner only (chmod 600 {path})"
                    )
                text = file.read()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigurationError(
                f"cannot read signing key file {path!r}: {err}"
            ) from err
        return cls.parse(text, source=f"signing key file {path!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SigningKeys | None:
        """Return the keys the environment configures, or None if it sets none.

        Raises:
            ConfigurationError: If both variables are set, or the keys are
                malformed.
        """
        env = os.environ if environ is None else environ
        text = env.get(ENV_KEYS, "")
        path = env.get(ENV_KEYS_FILE, "")
        if text and path:
            raise ConfigurationError(
                f"both {ENV_KEYS} and {ENV_KEYS_FILE} are set; set only one"
            )
        if text:
            return cls.parse(text, source=ENV_KEYS)
        if path:
            return cls.from_file(path)
        return None

    @property
    def signing_kid(self) -> str:
        """The id of the key that signs."""
        return self._signing_kid

    @property
    def signing_key(self) -> bytes:
        """The key that signs."""
        return self._keys[self._signing_kid]

    @property
    def kids(self) -> tuple[str, ...]:
        """Every key id, the signing one first."""
        return tuple(self._keys)

    def key_for(self, kid: str) -> bytes | None:
        """Return the key with id `kid`, or None if there is none."""
        return self._keys.get(kid)

    def __repr__(self) -> str:
        return f"SigningKeys(kids={list(self._keys)!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "signing keys are never pickled; give every process its keys "
            f"through {ENV_KEYS} or {ENV_KEYS_FILE}"
        )


SigningKeysOption: TypeAlias = (
    SigningKeys | str | Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None
)
"""What a store's ``signing_keys=`` accepts.

A str is parsed like ``PROXYSTORE_SIGNING_KEYS``, except ``"env"`` (see
`FROM_ENV`).
"""


FROM_ENV = "env"
"""``signing_keys="env"``: keys from this process or its environment, required.

A store that signs puts this in its `config()`, so a store rebuilt from one
of its proxies refuses to start without keys instead of reading payloads it
cannot verify.
"""

_given: dict[str, SigningKeys] = {}
_given_lock = threading.Lock()


def resolve_signing_keys(option: Any, store: str) -> SigningKeys | None:
    """Return the keys for the ``signing_keys=`` option of the store named `store`.

    Keys given explicitly are remembered for the name, so another instance of
    the same store in this process (the other face, or one rebuilt from a
    proxy) uses them too. None and ``"env"`` take those remembered keys, else
    the environment (`SigningKeys.from_env`); ``"env"`` requires keys.

    Raises:
        ConfigurationError: If the option or the environment is malformed, or
            ``"env"`` finds no keys.
    """
    if option is None or option == FROM_ENV:
        with _given_lock:
            keys = _given.get(store)
        if keys is None:
            keys = SigningKeys.from_env()
        if keys is None and option == FROM_ENV:
            raise ConfigurationError(
                f"store {store!r} signs its payloads and this process has no "
                f"signing keys: set {ENV_KEYS} or {ENV_KEYS_FILE} (the keys of "
                "the process that made the proxy)"
            )
        return keys
    if isinstance(option, SigningKeys):
        keys = option
    elif isinstance(option, str):
        keys = SigningKeys.parse(option, source="signing_keys")
    elif isinstance(option, (bytes, bytearray)):
        raise ConfigurationError(
            "signing_keys takes (kid, key) pairs or a SigningKeys, not bare bytes"
        )
    else:
        keys = SigningKeys(option)
    with _given_lock:
        _given[store] = keys
    return keys


def new_signing_key(kid: str) -> str:
    """Return a fresh ``kid:base64key`` entry with a 32-byte random key.

    Example:
        ```bash
        python -c "from proxystore.signing import new_signing_key as k; print(k('k1'))"
        ```
    """
    if KID_PATTERN.fullmatch(kid) is None:
        raise ConfigurationError(f"key id {kid!r} is not 1-32 of [A-Za-z0-9_.-]")
    import secrets  # imports hmac and hashlib: only when making keys

    return f"{kid}:{base64.b64encode(secrets.token_bytes(MIN_KEY_BYTES)).decode()}"
