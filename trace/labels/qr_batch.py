"""Batch QR Code encoder: every code of a label run at once, vectorised with numpy.

All payloads of a run are one alphanumeric segment of the same length, so they share
version, ECC level, bit-stream layout, block structure and module placement. Everything
that depends only on those is computed once per (version, level[, length]) in a cached plan;
per code there is only array work:

1. characters -> values with a 256-entry lookup table, pairs -> 11-bit groups, bit stream
   written into a per-run template (mode, count, terminator and pad bytes are constant);
2. Reed-Solomon ECC: the code is linear over GF(2), so the parity of a block is the XOR of
   one precomputed table row per (data position, byte value) -- one gather + XOR-reduce;
3. interleaving and the zig-zag placement are one fixed index map from bit-stream rows to
   module positions (one row gather: arrays are code-minor, shape (feature, n));
4. mask choice: each row of a symbol is packed into a machine word -- two codes per uint64
   for symbols up to 31 modules (versions 1-3), one code per uint64 up to 64 modules. The
   four penalty rules then become shifts/ANDs within a word (along rows), the same logic
   between neighbouring row words (down columns) and popcounts, for all eight masks over
   all codes of a chunk. Larger symbols use the same rules on a boolean module array.
5. the chosen mask's function patterns, format and version information are XORed in per
   row word and the words unpacked into the (n, size, size) output.

The penalty reproduces python-qrcode's ``util.lost_point`` exactly (it is the oracle):
masks are scored with the format/version areas and the dark module still light, finder-like
patterns are only looked for inside the symbol, and the first mask with the lowest score wins.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from trace.labels import qr_tables as t

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]

# Codes per inner step: big enough to amortise numpy call overhead, small enough that the
# penalty working set (a few (29, n) uint64 arrays) stays in the L2 cache.
_STEP = 1024

_CHAR_VALUE = np.full(256, 255, dtype=np.uint8)
for _i, _ch in enumerate(t.ALNUM_CHARS):
    _CHAR_VALUE[ord(_ch)] = _i


def alnum_version_for(length: int, ecc: str) -> int:
    """Smallest version holding one alphanumeric segment of ``length`` characters."""
    t.check_ecc(ecc)
    if length < 0:
        raise ValueError("length must be >= 0")
    for version in range(1, 41):
        if t.alnum_bits(length, version) <= 8 * t.data_codewords(version, ecc):
            return version
    raise ValueError(f"{length} alphanumeric characters do not fit a QR code at level {ecc}")


# --------------------------------------------------------------------------- plans


def _mask_pattern(mask: int, size: int) -> npt.NDArray[np.bool_]:
    i, j = np.indices((size, size))
    if mask == 0:
        return (i + j) % 2 == 0
    if mask == 1:
        return i % 2 == 0
    if mask == 2:
        return j % 3 == 0
    if mask == 3:
        return (i + j) % 3 == 0
    if mask == 4:
        return (i // 2 + j // 3) % 2 == 0
    if mask == 5:
        return (i * j) % 2 + (i * j) % 3 == 0
    if mask == 6:
        return ((i * j) % 2 + (i * j) % 3) % 2 == 0
    if mask == 7:
        return ((i * j) % 3 + (i + j) % 2) % 2 == 0
    raise ValueError(mask)


def _format_coords(size: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The two positions of format bit i (i = 0 is the least significant bit)."""
    coords = []
    for i in range(15):
        if i < 6:
            vertical = (i, 8)
        elif i < 8:
            vertical = (i + 1, 8)
        else:
            vertical = (size - 15 + i, 8)
        if i < 8:
            horizontal = (8, size - 1 - i)
        elif i == 8:
            horizontal = (8, 7)
        else:
            horizontal = (8, 14 - i)
        coords.append((vertical, horizontal))
    return coords


def _function_patterns(version: int) -> tuple[npt.NDArray[np.bool_], U8]:
    """(is-function-module, module value with format/version areas and dark module light)."""
    size = t.symbol_size(version)
    func = np.zeros((size, size), dtype=bool)
    val = np.zeros((size, size), dtype=np.uint8)
    for r0, c0 in ((0, 0), (size - 7, 0), (0, size - 7)):
        for r in range(-1, 8):
            for c in range(-1, 8):
                if not (0 <= r0 + r < size and 0 <= c0 + c < size):
                    continue
                ring = (0 <= r <= 6 and c in (0, 6)) or (0 <= c <= 6 and r in (0, 6))
                func[r0 + r, c0 + c] = True
                val[r0 + r, c0 + c] = ring or (2 <= r <= 4 and 2 <= c <= 4)
    pos = t.alignment_positions(version)
    for row in pos:
        for col in pos:
            if func[row, col]:  # would overlap a finder pattern
                continue
            for r in range(-2, 3):
                for c in range(-2, 3):
                    func[row + r, col + c] = True
                    val[row + r, col + c] = max(abs(r), abs(c)) != 1
    for i in range(8, size - 8):
        for r, c in ((i, 6), (6, i)):
            if not func[r, c]:
                func[r, c] = True
                val[r, c] = i % 2 == 0
    for vertical, horizontal in _format_coords(size):
        func[vertical] = func[horizontal] = True
    func[size - 8, 8] = True
    if version >= 7:
        func[:6, size - 11 : size - 8] = True
        func[size - 11 : size - 8, :6] = True
    return func, val


def _zigzag(func: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Data module coordinates in placement order (two-column zig-zag from bottom right)."""
    size = func.shape[0]
    order = []
    upward = True
    right = size - 1
    while right > 0:
        if right == 6:  # the vertical timing pattern column is skipped
            right = 5
        rows = range(size - 1, -1, -1) if upward else range(size)
        for r in rows:
            for c in (right, right - 1):
                if not func[r, c]:
                    order.append((r, c))
        upward = not upward
        right -= 2
    return order


def _row_words(modules: npt.NDArray[np.uint8]) -> U64:
    """(..., S, S) 0/1 modules -> (..., S) uint64 row words, bit j = column j (S <= 64)."""
    packed = np.packbits(modules, axis=-1, bitorder="little")
    buf = np.zeros((*packed.shape[:-1], 8), dtype=np.uint8)
    buf[..., : packed.shape[-1]] = packed
    return buf.view("<u8")[..., 0].astype(np.uint64)


@dataclass(frozen=True)
class _RSGroup:
    """Blocks of one data length: where they sit and the table that encodes them."""

    first_block: int
    count: int
    data_len: int
    data_offset: int
    table: U64  # (data_len * 256, words): parity contribution of byte value v at position i
    row_base: npt.NDArray[np.intp]  # i * 256 for i in range(data_len)


@dataclass(frozen=True)
class _Plan:
    """Everything about a (version, level) that is the same for every code."""

    version: int
    ecc: str
    size: int
    data_words: int
    ec_len: int  # ECC codewords per block
    n_blocks: int
    groups: tuple[_RSGroup, ...]
    n_bit_rows: int  # data bits, ECC bits, one zero bit
    # Source bit (row of the bit buffer) of every module of a row-padded matrix
    # (S rows of `row_bits` modules); modules that hold no codeword bit read the zero bit.
    module_src: npt.NDArray[np.intp]
    row_bits: int  # 32 or 64 for packed symbols, S for the boolean path
    packed: bool  # penalty on row words (S <= 64) or on a boolean array
    paired: bool  # S <= 31: two codes share one uint64 (low and high half)
    test_words: U64  # (8, S, 1) function patterns (scoring form) + mask, both halves if paired
    same_h_flip: U64  # (8, S, 1) what the mask does to "module j equals j+1"
    same_v_flip: U64  # (8, S-1, 1) what the mask does to "row r equals row r+1", valid bits
    final_words: npt.NDArray[np.unsignedinteger]  # (8, S) final rows per mask, uint32/uint64
    valid: np.uint64  # bits of a word that hold modules
    pairs: np.uint64  # bits j of a word with j and j+1 both modules
    test_modules: U8  # (8, S*S) scoring form, for the boolean path
    final_modules: U8  # (8, S*S) final form, for the boolean path
    n4_double: npt.NDArray[np.int32]  # 2 * rule-4 penalty by dark module count


def _rs_table(data_len: int, ec_len: int) -> U64:
    """Parity of a block holding only byte v at position i, for all i and v, as uint64
    words. RS encoding is linear, so a block's parity is the XOR of its bytes' rows."""
    words = (ec_len + 7) // 8
    unit = np.zeros((data_len, 8 * words), dtype=np.int64)
    for i in range(data_len):
        msg = [0] * data_len
        msg[i] = 1
        unit[i, :ec_len] = t.rs_remainder(msg, ec_len)
    exp = np.array(t.GF_EXP, dtype=np.int64)
    log = np.array(t.GF_LOG, dtype=np.int64)
    prod = exp[log[np.arange(256)][None, :, None] + log[unit][:, None, :]]
    prod[:, 0, :] = 0  # byte value 0
    prod[np.broadcast_to((unit == 0)[:, None, :], prod.shape)] = 0  # zero coefficient
    table = np.ascontiguousarray(prod.astype(np.uint8).reshape(data_len * 256, 8 * words))
    return table.view("<u8").astype(np.uint64)


@lru_cache(maxsize=64)
def _plan(version: int, ecc: str) -> _Plan:
    size = t.symbol_size(version)
    lengths = t.block_data_lengths(version, ecc)
    ec_len = t.ec_codewords_per_block(version, ecc)
    n_blocks = len(lengths)
    data_words = sum(lengths)
    total = t.total_codewords(version)
    assert total == data_words + n_blocks * ec_len

    groups = []
    offset = 0
    for data_len, members in itertools.groupby(enumerate(lengths), key=lambda x: x[1]):
        blocks = [b for b, _ in members]
        groups.append(
            _RSGroup(
                first_block=blocks[0],
                count=len(blocks),
                data_len=data_len,
                data_offset=offset,
                table=_rs_table(data_len, ec_len),
                row_base=np.arange(data_len, dtype=np.intp) * 256,
            )
        )
        offset += data_len * len(blocks)

    # Codeword order in the symbol: i-th data codeword of every block in turn, then the
    # i-th ECC codeword of every block. Entries index [data codewords | ECC blocks].
    starts = [sum(lengths[:b]) for b in range(n_blocks)]
    order: list[int] = []
    for i in range(max(lengths)):
        order.extend(starts[b] + i for b in range(n_blocks) if i < lengths[b])
    for i in range(ec_len):
        order.extend(data_words + b * ec_len + i for b in range(n_blocks))
    zero_bit = 8 * total

    func, test_val = _function_patterns(version)
    coords = _zigzag(func)
    assert len(coords) == t.raw_data_modules(version)
    packed = size <= 64
    row_bits = (32 if size <= 32 else 64) if packed else size
    module_src = np.full(size * row_bits, zero_bit, dtype=np.intp)
    for bit, (r, c) in enumerate(coords[: 8 * total]):
        module_src[r * row_bits + c] = 8 * order[bit // 8] + bit % 8

    data_region = ~func
    test = np.empty((8, size, size), dtype=np.uint8)
    final = np.empty((8, size, size), dtype=np.uint8)
    for mask in range(8):
        masked = (_mask_pattern(mask, size) & data_region).astype(np.uint8)
        test[mask] = test_val | masked
        fin = test_val | masked
        bits = t.format_bits(ecc, mask)
        for i, (vertical, horizontal) in enumerate(_format_coords(size)):
            fin[vertical] = fin[horizontal] = (bits >> i) & 1
        fin[size - 8, 8] = 1
        if version >= 7:
            vbits = t.version_bits(version)
            for i in range(18):
                fin[i // 3, size - 11 + i % 3] = fin[size - 11 + i % 3, i // 3] = (vbits >> i) & 1
        final[mask] = fin

    paired = size <= 31
    valid = pairs = np.uint64(0)
    test_words = same_h_flip = same_v_flip = np.zeros((8, 1, 1), dtype=np.uint64)
    final_words: npt.NDArray[np.unsignedinteger] = np.zeros((8, 1), dtype=np.uint64)
    if packed:
        line = (1 << size) - 1
        pair = (1 << (size - 1)) - 1
        words = _row_words(test)
        if paired:
            line |= line << 32
            pair |= pair << 32
            words |= words << np.uint64(32)
        valid, pairs = np.uint64(line), np.uint64(pair)
        test_words = np.ascontiguousarray(words[..., None])
        one = np.uint64(1)
        same_h_flip = (test_words ^ (test_words >> one) ^ (valid >> one)) & pairs
        same_v_flip = test_words[:, 1:] ^ test_words[:, :-1] ^ valid
        final_words = _row_words(final).astype(np.uint32 if row_bits == 32 else np.uint64)

    # Rule 4 exactly as python-qrcode computes it (float percentage, truncated).
    cells = size * size
    n4 = [20 * int(abs(float(d) / cells * 100 - 50) / 5) for d in range(cells + 1)]

    return _Plan(
        version=version,
        ecc=ecc,
        size=size,
        data_words=data_words,
        ec_len=ec_len,
        n_blocks=n_blocks,
        groups=tuple(groups),
        n_bit_rows=zero_bit + 1,
        module_src=module_src,
        row_bits=row_bits,
        packed=packed,
        paired=paired,
        test_words=test_words,
        same_h_flip=same_h_flip,
        same_v_flip=same_v_flip,
        final_words=final_words,
        valid=valid,
        pairs=pairs,
        test_modules=test.reshape(8, cells),
        final_modules=final.reshape(8, cells),
        n4_double=np.array(n4, dtype=np.int32),
    )


@dataclass(frozen=True)
class _Stream:
    """Data bit stream layout of one payload length: a template with mode indicator,
    character count, terminator, bit padding and 0xEC/0x11 pad bytes filled in, and where
    the character bits go."""

    template: U8  # (8 * data codewords, 1)
    start: int
    n_pairs: int
    odd: bool


@lru_cache(maxsize=64)
def _stream(version: int, ecc: str, length: int) -> _Stream:
    capacity = 8 * t.data_codewords(version, ecc)
    used = t.alnum_bits(length, version)
    if used > capacity:
        raise ValueError(
            f"{length} alphanumeric characters do not fit version {version} at level {ecc}"
        )
    bits = np.zeros(capacity, dtype=np.uint8)
    cc = t.char_count_bits(version)
    header = (t.MODE_ALNUM_INDICATOR << cc) | length
    for i in range(4 + cc):
        bits[i] = (header >> (3 + cc - i)) & 1
    end = used + min(4, capacity - used)
    end = -(-end // 8) * 8
    for k, start in enumerate(range(end, capacity, 8)):
        pad = t.PAD_BYTES[k % 2]
        bits[start : start + 8] = [(pad >> (7 - b)) & 1 for b in range(8)]
    return _Stream(bits[:, None].copy(), 4 + cc, length // 2, bool(length % 2))


# --------------------------------------------------------------------------- per chunk
# Inside a chunk every array is "code-minor": shape (feature, n). Gathers of features are
# then row copies, and every arithmetic step runs over all n codes at once.

_SHIFT11 = np.arange(10, -1, -1, dtype=np.uint16)[None, :, None]
_SHIFT6 = np.arange(5, -1, -1, dtype=np.uint8)[:, None]
_SHIFT8 = np.arange(7, -1, -1, dtype=np.uint8)[None, :, None]
_MSB_FIRST = (np.uint8(1) << _SHIFT8).astype(np.uint8)
_LSB_FIRST = (np.uint8(1) << np.arange(8, dtype=np.uint8))[None, None, :, None]


def _fill_bits(values: U8, plan: _Plan, stream: _Stream, bits: U8) -> None:
    """Write data and ECC bits of (L, n) character values into bits (n_bit_rows, n)."""
    n = values.shape[1]
    capacity = stream.template.shape[0]
    data_bits = bits[:capacity]
    data_bits[:] = stream.template
    if stream.n_pairs:
        pairs = values[0 : 2 * stream.n_pairs : 2].astype(np.uint16) * 45
        pairs += values[1 : 2 * stream.n_pairs : 2]
        seg = data_bits[stream.start : stream.start + 11 * stream.n_pairs]
        seg.reshape(stream.n_pairs, 11, n)[:] = (pairs[:, None, :] >> _SHIFT11) & 1
    if stream.odd:
        at = stream.start + 11 * stream.n_pairs
        data_bits[at : at + 6] = (values[-1] >> _SHIFT6) & 1
    data = (data_bits.reshape(-1, 8, n) * _MSB_FIRST).sum(axis=1, dtype=np.uint8)
    ec = _reed_solomon(data, plan)
    ec_bits = bits[capacity : capacity + 8 * ec.shape[0]]
    ec_bits.reshape(ec.shape[0], 8, n)[:] = (ec[:, None, :] >> _SHIFT8) & 1
    bits[-1] = 0


def _reed_solomon(data: U8, plan: _Plan) -> U8:
    """(data codewords, n) -> (blocks * ECC codewords, n), block after block."""
    n = data.shape[1]
    ec_len = plan.ec_len
    ec = np.empty((plan.n_blocks * ec_len, n), dtype=np.uint8)
    for g in plan.groups:
        for b in range(g.count):
            lo = g.data_offset + b * g.data_len
            block = data[lo : lo + g.data_len]
            # Bytes that are equal in every code (the URL prefix, the pad bytes) contribute
            # the same parity to all: fold them in once instead of per code.
            same = (block == block[:, :1]).all(axis=1)
            fixed = np.bitwise_xor.reduce(g.table[g.row_base[same] + block[same, 0]], axis=0)
            vary = ~same
            parity = np.bitwise_xor.reduce(g.table[g.row_base[vary, None] + block[vary]], axis=0)
            parity ^= fixed
            at = (g.first_block + b) * ec_len
            ec[at : at + ec_len] = parity.view(np.uint8)[:, :ec_len].T
    return ec


def _row_words_of(modules: U8, plan: _Plan) -> npt.NDArray[np.unsignedinteger]:
    """(S * row_bits, n) modules -> (S, n) uint32/uint64 row words."""
    n = modules.shape[1]
    n_bytes = plan.row_bits // 8
    by = (modules.reshape(plan.size, n_bytes, 8, n) * _LSB_FIRST).sum(axis=2, dtype=np.uint8)
    dtype = np.uint32 if n_bytes == 4 else np.uint64
    words = by[:, 0].astype(dtype)
    for k in range(1, n_bytes):
        words |= by[:, k].astype(dtype) << dtype(8 * k)
    return words


def _count(a: U64, paired: bool) -> npt.NDArray[np.uint16]:
    """Set bits per code, summed over the rows of a (rows, words) array."""
    per_word = np.bitwise_count(a.view(np.uint32) if paired else a)
    return per_word.sum(axis=0, dtype=np.uint16)


def _penalties_packed(rows: U64, plan: _Plan) -> npt.NDArray[np.int32]:
    """Twice the python-qrcode penalty of every mask, (8, n), from (S, words) row words of
    the unmasked data modules (two codes per word when paired). Horizontal rules are shifts
    within a word, vertical rules the same logic between neighbouring row words."""
    paired = plan.paired
    n = rows.shape[1] * (2 if paired else 1)
    s = plan.size
    valid = plan.valid
    scores = np.empty((8, n), dtype=np.int32)

    def count(a: U64) -> npt.NDArray[np.int32]:
        return _count(a, paired).astype(np.int32)

    # "Module j equals module j+1" and "row r equals row r+1" are XORs of the data, so a
    # mask only flips them by a per-row constant: compute the data part once.
    same_h = rows >> 1
    same_h ^= rows
    same_h &= plan.pairs
    same_v = rows[1:] ^ rows[:-1]
    for mask in range(8):
        x = rows ^ plan.test_words[mask]  # dark
        y = x ^ valid  # light; bits outside the symbol are neither dark nor light

        # Rule 1 (3 + (L - 5) per run of L >= 5 equal modules): w = five equal modules
        # from j on. A run has L - 4 such windows and one first window: score w + 2 first.
        e = same_h ^ plan.same_h_flip[mask]  # j equals j+1
        e2 = e >> 1
        e2 &= e  # j..j+2 equal
        w = e2 >> 2
        w &= e2
        first = w << 1
        first &= w
        first ^= w
        ev = same_v ^ plan.same_v_flip[mask]  # row r equals row r+1 (at valid bits)
        ev2 = ev[:-1] & ev[1:]  # rows r..r+2 equal
        wv = ev2[:-2] & ev2[2:]
        firstv = np.empty_like(wv)
        firstv[0] = wv[0]
        np.bitwise_xor(wv[1:], wv[:-1], out=firstv[1:])
        firstv[1:] &= wv[1:]
        n1 = count(w) + count(wv) + 2 * (count(first) + count(firstv))

        # Rule 2: 2x2 blocks of one colour.
        b = ev >> 1
        b &= ev
        b &= e[:-1]
        n2 = count(b)

        # Rule 3: core = 1011101 from j on, then 0000 after it (pattern 1) or before it
        # (pattern 2), both marked at the window start: pattern 1 starts dark, pattern 2
        # light, so the two marks never share a bit and one count covers both.
        core = y >> 1
        core &= x
        t3 = x & e2  # dark j..j+2
        core &= t3 >> 2
        q = x >> 1
        q &= y
        core &= q >> 5
        z4 = e2 >> 1
        z4 &= e2
        z4 &= y  # light j..j+3
        p = z4 >> 7
        p &= core
        core >>= 4
        core &= z4
        p |= core
        n3 = count(p)
        # The same down the columns: rows r..r+k instead of bits j..j+k.
        corev = x[: s - 6] & y[1 : s - 5]
        t3v = x[:-2] & ev2
        corev &= t3v[2 : s - 4]
        corev &= y[5 : s - 1]
        corev &= x[6:]
        z4v = ev2[:-1] & ev2[1:]
        z4v &= y[: s - 3]
        p = corev[: s - 10] & z4v[7:]
        p |= corev[4:] & z4v[: s - 10]
        n3 += count(p)

        dark = count(x)
        scores[mask] = 2 * n1 + 6 * n2 + 80 * n3 + plan.n4_double[dark]
    return scores


def _penalties_bool(modules: U8, plan: _Plan) -> npt.NDArray[np.int32]:
    """Twice the python-qrcode penalty of every mask, (8, n), from (n, S*S) modules; the
    plain array form of the same rules, for symbols wider than one 64-bit word."""
    n, size = modules.shape[0], plan.size
    scores = np.empty((8, n), dtype=np.int32)
    k = size - 10

    def at(a: npt.NDArray[np.bool_], j: int) -> npt.NDArray[np.bool_]:
        return a[:, :, j : j + k]

    for mask in range(8):
        x = (modules ^ plan.test_modules[mask]).reshape(n, size, size).astype(bool)
        total = np.zeros(n, dtype=np.int32)
        for m in (x, x.transpose(0, 2, 1)):
            eq = m[:, :, 1:] == m[:, :, :-1]
            w = eq[:, :, :-3] & eq[:, :, 1:-2] & eq[:, :, 2:-1] & eq[:, :, 3:]
            first = w[:, :, 1:] & ~w[:, :, :-1]
            total += 2 * w.sum(axis=(1, 2), dtype=np.int32)
            total += 4 * (w[:, :, 0].sum(axis=1) + first.sum(axis=(1, 2), dtype=np.int32))
            d, li = m, ~m
            core = at(li, 1) & at(d, 4) & at(li, 5) & at(d, 6) & at(li, 9)
            pat1 = at(d, 0) & at(d, 2) & at(d, 3) & at(li, 7) & at(li, 8) & at(li, 10)
            pat2 = at(li, 0) & at(li, 2) & at(li, 3) & at(d, 7) & at(d, 8) & at(d, 10)
            total += 80 * (core & (pat1 | pat2)).sum(axis=(1, 2), dtype=np.int32)
        eq_rows = x[:, :, 1:] == x[:, :, :-1]
        eq_cols = x[:, 1:, :] == x[:, :-1, :]
        block = eq_rows[:, :-1, :] & eq_cols[:, :, :-1] & eq_cols[:, :, 1:]
        total += 6 * block.sum(axis=(1, 2), dtype=np.int32)
        total += plan.n4_double[x.sum(axis=(1, 2))]
        scores[mask] = total
    return scores


def _encode_chunk(values: U8, plan: _Plan, stream: _Stream, out: U8) -> None:
    """Encode (L, n) character values (code-minor) into out (n, S, S)."""
    n = values.shape[1]
    size = plan.size
    bits = np.empty((plan.n_bit_rows, n), dtype=np.uint8)
    _fill_bits(values, plan, stream, bits)
    modules = bits[plan.module_src]  # unmasked data modules, 0 elsewhere
    if not plan.packed:
        flat = np.ascontiguousarray(modules.T)
        best = np.argmin(_penalties_bool(flat, plan), axis=0)
        np.bitwise_xor(flat, plan.final_modules[best], out=out.reshape(n, size * size))
        return
    words = _row_words_of(modules, plan)
    if plan.paired and n % 2:
        words = np.concatenate([words, words[:, -1:]], axis=1)
    rows = words.view(np.uint64)
    best = np.argmin(_penalties_packed(rows, plan), axis=0)[:n]  # first lowest wins
    final = np.ascontiguousarray(words[:, :n].T)
    final ^= plan.final_words[best]
    unpacked = np.unpackbits(final.view(np.uint8), axis=-1, bitorder="little")
    out[:] = unpacked.reshape(n, size, plan.row_bits)[:, :, :size]


def _encode_values(values: U8, plan: _Plan, out: U8) -> None:
    """Encode (n, L) character values into out (n, S, S), _STEP codes at a time."""
    n, length = values.shape
    stream = _stream(plan.version, plan.ecc, length)
    for lo in range(0, n, _STEP):
        hi = min(n, lo + _STEP)
        _encode_chunk(np.ascontiguousarray(values[lo:hi].T), plan, stream, out[lo:hi])


# --------------------------------------------------------------------------- public API


def _to_values(payloads: Sequence[str] | Sequence[bytes] | npt.NDArray[np.bytes_] | U8) -> U8:
    """Payloads -> (n, L) alphanumeric character values; ValueError on bad input."""
    raw: U8
    if isinstance(payloads, np.ndarray):
        if payloads.dtype.kind == "S":
            flat = np.ascontiguousarray(payloads).view(np.uint8)
            raw = flat.reshape(payloads.shape[0], payloads.dtype.itemsize)
        elif payloads.dtype == np.uint8 and payloads.ndim == 2:
            raw = payloads.view(np.uint8)
        else:
            raise ValueError("array payloads must be (n, L) uint8 or a bytes array")
    else:
        items = list(payloads)
        if not items:
            return np.zeros((0, 0), dtype=np.uint8)
        lengths = set(map(len, items))
        if len(lengths) != 1:
            raise ValueError(f"all payloads of a batch must have the same length, got {lengths}")
        try:
            if isinstance(items[0], str):
                joined = "".join(items).encode("ascii")  # type: ignore[arg-type]
            else:
                joined = b"".join(items)  # type: ignore[arg-type]
        except TypeError:
            raise ValueError("payloads must be all str or all bytes") from None
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start]
            raise ValueError(f"not a QR alphanumeric character: {bad!r}") from None
        raw = np.frombuffer(joined, dtype=np.uint8).reshape(len(items), lengths.pop())
    values = _CHAR_VALUE[raw]
    bad = values == 255
    if bad.any():
        code = int(raw[bad][0])
        raise ValueError(f"not a QR alphanumeric character: {chr(code)!r}")
    return values


def _resolve_version(length: int, ecc: str, version: int | None) -> int:
    t.check_ecc(ecc)
    if version is None:
        return alnum_version_for(length, ecc)
    t.check_version(version)
    _stream(version, ecc, length)  # raises if the data does not fit
    return version


def encode_batch(
    payloads: Sequence[str] | Sequence[bytes] | npt.NDArray[np.bytes_] | U8,
    ecc: str = "M",
    version: int | None = None,
) -> U8:
    """QR matrices of equal-length alphanumeric payloads: uint8 (n, size, size), 1 = dark,
    no quiet zone. Version defaults to the smallest that fits; the mask is chosen per code.

    Payloads may be str, bytes, a numpy bytes array (dtype 'S<L>', the cheapest: no Python
    objects) or an (n, L) uint8 array of ASCII codes."""
    values = _to_values(payloads)
    ver = _resolve_version(values.shape[1], ecc, version)
    plan = _plan(ver, ecc)
    out = np.empty((values.shape[0], plan.size, plan.size), dtype=np.uint8)
    _encode_values(values, plan, out)
    return out


def iter_encoded(
    payloads: Iterable[str] | Iterable[bytes],
    ecc: str = "M",
    version: int | None = None,
    chunk: int = 4096,
) -> Iterator[U8]:
    """Stream matrices chunk by chunk (each (k, size, size), k <= chunk) so that memory
    stays flat whatever the number of payloads. All payloads must share one length."""
    if chunk <= 0:
        raise ValueError("chunk must be positive")
    it = iter(payloads)
    plan: _Plan | None = None
    length = -1
    while batch := list(itertools.islice(it, chunk)):
        values = _to_values(batch)  # type: ignore[arg-type]
        if plan is None:
            length = values.shape[1]
            plan = _plan(_resolve_version(length, ecc, version), ecc)
        elif values.shape[1] != length:
            raise ValueError("all payloads of a batch must have the same length")
        out = np.empty((values.shape[0], plan.size, plan.size), dtype=np.uint8)
        _encode_values(values, plan, out)
        yield out
