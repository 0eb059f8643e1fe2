"""Trace codes: round trip, uniqueness, rotation, forgery resistance, base32 oracle."""

from __future__ import annotations

import base64
import itertools
import random
import string
import struct
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from trace.crypto import codes
from trace.crypto.codes import CodeId, iter_mint, mint, mint_batch, parse, payload_url
from trace.crypto.keyring import Keyring, rotate

B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@pytest.fixture(scope="module")
def ring() -> Keyring:
    rnd = random.Random(20240601)
    keys = {v: rnd.randbytes(16) for v in (0, 1, 5)}
    return Keyring(keys, current_version=1, master=rnd.randbytes(32))


def _oracle(key: bytes, version: int, run_id: int, serial: int) -> str:
    """The scheme written out independently: AES-ECB of one block + stdlib base32."""
    block = struct.pack(">II8x", run_id, serial)
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    ct = enc.update(block) + enc.finalize()
    return B32[version] + base64.b32encode(ct).decode().rstrip("=")


# -- minting and round trip --------------------------------------------------------------


def test_mint_matches_independent_oracle(ring: Keyring) -> None:
    rnd = random.Random(1)
    for _ in range(200):
        run, serial, version = rnd.getrandbits(32), rnd.getrandbits(32), rnd.choice([0, 1, 5])
        code = mint(ring, run, serial, version)
        assert code == _oracle(ring.cipher_key(version), version, run, serial)


def test_round_trip_many(ring: Keyring) -> None:
    rnd = random.Random(2)
    cases = [(0, 0), (0xFFFFFFFF, 0xFFFFFFFF), (1, 0xFFFFFFFF), (0xFFFFFFFF, 0)]
    cases += [(rnd.getrandbits(32), rnd.getrandbits(32)) for _ in range(2000)]
    for i, (run, serial) in enumerate(cases):
        version = (0, 1, 5)[i % 3]
        code = mint(ring, run, serial, version)
        assert len(code) == codes.CODE_LENGTH == 27
        assert set(code) <= set(B32)
        assert code[0] == B32[version]
        assert parse(ring, code) == CodeId(run_id=run, serial=serial, key_version=version)


def test_default_version_is_current(ring: Keyring) -> None:
    code = mint(ring, 3, 4)
    assert code[0] == B32[ring.current_version]
    assert parse(ring, code) == CodeId(3, 4, ring.current_version)


def test_batch_equals_single_and_streaming(ring: Keyring) -> None:
    batch = mint_batch(ring, 77, 1000, 5000)
    assert batch.dtype == np.dtype("S27") and batch.shape == (5000,)
    for i in range(0, 5000, 97):
        assert batch[i].decode() == mint(ring, 77, 1000 + i)
    chunks = list(iter_mint(ring, 77, 1000, 5000, chunk=1234))
    assert [len(c) for c in chunks] == [1234, 1234, 1234, 1234, 64]
    assert np.array_equal(np.concatenate(chunks), batch)
    for i, raw in enumerate(batch[:500]):
        assert parse(ring, raw.decode()) == CodeId(77, 1000 + i, 1)


def test_distinct_serials_and_runs_give_distinct_codes(ring: Keyring) -> None:
    a = mint_batch(ring, 1, 0, 100_000)
    b = mint_batch(ring, 2, 0, 100_000)
    c = mint_batch(ring, 1, 0, 100_000, key_version=0)
    everything = np.concatenate([a, b, c])
    assert len(np.unique(everything)) == 300_000
    # Bodies (without the version character) differ too: versions are different keys.
    assert len({x[1:] for x in np.concatenate([a, c]).tolist()}) == 200_000


def test_consecutive_serials_look_unrelated(ring: Keyring) -> None:
    # Not enumerable / hides volume: neighbouring serials share no long common prefix.
    batch = mint_batch(ring, 9, 0, 2000).tolist()
    common = [len(_common_prefix(x[1:], y[1:])) for x, y in itertools.pairwise(batch)]
    assert max(common) <= 4


def _common_prefix(a: bytes, b: bytes) -> bytes:
    n = 0
    while n < len(a) and a[n] == b[n]:
        n += 1
    return a[:n]


def test_empty_batch_and_bad_arguments(ring: Keyring) -> None:
    empty = mint_batch(ring, 1, 0, 0)
    assert empty.shape == (0,) and empty.dtype == np.dtype("S27")
    assert list(iter_mint(ring, 1, 0, 0)) == []
    with pytest.raises(ValueError):
        mint_batch(ring, 1, 0xFFFFFFFF, 2)  # serial overflow
    mint_batch(ring, 1, 0xFFFFFFFF, 1)  # the last serial itself is fine
    with pytest.raises(ValueError):
        mint(ring, -1, 0)
    with pytest.raises(ValueError):
        mint(ring, 1 << 32, 0)
    with pytest.raises(ValueError):
        mint_batch(ring, 1, 0, -1)
    with pytest.raises(ValueError):
        mint(ring, 1, 0, key_version=7)  # unknown version
    with pytest.raises(ValueError):
        list(iter_mint(ring, 1, 0, 10, chunk=0))


# -- rotation -----------------------------------------------------------------------------


def test_rotation_keeps_old_codes_and_mints_with_new_version(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = Keyring.generate_file(path)
    old_codes = mint_batch(first, 5, 0, 100).tolist()
    new_version = rotate(path)
    ring = Keyring.load(path, {})
    assert ring.current_version == new_version != first.current_version
    for i, raw in enumerate(old_codes):
        assert parse(ring, raw.decode()) == CodeId(5, i, first.current_version)
    fresh = mint(ring, 5, 0)
    assert fresh[0] == B32[new_version]
    assert fresh != old_codes[0].decode()
    assert parse(ring, fresh) == CodeId(5, 0, new_version)
    # A keyring that never saw the new version rejects the new code.
    assert parse(first, fresh) is None


# -- parsing: tolerance and rejection ------------------------------------------------------


def test_parse_is_case_insensitive_and_strips_whitespace(ring: Keyring) -> None:
    rnd = random.Random(3)
    for serial in range(300):
        code = mint(ring, 42, serial)
        expected = CodeId(42, serial, 1)
        mixed = "".join(ch.lower() if rnd.random() < 0.5 else ch for ch in code)
        assert parse(ring, code.lower()) == expected
        assert parse(ring, mixed) == expected
        assert parse(ring, f"  {mixed}\n") == expected
        assert parse(ring, f"\t{code}\u3000") == expected  # ideographic space from an IME


def _mutations(code: str, rnd: random.Random) -> tuple[str, str]:
    kind = rnd.choice(["substitute", "transpose", "truncate", "extend", "delete", "version"])
    pos = rnd.randrange(len(code))
    if kind == "substitute":
        pool = B32 + "0189"
        ch = rnd.choice([c for c in pool if c != code[pos]])
        return kind, code[:pos] + ch + code[pos + 1 :]
    if kind == "transpose":
        pos = rnd.randrange(len(code) - 1)
        return kind, code[:pos] + code[pos + 1] + code[pos] + code[pos + 2 :]
    if kind == "truncate":
        return kind, code[: rnd.randrange(len(code))]
    if kind == "extend":
        ch = rnd.choice(B32)
        return kind, code[:pos] + ch + code[pos:]
    if kind == "delete":
        return kind, code[:pos] + code[pos + 1 :]
    # Another version character that the keyring knows: decrypts under the wrong key.
    other = rnd.choice([B32[v] for v in (0, 1, 5) if B32[v] != code[0]])
    return kind, other + code[1:]


def test_ten_thousand_mutations_are_all_rejected(ring: Keyring) -> None:
    rnd = random.Random(4)
    genuine = [raw.decode() for raw in mint_batch(ring, 1234, 0, 500).tolist()]
    genuine += [raw.decode() for raw in mint_batch(ring, 99, 7, 500, key_version=0).tolist()]
    seen: dict[str, int] = {}
    tested = 0
    while tested < 10_000:
        code = rnd.choice(genuine)
        kind, mutant = _mutations(code, rnd)
        if mutant.upper() == code:  # e.g. swapping two equal characters
            continue
        result = parse(ring, mutant)
        assert result is None, (kind, code, mutant, result)
        # Also in lower case: case-insensitivity must not widen what is accepted.
        assert parse(ring, mutant.lower()) is None
        seen[kind] = seen.get(kind, 0) + 1
        tested += 1
    assert set(seen) == {"substitute", "transpose", "truncate", "extend", "delete", "version"}
    assert min(seen.values()) > 1000


def test_every_single_substitution_of_one_code_is_rejected(ring: Keyring) -> None:
    code = mint(ring, 8, 8)
    for pos in range(len(code)):
        for ch in B32:
            if ch != code[pos]:
                assert parse(ring, code[:pos] + ch + code[pos + 1 :]) is None


def test_spare_bits_of_last_character_must_be_zero(ring: Keyring) -> None:
    # 26 base32 characters carry 130 bits for a 128-bit block: the last character's two
    # low bits are padding. A lenient decoder would map "...A" and "...B" to one block.
    for serial in range(200):
        code = mint(ring, 6, serial)
        value = B32.index(code[-1])
        assert value & 3 == 0
        for low in (1, 2, 3):
            mutant = code[:-1] + B32[value | low]
            assert base64.b32decode(mutant[1:] + "======") == base64.b32decode(
                code[1:] + "======"
            )  # the stdlib would accept it as the same bytes ...
            assert parse(ring, mutant) is None  # ... we do not


def test_non_ascii_lookalikes_are_rejected(ring: Keyring) -> None:
    # "ı".upper() == "I" and "ſ".upper() == "S": upper-casing before checking ASCII would
    # let these through. Kelvin sign "K" (U+212A) lower-cases to ASCII "k".
    tried = 0
    for serial in range(600):
        code = mint(ring, 11, serial)
        for ascii_ch, lookalike in (("I", "ı"), ("S", "ſ"), ("K", "\u212a")):
            pos = code.find(ascii_ch)
            if pos >= 0:
                mutant = code[:pos] + lookalike + code[pos + 1 :]
                assert mutant.upper() == code or mutant.lower() == code.lower()
                assert parse(ring, mutant) is None
                tried += 1
        full_width = "".join(chr(ord(c) + 0xFEE0) for c in code)  # ＡＢＣ...
        assert parse(ring, full_width) is None
    assert tried > 300


def test_unknown_version_and_wrong_keyring_rejected(ring: Keyring) -> None:
    code = mint(ring, 1, 1)
    assert parse(ring, "H" + code[1:]) is None  # version 7 not in the keyring
    other = Keyring({1: bytes(16)}, 1)
    assert parse(other, code) is None


def test_parse_never_raises_on_junk(ring: Keyring) -> None:
    rnd = random.Random(6)
    pools = [
        B32,
        B32 + B32.lower() + "0189",
        string.printable,
        "溯源码二维码正品假冒ıſ\u212a\u00e9\u0130\ufb00",
        "".join(chr(c) for c in range(0, 0x300)),
        "\x00\ud800\udfff\U0001f600",
    ]
    for i in range(10_000):
        pool = rnd.choice(pools)
        length = 27 if i % 3 == 0 else rnd.randrange(0, 64)
        junk = "".join(rnd.choice(pool) for _ in range(length))
        assert parse(ring, junk) is None, junk
    for not_text in [None, b"A" * 27, 12345, 3.5, ["A" * 27], {"code": "x"}, object()]:
        assert parse(ring, not_text) is None


def test_random_well_formed_strings_never_validate(ring: Keyring) -> None:
    # Syntactically perfect codes (known version, canonical base32) made up without the
    # key: each passes with probability 2^-64.
    rnd = random.Random(7)
    for _ in range(10_000):
        body = base64.b32encode(rnd.randbytes(16)).decode().rstrip("=")
        assert parse(ring, rnd.choice("ABF") + body) is None


def test_failure_is_always_the_same_none(ring: Keyring) -> None:
    code = mint(ring, 1, 2)
    failures = [
        code[:-1],  # length
        code[:-1] + "!",  # alphabet
        "H" + code[1:],  # unknown version
        code[:-1] + B32[B32.index(code[-1]) | 1],  # padding bits
        code[:5] + ("A" if code[5] != "A" else "B") + code[6:],  # check bits
    ]
    assert [parse(ring, f) for f in failures] == [None] * len(failures)


# -- vectorised base32 ----------------------------------------------------------------------


@pytest.mark.parametrize("width", [0, 1, 2, 3, 4, 5, 6, 9, 10, 11, 15, 16, 17, 20, 33])
def test_b32encode_rows_matches_stdlib(width: int) -> None:
    rng = np.random.default_rng(width)
    # More rows than one internal chunk, so chunk boundaries are exercised.
    rows = codes._B32_CHUNK + 37 if width == 16 else 500
    data = rng.integers(0, 256, size=(rows, width), dtype=np.uint8)
    encoded = codes.b32encode_rows(data)
    assert encoded.shape == (rows, -(-width * 8 // 5))
    for i in list(range(300)) + list(range(rows - 300, rows)):
        expected = base64.b32encode(data[i].tobytes()).rstrip(b"=")
        assert encoded[i].tobytes() == expected


def test_b32encode_rows_edge_values() -> None:
    data = np.array([[0] * 16, [255] * 16, list(range(16)), list(range(240, 256))], np.uint8)
    for row, enc in zip(data, codes.b32encode_rows(data), strict=True):
        assert enc.tobytes() == base64.b32encode(row.tobytes()).rstrip(b"=")
    with pytest.raises(ValueError):
        codes.b32encode_rows(np.zeros((2, 3), dtype=np.int32))


# -- QR payload ----------------------------------------------------------------------------


def test_payload_url(ring: Keyring) -> None:
    code = mint(ring, 1, 1)
    assert payload_url("https://t.example.cn/q/", code) == f"HTTPS://T.EXAMPLE.CN/Q/{code}"
    assert payload_url("https://t.example.cn/q", code.lower()) == (f"HTTPS://T.EXAMPLE.CN/Q/{code}")
    assert payload_url("http://10.0.0.5:8080/q/", code).startswith("HTTP://10.0.0.5:8080/Q/")
    url = payload_url("https://t.example.cn/q/", code)
    assert set(url) <= codes.QR_ALPHANUMERIC and len(codes.QR_ALPHANUMERIC) == 45
    for bad_base in ["https://t.example.cn/q?c=", "https://t_x.cn/q/", "https://溯源.cn/q/", ""]:
        with pytest.raises(ValueError):
            payload_url(bad_base, code)
    with pytest.raises(ValueError):
        payload_url("https://t.example.cn/q/", code + "#")


def test_batch_across_internal_chunk_boundary(ring: Keyring) -> None:
    edge = codes._MINT_CHUNK
    batch = mint_batch(ring, 4, 10, edge + 50, key_version=5)
    for i in [0, edge - 2, edge - 1, edge, edge + 1, edge + 49]:
        assert batch[i].decode() == _oracle(ring.cipher_key(5), 5, 4, 10 + i)


def _parse_oracle(ring: Keyring, text: str) -> CodeId | None:
    """parse as written with the libraries: base64.b32decode and a fresh AES context."""
    text = text.strip()
    if len(text) != codes.CODE_LENGTH or not text.isascii():
        return None
    text = text.upper()
    if text[0] not in codes.VERSION_ALPHABET:
        return None
    version = codes.VERSION_ALPHABET.index(text[0])
    if version not in ring.versions:
        return None
    body = text[1:]
    if body[-1] not in codes.B32_ALPHABET or codes.B32_ALPHABET.index(body[-1]) & 0b11:
        return None
    try:
        block = base64.b32decode(body + "======")
    except ValueError:  # binascii.Error is a ValueError
        return None
    decryptor = Cipher(algorithms.AES(ring.cipher_key(version)), modes.ECB()).decryptor()
    plain = decryptor.update(block) + decryptor.finalize()
    if plain[8:] != bytes(8):
        return None
    return CodeId(int.from_bytes(plain[:4], "big"), int.from_bytes(plain[4:8], "big"), version)


def test_parse_agrees_with_base64_and_a_fresh_cipher(ring: Keyring) -> None:
    """parse reads the base32 body as one integer and keeps one AES context per thread and
    key; the oracle decodes with base64.b32decode and a new context every time."""
    rnd = random.Random(18004)
    texts = [mint(ring, rnd.randrange(1, 2**32), rnd.randrange(2**32)) for _ in range(300)]
    texts += [mint(ring, 9, 9, version) for version in ring.versions]
    ascii_ = string.ascii_letters + string.digits + " _+-=!/\t"
    for text in list(texts):
        for _ in range(10):  # one character replaced, case changed, or blanks around it
            i = rnd.randrange(len(text))
            texts.append(text[:i] + rnd.choice(ascii_) + text[i + 1 :])
        texts += [text.lower(), f" {text}\n", text[:-1] + "=", text[:-1]]
    texts += ["".join(rnd.choice(ascii_) for _ in range(27)) for _ in range(2000)]
    texts += ["A" + "2" * 26, "A" + "A" * 26, "Z" * 27]
    parsed = 0
    for text in texts:
        assert parse(ring, text) == _parse_oracle(ring, text), text
        parsed += parse(ring, text) is not None
    assert parsed >= 300  # the oracle is not just refusing everything
