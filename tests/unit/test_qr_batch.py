"""Batch QR encoder: python-qrcode is the oracle (same matrix, mask included), zxing-cpp
the independent decoder."""

from __future__ import annotations

import random
import string

import numpy as np
import pytest
import qrcode
import qrcode.base
import qrcode.util
import zxingcpp
from PIL import Image

from trace.labels import qr_tables
from trace.labels.qr_batch import alnum_version_for, encode_batch, iter_encoded

ECC = {
    "L": qrcode.constants.ERROR_CORRECT_L,
    "M": qrcode.constants.ERROR_CORRECT_M,
    "Q": qrcode.constants.ERROR_CORRECT_Q,
    "H": qrcode.constants.ERROR_CORRECT_H,
}
BASE32 = string.ascii_uppercase + "234567"
PREFIX = "HTTPS://T.EXAMPLE.CN/Q/"


def reference(data: str, version: int, ecc: str) -> np.ndarray:
    q = qrcode.QRCode(version=version, error_correction=ECC[ecc], border=0)
    q.add_data(qrcode.util.QRData(data, mode=qrcode.util.MODE_ALPHA_NUM))
    q.make(fit=False)
    return np.array(q.get_matrix(), dtype=np.uint8)


def trace_urls(rng: random.Random, n: int) -> list[str]:
    """Payloads shaped like the product's: prefix, key version, 26 base32 characters."""
    return [PREFIX + rng.choice("123") + "".join(rng.choices(BASE32, k=26)) for _ in range(n)]


def random_alnum(rng: random.Random, n: int, length: int) -> list[str]:
    return ["".join(rng.choices(qr_tables.ALNUM_CHARS, k=length)) for _ in range(n)]


def mismatches(payloads: list[str], got: np.ndarray, version: int, ecc: str) -> list[str]:
    return [
        p
        for p, m in zip(payloads, got, strict=True)
        if not np.array_equal(m, reference(p, version, ecc))
    ]


def chosen_mask(matrix: np.ndarray) -> int:
    """Mask number read back from the format information around the top-left finder:
    bits 0-5 at rows 0-5 of column 8, bits 6-7 at rows 7-8, bit 8 at column 7 of row 8,
    bits 9-14 at columns 5..0 of row 8."""
    cells = [(r, 8) for r in (0, 1, 2, 3, 4, 5, 7, 8)] + [(8, c) for c in (7, 5, 4, 3, 2, 1, 0)]
    bits = sum(int(matrix[rc]) << i for i, rc in enumerate(cells))
    return ((bits ^ 0b101010000010010) >> 10) & 0b111


# --------------------------------------------------------------------------- tables


def test_tables_match_python_qrcode_for_every_version_and_level() -> None:
    for version in range(1, 41):
        assert list(qr_tables.alignment_positions(version)) == list(
            qrcode.util.pattern_position(version)
        )
        if version >= 7:
            assert qr_tables.version_bits(version) == qrcode.util.BCH_type_number(version)
        for ecc, level in ECC.items():
            ec = qr_tables.ec_codewords_per_block(version, ecc)
            ours = [(k + ec, k) for k in qr_tables.block_data_lengths(version, ecc)]
            theirs = [(b.total_count, b.data_count) for b in qrcode.base.rs_blocks(version, level)]
            assert ours == theirs, (version, ecc)
            for mask in range(8):
                assert qr_tables.format_bits(ecc, mask) == qrcode.util.BCH_type_info(
                    (level << 3) | mask
                )


def test_reed_solomon_reference_vector() -> None:
    # ISO/IEC 18004 Annex I: "01234567" at 1-M.
    data = bytes.fromhex("10200C5661 80EC11EC11EC11EC11EC11".replace(" ", ""))
    assert bytes(qr_tables.rs_remainder(data, 10)) == bytes.fromhex("A524D4C1ED36C7872C55")


def test_alnum_version_for_matches_python_qrcode_best_fit() -> None:
    for ecc, level in ECC.items():
        for length in [*range(0, 120, 7), 300, 1000, 1800]:
            q = qrcode.QRCode(error_correction=level)
            q.add_data(qrcode.util.QRData("A" * length, mode=qrcode.util.MODE_ALPHA_NUM))
            try:
                expected = q.best_fit()
            except qrcode.exceptions.DataOverflowError:
                with pytest.raises(ValueError):
                    alnum_version_for(length, ecc)
                continue
            assert alnum_version_for(length, ecc) == expected, (length, ecc)


def test_trace_url_is_version_3_at_ecc_m() -> None:
    assert alnum_version_for(len(trace_urls(random.Random(0), 1)[0]), "M") == 3
    assert alnum_version_for(56, "M") == 3
    assert alnum_version_for(4296, "L") == 40
    with pytest.raises(ValueError):
        alnum_version_for(4297, "L")


# --------------------------------------------------------------------------- oracle


def test_oracle_trace_urls_version_3_m() -> None:
    """1,101 product-shaped codes: more than one inner step and an odd count, so the
    step boundary and the two-codes-per-word padding are exercised."""
    rng = random.Random(20240601)
    payloads = trace_urls(rng, 1101)
    got = encode_batch(payloads, "M")
    assert got.shape == (1101, 29, 29) and got.dtype == np.uint8
    assert mismatches(payloads, got, 3, "M") == []
    # Mask selection is real: the oracle's choices are spread over the masks.
    assert len({chosen_mask(m) for m in got}) >= 6


@pytest.mark.parametrize(
    ("length", "ecc", "version", "count"),
    [
        (56, "L", None, 40),
        (56, "Q", None, 40),
        (56, "H", None, 40),
        (0, "M", None, 3),
        (1, "H", None, 20),  # odd length: the last character is 6 bits
        (25, "L", 1, 20),  # exactly full
        (20, "M", 2, 20),  # smaller than its version needs
        (47, "Q", 4, 20),  # 33 modules: one code per word
        (55, "H", None, 20),  # RS blocks of two lengths
        (100, "H", None, 10),  # version 8: six blocks, version information
        (20, "M", 7, 10),  # version information on a short payload
        (220, "L", None, 10),  # version 7 by length
        (9, "H", 12, 3),  # wider than a 64-bit word: boolean penalty path
    ],
)
def test_oracle_other_shapes(length: int, ecc: str, version: int | None, count: int) -> None:
    rng = random.Random(length * 131 + ord(ecc))
    payloads = random_alnum(rng, count, length)
    got = encode_batch(payloads, ecc, version)
    used = version or alnum_version_for(length, ecc)
    assert got.shape == (count, 17 + 4 * used, 17 + 4 * used)
    assert mismatches(payloads, got, used, ecc) == []


def test_bytes_and_str_payloads_agree_and_iter_matches_batch() -> None:
    payloads = trace_urls(random.Random(7), 23)
    whole = encode_batch(payloads)
    assert np.array_equal(encode_batch([p.encode() for p in payloads]), whole)
    as_array = np.array([p.encode() for p in payloads], dtype=f"S{len(payloads[0])}")
    assert np.array_equal(encode_batch(as_array), whole)
    assert np.array_equal(encode_batch(as_array.view(np.uint8).reshape(23, -1)), whole)
    chunks = list(iter_encoded(iter(payloads), chunk=5))
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 3]
    assert np.array_equal(np.concatenate(chunks), whole)
    assert list(iter_encoded([])) == []
    assert encode_batch([]).shape[0] == 0


# --------------------------------------------------------------------------- decoder


def render(matrix: np.ndarray, scale: int = 6, quiet: int = 4) -> Image.Image:
    padded = np.pad(matrix, quiet)
    pixels = np.where(padded == 1, 0, 255).astype(np.uint8)
    return Image.fromarray(np.kron(pixels, np.ones((scale, scale), dtype=np.uint8)))


@pytest.mark.parametrize(
    ("payloads", "ecc"),
    [
        (trace_urls(random.Random(1), 4), "M"),
        (trace_urls(random.Random(2), 2), "L"),
        (trace_urls(random.Random(3), 2), "Q"),
        (trace_urls(random.Random(4), 2), "H"),
        (random_alnum(random.Random(5), 2, 220), "L"),
    ],
)
def test_zxing_decodes_matrices(payloads: list[str], ecc: str) -> None:
    for payload, matrix in zip(payloads, encode_batch(payloads, ecc), strict=True):
        results = zxingcpp.read_barcodes(render(matrix))
        assert [r.text for r in results] == [payload]
        assert results[0].format == zxingcpp.BarcodeFormat.QRCode


# --------------------------------------------------------------------------- errors


def test_rejects_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="same length"):
        encode_batch(["ABC", "ABCD"])
    stream = iter_encoded(["ABC", "DEF", "GHIJ"], chunk=2)
    next(stream)
    with pytest.raises(ValueError, match="same length"):
        next(stream)


@pytest.mark.parametrize("bad", ["HTTPS://t.example.cn", "A#B", "追溯码", "A_B", "A\nB"])
def test_rejects_characters_outside_the_alphanumeric_set(bad: str) -> None:
    with pytest.raises(ValueError, match="alphanumeric"):
        encode_batch([bad])


def test_rejects_mixed_payload_types() -> None:
    with pytest.raises(ValueError):
        encode_batch(["AB", b"CD"])  # type: ignore[list-item]


def test_rejects_data_that_does_not_fit() -> None:
    with pytest.raises(ValueError):
        encode_batch(["A" * 4297], "L")
    with pytest.raises(ValueError, match="do not fit version 1"):
        encode_batch(["A" * 26], "L", version=1)


def test_rejects_bad_level_version_and_chunk() -> None:
    with pytest.raises(ValueError):
        encode_batch(["AB"], "X")
    with pytest.raises(ValueError):
        encode_batch(["AB"], "M", version=41)
    with pytest.raises(ValueError):
        next(iter_encoded(["AB"], chunk=0))


def test_streaming_keeps_only_one_chunk() -> None:
    """iter_encoded consumes its input lazily: a chunk is produced before the input ends."""
    pulled = 0

    def payloads() -> object:
        nonlocal pulled
        for p in trace_urls(random.Random(9), 50):
            pulled += 1
            yield p

    first = next(iter_encoded(payloads(), chunk=10))  # type: ignore[arg-type]
    assert first.shape == (10, 29, 29)
    assert pulled == 10
