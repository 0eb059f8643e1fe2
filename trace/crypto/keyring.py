"""Versioned AES-128 keys for trace codes, kept outside the database.

Where keys come from (first match wins):

1. the environment variable ``TRACE_CODE_KEYS`` -- either the JSON document of the key
   file below, or the compact form ``0:<32 hex>,1:<32 hex>[,master:<64 hex>]`` (the
   highest version is current);
2. a JSON key file (e.g. ``instance/keys.json``, mode 0600, gitignored)::

       {"format": 1, "current": 1,
        "keys": {"0": "<32 hex>", "1": "<32 hex>"},
        "master": "<64 hex>"}

Versions are integers 0..31: a code carries its version as one base32 character
(``codes.VERSION_ALPHABET``), so at most 32 versions exist at once. ``rotate`` adds the
next free version and makes it current; old versions stay so printed labels keep
resolving. ``retire`` removes a non-current version (its labels then read as counterfeit)
and frees its slot for reuse -- after 31 rotations one has to retire before rotating.

Other purposes (the client-IP hash key, ...) get their own keys through
:meth:`Keyring.derive`: HKDF-SHA256 over the ``master`` secret with the purpose as
``info``. One file therefore holds every secret the platform needs, and each purpose's
key is independent of the others and of the code keys (knowing one reveals nothing of
the rest). The master secret never changes on rotation, so derived keys (and e.g. stored
IP hashes) stay comparable across code-key rotations. A keyring without ``master``
(compact env form without it) derives from its lowest-version code key instead; that is
still domain-separated, but derived keys then change when that version is retired --
which is why ``generate_file`` always writes a master.

Key bytes never appear in ``repr``/``str``, exceptions or logs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "ENV_VAR",
    "KEY_BYTES",
    "MAX_VERSIONS",
    "Keyring",
    "KeyringError",
    "retire",
    "rotate",
]

log = logging.getLogger(__name__)

ENV_VAR = "TRACE_CODE_KEYS"
KEY_BYTES = 16  # AES-128
MASTER_BYTES = 32
MAX_VERSIONS = 32  # one base32 character in the code text
FILE_FORMAT = 1
_HKDF_SALT = b"trace-platform/keyring/v1"


class KeyringError(Exception):
    """The key material is missing, malformed or an operation on it is impossible.

    Messages never contain key bytes.
    """


class Keyring:
    """An immutable set of versioned code keys plus an optional master secret."""

    __slots__ = ("_current", "_keys", "_master")

    def __init__(
        self,
        keys: Mapping[int, bytes],
        current_version: int,
        master: bytes | None = None,
    ) -> None:
        if not keys:
            raise KeyringError("a keyring needs at least one key")
        checked: dict[int, bytes] = {}
        for version, key in keys.items():
            if not isinstance(version, int) or not 0 <= version < MAX_VERSIONS:
                raise KeyringError(f"key version must be an integer 0..{MAX_VERSIONS - 1}")
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise KeyringError(f"key version {version} must be {KEY_BYTES} bytes")
            checked[version] = key
        if current_version not in checked:
            raise KeyringError(f"current version {current_version} has no key")
        if master is not None and (not isinstance(master, bytes) or len(master) < KEY_BYTES):
            raise KeyringError(f"master secret must be at least {KEY_BYTES} bytes")
        self._keys = checked
        self._current = current_version
        self._master = master

    # -- read side -------------------------------------------------------------------

    @property
    def current_version(self) -> int:
        """The version used for minting new codes."""
        return self._current

    @property
    def versions(self) -> tuple[int, ...]:
        """Every version that can still be parsed, ascending."""
        return tuple(sorted(self._keys))

    @property
    def has_master(self) -> bool:
        return self._master is not None

    def cipher_key(self, version: int) -> bytes:
        """The AES-128 key of ``version``; ``KeyError`` if the version is unknown."""
        return self._keys[version]

    def derive(self, purpose: str, length: int = 32) -> bytes:
        """A key for ``purpose`` (e.g. ``"ip-hash"``), independent of every other purpose."""
        if not purpose:
            raise ValueError("purpose must be a non-empty string")
        secret = self._master if self._master is not None else self._keys[min(self._keys)]
        hkdf = HKDF(
            algorithm=hashes.SHA256(),
            length=length,
            salt=_HKDF_SALT,
            info=b"trace-platform/derive/" + purpose.encode("utf-8"),
        )
        return hkdf.derive(secret)

    def __repr__(self) -> str:
        # Never the key bytes: keyrings end up in tracebacks, debug pages and logs.
        return (
            f"Keyring(versions={list(self.versions)}, current={self._current}, "
            f"master={'yes' if self._master is not None else 'no'})"
        )

    __str__ = __repr__

    def __reduce__(self) -> Any:
        # Pickling would copy secrets into caches/queues unnoticed; refuse.
        raise TypeError("Keyring objects cannot be pickled")

    # -- loading ---------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path | None, env: Mapping[str, str]) -> Keyring:
        """Keys from ``env[TRACE_CODE_KEYS]`` if set, else from the key file at ``path``."""
        raw = env.get(ENV_VAR, "").strip()
        if raw:
            return cls.from_text(raw, source=ENV_VAR)
        if path is None:
            raise KeyringError(f"no key file configured and {ENV_VAR} is not set")
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise KeyringError(f"key file {path} does not exist") from None
        except OSError as exc:
            raise KeyringError(f"key file {path} cannot be read: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("key file %s is accessible by group/others; chmod 600 it", path)
        return cls.from_text(text, source=str(path))

    @classmethod
    def from_text(cls, text: str, source: str = "keys") -> Keyring:
        """Parse the JSON document or the compact ``v:hex,...`` form."""
        text = text.strip()
        if text.startswith("{"):
            try:
                doc = json.loads(text)
            except ValueError:
                # The decoder's message may quote the document, i.e. key material.
                raise KeyringError(f"{source}: not valid JSON") from None
            return cls.from_json(doc, source)
        return cls._from_compact(text, source)

    @classmethod
    def from_json(cls, doc: Any, source: str = "keys") -> Keyring:
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), dict):
            raise KeyringError(f'{source}: expected an object with a "keys" object')
        keys: dict[int, bytes] = {}
        for name, value in doc["keys"].items():
            version = _parse_version(name, source)
            keys[version] = _unhex(value, KEY_BYTES, f"{source}: key {version}")
        current = doc.get("current", max(keys) if keys else None)
        if isinstance(current, str):
            current = _parse_version(current, source)
        if not isinstance(current, int) or isinstance(current, bool):
            raise KeyringError(f'{source}: "current" must be a key version')
        master = doc.get("master")
        master_bytes = None if master is None else _unhex(master, None, f"{source}: master")
        return cls(keys, current, master_bytes)

    @classmethod
    def _from_compact(cls, text: str, source: str) -> Keyring:
        keys: dict[int, bytes] = {}
        master: bytes | None = None
        for item in text.split(","):
            name, sep, value = item.strip().partition(":")
            if not sep:
                raise KeyringError(f"{source}: expected <version>:<hex key> items")
            if name.strip().lower() == "master":
                master = _unhex(value.strip(), None, f"{source}: master")
                continue
            version = _parse_version(name.strip(), source)
            if version in keys:
                raise KeyringError(f"{source}: version {version} given twice")
            keys[version] = _unhex(value.strip(), KEY_BYTES, f"{source}: key {version}")
        if not keys:
            raise KeyringError(f"{source}: no keys")
        return cls(keys, max(keys), master)

    def to_json(self) -> dict[str, Any]:
        """The key-file document (contains secrets: write it only to a 0600 file)."""
        doc: dict[str, Any] = {
            "format": FILE_FORMAT,
            "current": self._current,
            "keys": {str(v): self._keys[v].hex() for v in self.versions},
        }
        if self._master is not None:
            doc["master"] = self._master.hex()
        return doc

    # -- writing ---------------------------------------------------------------------

    @classmethod
    def generate(cls) -> Keyring:
        """A fresh in-memory keyring: version 0 and a master secret."""
        return cls({0: secrets.token_bytes(KEY_BYTES)}, 0, secrets.token_bytes(MASTER_BYTES))

    @classmethod
    def generate_file(cls, path: Path) -> Keyring:
        """Create a new key file at ``path`` (mode 0600); refuses to overwrite one."""
        path = Path(path)
        with _locked(path):
            if path.exists():
                raise KeyringError(f"key file {path} already exists; use rotate")
            ring = cls.generate()
            _write_atomic(path, ring.to_json())
        return ring

    @classmethod
    def rotate(cls, path: Path) -> int:
        return rotate(path)

    @classmethod
    def retire(cls, path: Path, version: int) -> None:
        retire(path, version)


def rotate(path: Path) -> int:
    """Add a new key version to the file at ``path``, make it current, return it.

    Old versions are kept for parsing. The next version is the first free slot after the
    current one (wrapping round 31 -> 0); if all 32 are in use, retire one first.
    """
    path = Path(path)
    with _locked(path):
        ring = Keyring.load(path, {})
        used = set(ring.versions)
        for step in range(1, MAX_VERSIONS + 1):
            candidate = (ring.current_version + step) % MAX_VERSIONS
            if candidate not in used:
                break
        else:
            raise KeyringError(
                f"all {MAX_VERSIONS} key versions are in use; retire an old one first"
            )
        keys = {v: ring.cipher_key(v) for v in ring.versions}
        keys[candidate] = secrets.token_bytes(KEY_BYTES)
        master = ring._master if ring._master is not None else secrets.token_bytes(MASTER_BYTES)
        _write_atomic(path, Keyring(keys, candidate, master).to_json())
    log.info("key file %s rotated to version %d", path, candidate)
    return candidate


def retire(path: Path, version: int) -> None:
    """Remove a non-current version: codes minted under it stop resolving."""
    path = Path(path)
    with _locked(path):
        ring = Keyring.load(path, {})
        if version == ring.current_version:
            raise KeyringError("the current version cannot be retired; rotate first")
        if version not in ring.versions:
            raise KeyringError(f"version {version} is not in the key file")
        keys = {v: ring.cipher_key(v) for v in ring.versions if v != version}
        _write_atomic(path, Keyring(keys, ring.current_version, ring._master).to_json())
    log.info("key file %s: version %d retired", path, version)


# -- helpers -------------------------------------------------------------------------


def _parse_version(name: Any, source: str) -> int:
    try:
        version = int(str(name).strip(), 10)
    except ValueError:
        raise KeyringError(f"{source}: key version must be an integer") from None
    if not 0 <= version < MAX_VERSIONS:
        raise KeyringError(f"{source}: key version must be 0..{MAX_VERSIONS - 1}")
    return version


def _unhex(value: Any, length: int | None, what: str) -> bytes:
    # Error messages name the field, never echo the value.
    if not isinstance(value, str):
        raise KeyringError(f"{what}: expected a hex string")
    try:
        raw = bytes.fromhex(value.strip())
    except ValueError:
        raise KeyringError(f"{what}: not valid hex") from None
    if length is not None and len(raw) != length:
        raise KeyringError(f"{what}: expected {length} bytes ({2 * length} hex digits)")
    if length is None and len(raw) < KEY_BYTES:
        raise KeyringError(f"{what}: expected at least {KEY_BYTES} bytes")
    return raw


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise writers (two concurrent ``rotate`` calls must not lose a key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _write_atomic(path: Path, doc: Mapping[str, Any]) -> None:
    """Write ``doc`` to ``path`` with mode 0600; readers see the old or the new file."""
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")
    # mkstemp creates the file 0600 from the start: no window with wider permissions.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
