"""Constant tables and small helpers of the QR Code standard (ISO/IEC 18004:2015).

Pure Python, no numpy: the batch encoder (qr_batch) builds its per-version plans from these.
The two block tables below are the standard's Table 9 in compact form; everything else
(codeword counts, block split, alignment positions, BCH words) is derived, and
tests/unit/test_qr_batch.py checks the derivations against python-qrcode for all 160
version/level pairs.
"""

from __future__ import annotations

from functools import cache

ALNUM_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
ECC_LEVELS = "LMQH"
# Two-bit error correction level indicator of the format information (L=01, M=00, Q=11, H=10).
ECC_FORMAT_BITS = {"L": 1, "M": 0, "Q": 3, "H": 2}
MODE_ALNUM_INDICATOR = 0b0010
PAD_BYTES = (0xEC, 0x11)

# Index 0 unused so that the tables are indexed by version directly.
_EC_PER_BLOCK = {
    "L": (0, 7, 10, 15, 20, 26, 18, 20, 24, 30, 18, 20, 24, 26, 30, 22, 24, 28, 30, 28, 28,
          28, 28, 30, 30, 26, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30),
    "M": (0, 10, 16, 26, 18, 24, 16, 18, 22, 22, 26, 30, 22, 22, 24, 24, 28, 28, 26, 26, 26,
          26, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28),
    "Q": (0, 13, 22, 18, 26, 18, 24, 18, 22, 20, 24, 28, 26, 24, 20, 30, 24, 28, 28, 26, 30,
          28, 30, 30, 30, 30, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30),
    "H": (0, 17, 28, 22, 16, 22, 28, 26, 26, 24, 28, 24, 28, 22, 24, 24, 30, 28, 28, 26, 28,
          30, 24, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30),
}  # fmt: skip
_NUM_BLOCKS = {
    "L": (0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 4, 4, 6, 6, 6, 6, 7, 8, 8, 9, 9, 10, 12,
          12, 12, 13, 14, 15, 16, 17, 18, 19, 19, 20, 21, 22, 24, 25),
    "M": (0, 1, 1, 1, 2, 2, 4, 4, 4, 5, 5, 5, 8, 9, 9, 10, 10, 11, 13, 14, 16, 17, 17, 18,
          20, 21, 23, 25, 26, 28, 29, 31, 33, 35, 37, 38, 40, 43, 45, 47, 49),
    "Q": (0, 1, 1, 2, 2, 4, 4, 6, 6, 8, 8, 8, 10, 12, 16, 12, 17, 16, 18, 21, 20, 23, 23,
          25, 27, 29, 34, 34, 35, 38, 40, 43, 45, 48, 51, 53, 56, 59, 62, 65, 68),
    "H": (0, 1, 1, 2, 4, 4, 4, 5, 6, 8, 8, 11, 11, 16, 16, 18, 16, 19, 21, 25, 25, 25, 34,
          30, 32, 35, 37, 40, 42, 45, 48, 51, 54, 57, 60, 63, 66, 70, 74, 77, 81),
}  # fmt: skip

_FORMAT_GENERATOR = 0b10100110111  # x^10 + x^8 + x^5 + x^4 + x^2 + x + 1
_FORMAT_XOR_MASK = 0b101010000010010
_VERSION_GENERATOR = 0b1111100100101  # x^12 + x^11 + x^10 + x^9 + x^8 + x^5 + x^2 + 1


def check_version(version: int) -> None:
    if not 1 <= version <= 40:
        raise ValueError(f"QR version must be 1..40, got {version}")


def check_ecc(ecc: str) -> None:
    if ecc not in ECC_FORMAT_BITS:
        raise ValueError(f"ECC level must be one of L, M, Q, H, got {ecc!r}")


def symbol_size(version: int) -> int:
    return 17 + 4 * version


def raw_data_modules(version: int) -> int:
    """Modules left for codewords (data + ECC + remainder bits) once function patterns,
    format and version information are placed."""
    result = (16 * version + 128) * version + 64
    if version >= 2:
        n_align = version // 7 + 2
        result -= (25 * n_align - 10) * n_align - 55
        if version >= 7:
            result -= 36  # two 6x3 version information blocks
    return result


def total_codewords(version: int) -> int:
    return raw_data_modules(version) // 8


def ec_codewords_per_block(version: int, ecc: str) -> int:
    return _EC_PER_BLOCK[ecc][version]


def block_data_lengths(version: int, ecc: str) -> list[int]:
    """Data codewords of each RS block, in block order: the shorter blocks come first and
    the longer ones (one more data codeword) after, as the standard lays them out."""
    n_blocks = _NUM_BLOCKS[ecc][version]
    total = total_codewords(version)
    n_long = total % n_blocks
    short_total = total // n_blocks
    short_data = short_total - _EC_PER_BLOCK[ecc][version]
    return [short_data] * (n_blocks - n_long) + [short_data + 1] * n_long


def data_codewords(version: int, ecc: str) -> int:
    return sum(block_data_lengths(version, ecc))


def char_count_bits(version: int) -> int:
    """Length of the alphanumeric character count indicator."""
    return 9 if version <= 9 else 11 if version <= 26 else 13


def alnum_bits(length: int, version: int) -> int:
    """Bits of one alphanumeric segment (mode + count + data), before terminator/padding."""
    return 4 + char_count_bits(version) + 11 * (length // 2) + 6 * (length % 2)


@cache
def alignment_positions(version: int) -> tuple[int, ...]:
    """Row/column centre coordinates of alignment patterns (ISO 18004 Annex E)."""
    if version == 1:
        return ()
    n_align = version // 7 + 2
    last = symbol_size(version) - 7
    # Version 32 is the one exception to the even-spacing rule.
    step = 26 if version == 32 else (version * 8 + n_align * 3 + 5) // (n_align * 4 - 4) * 2
    rest = [last - i * step for i in range(n_align - 1)]
    return (6, *reversed(rest))


def _bch_remainder(value: int, generator: int) -> int:
    glen = generator.bit_length()
    while value.bit_length() >= glen:
        value ^= generator << (value.bit_length() - glen)
    return value


def format_bits(ecc: str, mask: int) -> int:
    """15-bit format information word (BCH(15,5), XOR-masked) for ECC level and mask."""
    data = (ECC_FORMAT_BITS[ecc] << 3) | mask
    return ((data << 10) | _bch_remainder(data << 10, _FORMAT_GENERATOR)) ^ _FORMAT_XOR_MASK


def version_bits(version: int) -> int:
    """18-bit version information word (BCH(18,6)); present from version 7 on."""
    return (version << 12) | _bch_remainder(version << 12, _VERSION_GENERATOR)


def _gf_tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Antilog (doubled, so products need no modulo) and log tables of GF(256) with the
    QR primitive polynomial x^8 + x^4 + x^3 + x^2 + 1."""
    exp = [0] * 512
    log = [0] * 256
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & 0x100:
            x ^= 0x11D
    for i in range(255, 512):
        exp[i] = exp[i - 255]
    return tuple(exp), tuple(log)


GF_EXP, GF_LOG = _gf_tables()


def gf_mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return GF_EXP[GF_LOG[a] + GF_LOG[b]]


@cache
def rs_generator(degree: int) -> tuple[int, ...]:
    """Coefficients (highest degree first, leading 1 included) of prod_{i<degree}(x - a^i)."""
    poly = [1]
    for i in range(degree):
        root = GF_EXP[i]
        nxt = [*poly, 0]
        for j, coef in enumerate(poly):
            nxt[j + 1] ^= gf_mul(coef, root)
        poly = nxt
    return tuple(poly)


def rs_remainder(data: list[int] | bytes, degree: int) -> list[int]:
    """Reference (scalar) Reed-Solomon ECC codewords of one block; used to build the
    vectorised tables and in tests."""
    gen = rs_generator(degree)
    rem = [0] * degree
    for byte in data:
        factor = byte ^ rem[0]
        rem = [*rem[1:], 0]
        if factor:
            for j in range(degree):
                rem[j] ^= gf_mul(gen[j + 1], factor)
    return rem
