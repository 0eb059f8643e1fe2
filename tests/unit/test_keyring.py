"""Keyring: loading, rotation, secrecy of key bytes, derived keys; keyed IP hashing."""

from __future__ import annotations

import json
import os
import pickle
import random
import stat
import threading
from pathlib import Path

import pytest

from trace.crypto.iphash import IP_HASH_PURPOSE, _normalise_any, client_ip_hash, normalise_ip
from trace.crypto.keyring import ENV_VAR, MAX_VERSIONS, Keyring, KeyringError, retire, rotate

K0 = bytes(range(16))
K1 = bytes(range(16, 32))
MASTER = bytes(range(100, 132))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _secrets_of(ring: Keyring) -> list[str]:
    """Every way a key could leak into text: hex (both cases) and bytes repr."""
    out = []
    for v in ring.versions:
        key = ring.cipher_key(v)
        out += [key.hex(), key.hex().upper(), repr(key)[2:-1]]
    return out


# -- generation and files --------------------------------------------------------------


def test_generate_file_creates_private_file_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "instance" / "keys.json"
    ring = Keyring.generate_file(path)
    assert _mode(path) == 0o600
    assert ring.versions == (0,) and ring.current_version == 0 and ring.has_master
    loaded = Keyring.load(path, {})
    assert loaded.versions == ring.versions
    assert loaded.cipher_key(0) == ring.cipher_key(0)
    assert len(ring.cipher_key(0)) == 16
    assert loaded.derive("x") == ring.derive("x")
    with pytest.raises(KeyringError):
        Keyring.generate_file(path)  # never overwrite keys that printed labels rely on
    # Two generated keyrings never share a key.
    assert Keyring.generate().cipher_key(0) != ring.cipher_key(0)


def test_rotate_adds_version_keeps_old_and_writes_atomically(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = Keyring.generate_file(path)
    v1 = rotate(path)
    v2 = Keyring.rotate(path)
    assert (v1, v2) == (1, 2)
    ring = Keyring.load(path, {})
    assert ring.versions == (0, 1, 2) and ring.current_version == 2
    assert ring.cipher_key(0) == first.cipher_key(0)
    assert len({ring.cipher_key(v) for v in ring.versions}) == 3
    assert ring.derive("ip") == first.derive("ip")  # master survives rotation
    assert _mode(path) == 0o600
    leftovers = [
        p.name for p in tmp_path.iterdir() if p.name not in {"keys.json", "keys.json.lock"}
    ]
    assert leftovers == []


def test_rotation_exhausts_then_retire_frees_a_slot(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    Keyring.generate_file(path)
    for expected in range(1, MAX_VERSIONS):
        assert rotate(path) == expected
    with pytest.raises(KeyringError):
        rotate(path)
    with pytest.raises(KeyringError):
        retire(path, MAX_VERSIONS - 1)  # current
    with pytest.raises(KeyringError):
        retire(path, 99)
    retire(path, 0)
    assert 0 not in Keyring.load(path, {}).versions
    assert rotate(path) == 0  # wraps round to the freed slot
    ring = Keyring.load(path, {})
    assert ring.current_version == 0 and len(ring.versions) == MAX_VERSIONS


def test_concurrent_rotations_lose_no_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    Keyring.generate_file(path)
    results: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(rotate(path))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == list(range(1, 9))
    assert Keyring.load(path, {}).versions == tuple(range(9))


def test_rotate_file_without_master_adds_one(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"current": 0, "keys": {"0": K0.hex()}}))
    os.chmod(path, 0o600)
    assert not Keyring.load(path, {}).has_master
    rotate(path)
    assert Keyring.load(path, {}).has_master


# -- environment and formats ------------------------------------------------------------


def test_env_compact_form_and_precedence(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    Keyring.generate_file(path)
    env = {ENV_VAR: f"0:{K0.hex()}, 1:{K1.hex()}"}
    ring = Keyring.load(path, env)  # the environment wins over the file
    assert ring.versions == (0, 1) and ring.current_version == 1
    assert ring.cipher_key(0) == K0 and ring.cipher_key(1) == K1
    assert not ring.has_master
    ring = Keyring.load(None, {ENV_VAR: f"1:{K1.hex()},master:{MASTER.hex()}"})
    assert ring.has_master and ring.versions == (1,)


def test_env_json_form() -> None:
    doc = {"current": 0, "keys": {"0": K0.hex(), "1": K1.hex()}, "master": MASTER.hex()}
    ring = Keyring.load(None, {ENV_VAR: json.dumps(doc)})
    assert ring.current_version == 0 and ring.versions == (0, 1)
    assert ring.to_json()["keys"] == doc["keys"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        f"0:{K0.hex()[:-2]}",  # 15 bytes
        f"0:{K0.hex()}00",  # 17 bytes
        f"0:{K0.hex()[:-1]}g",  # not hex
        f"32:{K0.hex()}",  # version out of range
        f"x:{K0.hex()}",
        f"0:{K0.hex()},0:{K1.hex()}",  # duplicate
        f"0:{K0.hex()},master:abcd",  # master too short
        '{"keys": {"0": "' + K0.hex() + '"}, "current": 3}',  # current has no key
        '{"keys": []}',
        '{"keys": {"0": "' + K0.hex() + '"',  # truncated JSON
    ],
)
def test_malformed_key_material_is_rejected_without_echoing_it(text: str) -> None:
    with pytest.raises(KeyringError) as info:
        Keyring.load(None, {ENV_VAR: text} if text else {})
    message = str(info.value)
    assert K0.hex()[:16] not in message and K1.hex()[:16] not in message


def test_missing_file_is_a_keyring_error(tmp_path: Path) -> None:
    with pytest.raises(KeyringError):
        Keyring.load(tmp_path / "absent.json", {})
    with pytest.raises(KeyringError):
        Keyring.load(None, {})


def test_loose_permissions_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys.json"
    Keyring.generate_file(path)
    os.chmod(path, 0o644)
    with caplog.at_level("WARNING"):
        ring = Keyring.load(path, {})
    assert "chmod 600" in caplog.text
    for secret in _secrets_of(ring):
        assert secret not in caplog.text


def test_constructor_validation() -> None:
    with pytest.raises(KeyringError):
        Keyring({}, 0)
    with pytest.raises(KeyringError):
        Keyring({0: K0[:8]}, 0)
    with pytest.raises(KeyringError):
        Keyring({MAX_VERSIONS: K0}, MAX_VERSIONS)
    with pytest.raises(KeyringError):
        Keyring({0: K0}, 1)


# -- secrecy -----------------------------------------------------------------------------


def test_repr_and_str_never_show_key_bytes(tmp_path: Path) -> None:
    ring = Keyring({0: K0, 1: K1}, 1, MASTER)
    for text in (repr(ring), str(ring), f"{ring}", f"{ring!r}", repr([ring]), repr({"k": ring})):
        for secret in [*_secrets_of(ring), MASTER.hex(), repr(MASTER)[2:-1]]:
            assert secret not in text
        assert "versions=[0, 1]" in text and "current=1" in text
    generated = Keyring.generate_file(tmp_path / "k.json")
    for secret in _secrets_of(generated):
        assert secret not in repr(generated)


def test_keyring_cannot_be_pickled() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(Keyring({0: K0}, 0))


# -- derived keys ----------------------------------------------------------------------------


def test_derive_is_deterministic_and_separates_purposes() -> None:
    ring = Keyring({0: K0, 1: K1}, 1, MASTER)
    a, b = ring.derive("ip-hash"), ring.derive("session")
    assert a == ring.derive("ip-hash") and len(a) == 32
    assert a != b
    assert a not in (K0, K1, MASTER) and K0 not in a and K1 not in a
    assert len(ring.derive("x", length=16)) == 16
    # Same master, different code keys: derived keys unchanged (rotation-proof).
    assert Keyring({5: K1}, 5, MASTER).derive("ip-hash") == a
    # Different master: different derived keys.
    assert Keyring({0: K0, 1: K1}, 1, bytes(32)).derive("ip-hash") != a
    with pytest.raises(ValueError):
        ring.derive("")


def test_derive_without_master_uses_lowest_version() -> None:
    a = Keyring({0: K0, 1: K1}, 1).derive("ip-hash")
    assert a == Keyring({0: K0}, 0).derive("ip-hash")
    assert a != Keyring({1: K1}, 1).derive("ip-hash")


# -- keyed IP hash ---------------------------------------------------------------------------


def test_client_ip_hash_is_keyed_and_normalised() -> None:
    key = Keyring({0: K0}, 0, MASTER).derive(IP_HASH_PURPOSE)
    h = client_ip_hash(key, "203.0.113.7")
    assert len(h) == 32 and all(c in "0123456789abcdef" for c in h)
    assert "203.0.113.7" not in h
    assert client_ip_hash(key, " 203.0.113.7 ") == h
    assert client_ip_hash(key, "::ffff:203.0.113.7") == h  # IPv4-mapped IPv6
    assert client_ip_hash(key, "203.0.113.8") != h
    assert client_ip_hash(bytes(32), "203.0.113.7") != h  # different key, different hash
    assert client_ip_hash(key, "2001:DB8:0:0::1") == client_ip_hash(key, "2001:db8::1")
    assert normalise_ip("2001:DB8:0:0::1") == "2001:db8::1"
    assert client_ip_hash(key, "not an ip") == client_ip_hash(key, "NOT AN IP ")
    with pytest.raises(ValueError):
        client_ip_hash(b"short", "1.2.3.4")


def test_ip_hashes_of_a_subnet_are_distinct() -> None:
    key = bytes(range(32))
    hashes = {client_ip_hash(key, f"10.0.{i // 256}.{i % 256}") for i in range(4096)}
    assert len(hashes) == 4096


def test_normalise_ip_fast_path_agrees_with_ipaddress() -> None:
    rng = random.Random(20261129)
    parts = ["0", "1", "9", "10", "99", "100", "199", "200", "249", "250", "255", "256",
             "300", "00", "01", "010", "001", "-1", "", "a", "1a", "٣", "１"]  # fmt: skip
    samples = [" 203.0.113.7 ", "1.2.3", "1.2.3.4.5", "1..2.3", "::ffff:1.2.3.4", "::1"]
    for _ in range(20_000):
        samples.append(".".join(rng.choice(parts) for _ in range(rng.choice((3, 4, 4, 5)))))
        samples.append(".".join(str(rng.randrange(256)) for _ in range(4)))
    for ip in samples:
        assert normalise_ip(ip) == _normalise_any(ip.strip()), ip
