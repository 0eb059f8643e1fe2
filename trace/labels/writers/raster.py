"""Raster QR for printers whose firmware QR is unreliable: ZPL ``^GFA`` and TSPL ``BITMAP``.

The QR is drawn from the batch encoder's matrices, scaled to the profile's module size in
dots; the static text stays native printer text (fonts) as in the native writers. The
scaling and bit packing are numpy over a whole chunk (``np.repeat`` + ``np.packbits``),
never per pixel or per label.

* ZPL: ``^FOx,y^GFA,<total bytes>,<total bytes>,<bytes per row>,<hex>^FS`` -- one bit per
  dot, 1 = black, rows padded to whole bytes, written as ASCII hex. Every module row is
  ``module`` identical dot rows, so with ``zpl_gf_compress`` each repeat is written as
  ``:`` (ZPL ASCII compression: "repeat the previous row"), about ``module`` times smaller.
* TSPL: ``BITMAP x,y,<bytes per row>,<rows>,0,<binary>`` (mode 0 = overwrite). On
  TSC-compatible firmware a **0** bit prints a black dot, so the bits are inverted unless
  the profile says ``tspl_black_bit = 1``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, BinaryIO, cast

import numpy as np

from trace.labels.content import (
    LabelChunk,
    LabelContent,
    QrPlacement,
    compute_layout,
    qr_placement,
    qr_version,
)
from trace.labels.profiles import PrinterProfile
from trace.labels.writers import tspl as tspl_mod
from trace.labels.writers import zpl as zpl_mod
from trace.labels.writers.base import (
    RecordTemplate,
    ascii_matrix,
    check_bytes,
    check_format,
    render_chunk,
)

__all__ = ["encode_chunk", "packed_qr_rows", "write_tspl_raster", "write_zpl_raster"]

_HEX = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
HEX_TABLE = np.stack([_HEX[np.arange(256) >> 4], _HEX[np.arange(256) & 15]], axis=1)  # (256, 2)


def encode_chunk(chunk: LabelChunk, ecc: str, version: int) -> np.ndarray:
    """QR matrices ``(n, modules, modules)`` uint8, 1 = dark, for every label of a chunk."""
    from trace.labels.qr_batch import encode_batch

    return encode_batch(cast(Any, chunk.payloads), ecc, version)


def packed_qr_rows(matrices: np.ndarray, module: int) -> np.ndarray:
    """One packed row per *module* row: ``(n, modules, bytes_per_row)``, MSB first, 1 = dark.

    Each module becomes ``module`` dots horizontally; rows are padded with white bits to a
    whole byte. The caller repeats rows vertically (or writes a ZPL repeat marker).
    """
    wide = np.repeat(matrices.astype(bool, copy=False), module, axis=2)
    return np.packbits(wide, axis=2)


def _place(profile: PrinterProfile, chunk: LabelChunk) -> QrPlacement:
    place = qr_placement(profile, qr_version(chunk.payloads.dtype.itemsize, profile.qr.ecc))
    return place


def zpl_gf_field(matrices: np.ndarray, module: int, compress: bool) -> np.ndarray:
    """``^GFA`` hex data for each label as an ``(n, width)`` uint8 matrix."""
    rows = packed_qr_rows(matrices, module)  # (n, m, wb)
    n, m, wb = rows.shape
    hexrows = HEX_TABLE[rows].reshape(n, m, 2 * wb)
    if compress:
        colons = np.full((n, m, module - 1), ord(":"), dtype=np.uint8)
        return np.concatenate([hexrows, colons], axis=2).reshape(n, -1)
    return np.repeat(hexrows, module, axis=1).reshape(n, -1)


def write_zpl_raster(
    profile: PrinterProfile,
    content: LabelContent,
    chunks: Iterable[LabelChunk],
    out: BinaryIO,
) -> int:
    check_format("zpl-raster", profile)
    layout = compute_layout(profile, content)
    template: RecordTemplate | None = None
    place: QrPlacement | None = None
    written = 0
    for chunk in chunks:
        if not len(chunk):
            continue
        if place is None or template is None:
            place = _place(profile, chunk)
            wb = -(-place.size_dots // 8)
            total = wb * place.size_dots
            head = f"^FO{place.x_dots},{place.y_dots}^GFA,{total},{total},{wb},"
            template = zpl_mod.build_template(profile, layout, [head.encode(), "qr", b"^FS\n"])
        check_bytes(ascii_matrix(chunk.codes), zpl_mod.FORBIDDEN, "a code", "ZPL")
        qr = zpl_gf_field(
            encode_chunk(chunk, profile.qr.ecc, place.version),
            place.module_dots,
            profile.zpl_gf_compress,
        )
        out.write(render_chunk(template, chunk, {"qr": qr}))
        written += len(chunk)
    return written


def tspl_bitmap_field(matrices: np.ndarray, module: int, black_bit: int) -> np.ndarray:
    """``BITMAP`` binary data for each label as an ``(n, rows * bytes_per_row)`` matrix."""
    rows = packed_qr_rows(matrices, module)
    if black_bit == 0:
        # 0 = black: invert. The padding bits packbits added past the symbol's right edge
        # (0 = white there) become 1, which is white in this convention too.
        np.invert(rows, out=rows)
    n = rows.shape[0]
    return np.repeat(rows, module, axis=1).reshape(n, -1)


def write_tspl_raster(
    profile: PrinterProfile,
    content: LabelContent,
    chunks: Iterable[LabelChunk],
    out: BinaryIO,
) -> int:
    check_format("tspl-raster", profile)
    layout = compute_layout(profile, content)
    template: RecordTemplate | None = None
    place: QrPlacement | None = None
    written = 0
    for chunk in chunks:
        if not len(chunk):
            continue
        if place is None or template is None:
            place = _place(profile, chunk)
            wb = -(-place.size_dots // 8)
            head = f"BITMAP {place.x_dots},{place.y_dots},{wb},{place.size_dots},0,"
            template = tspl_mod.build_template(profile, layout, [head.encode(), "qr", b"\r\n"])
            out.write(tspl_mod.job_header(profile))
        check_bytes(ascii_matrix(chunk.codes), tspl_mod.FORBIDDEN, "a code", "TSPL")
        qr = tspl_bitmap_field(
            encode_chunk(chunk, profile.qr.ecc, place.version),
            place.module_dots,
            profile.tspl_black_bit,
        )
        out.write(render_chunk(template, chunk, {"qr": qr}))
        written += len(chunk)
    return written
