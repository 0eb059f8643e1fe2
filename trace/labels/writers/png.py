"""PNG labels: a zip of one 1-bit PNG per label at the profile's dpi.

Once per run: the static layer (title and field lines) is drawn with Pillow in the CJK
font and packed to bits, the PNG scanlines of a blank label are computed from it, and a
glyph atlas of the ASCII characters is rendered in the same (monospaced) face.

Per sub-chunk, in a worker thread, with numpy: each worker keeps a buffer of blank labels'
scanlines and rewrites only the rectangles the per-label fields are drawn in (the QR, the
code text lines, the serial digits): there the ink is composed (static layer, QR scaled
from the batch encoder's matrices, text from packed glyphs) and Up-filtered; a QR on
blank paper only changes the rows where a module row starts. Per label, zlib (Z_RLE) of
the finished rows, the PNG chunks and the zip's local header remain; the zip's CRC of
the file comes from the IDAT chunk's CRC (``_FileCrc``), not from hashing it again.

Where the time goes (project machine, 2 cores, per label, in-process): zlib ~80 µs of
CPU, the rest ~25 µs (QR encoding ~5, composition ~7, Python per label ~5). A deflate
encoder written with numpy was tried instead of zlib (the scanlines as 8-byte words, runs
of background words as table-driven tokens, one Huffman code per run): correct and 2 %
smaller, but ~170 µs per label against zlib's ~83, numpy costing a few ns per element
and operation; zlib stays.

Why not ``Image.save(format="PNG")``: measured at ~320 µs per 472x354 label on the
project machine (≈ 96 s for 300k) against ~80 µs for zlib's RLE of the same rows; the
PNG container around it is 4 chunks written here (IHDR, pHYs for the dpi, IDAT, IEND).
The tests decode the result with Pillow and zxing-cpp.

The zip is written by ``ZipStream``: entries STORED (a PNG is already deflated), CRC and
sizes known before each entry so no data descriptors, ZIP64 records when there are more
than 65,535 entries or offsets pass 4 GiB, and the central directory spooled to a
temporary file so memory does not grow with the number of labels. The workers lay out
whole sub-chunks of entries (``add_batch``): the thread writing the zip does one write
and builds the central directory records with numpy.
"""

from __future__ import annotations

import functools
import os
import struct
import tempfile
import threading
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFont

from trace.labels.content import (
    BASELINE_RATIO,
    LabelChunk,
    LabelContent,
    Layout,
    QrPlacement,
    compute_layout,
    qr_placement,
    qr_version,
)
from trace.labels.profiles import PrinterProfile
from trace.labels.writers.base import (
    ascii_matrix,
    check_format,
    digit_counts,
    digits_matrix,
    uniform_runs,
)
from trace.labels.writers.fonts import FontRef, require_cjk_font
from trace.labels.writers.raster import encode_chunk

__all__ = ["ZipStream", "write_png_zip"]

COMPRESS_LEVEL = 1  # 1-bit label rows: level 1 is ~3.5x faster than 6 for ~25 % more bytes
SUB_CHUNK = 512  # labels composed at once; a worker's scanlines: 512 x 21 KB at 300 dpi
WORKERS = max(1, min(4, os.cpu_count() or 1))

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# -- drawing ------------------------------------------------------------------------------


def _px(mm: float, dpi: int) -> int:
    return round(mm * dpi / 25.4)


@dataclass(frozen=True)
class _Atlas:
    """ASCII glyphs in fixed cells: ``glyphs[code]`` is a ``(height, width)`` bool array."""

    glyphs: np.ndarray  # (128, h, w) bool, ink = True
    width: int
    height: int
    baseline: int  # rows from the cell top to the baseline


def _font(ref: FontRef, size_px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(ref.path, max(1, size_px), index=ref.index)


def _atlas(ref: FontRef, size_px: int) -> _Atlas:
    font = _font(ref, size_px)
    width = max(1, round(size_px * 0.5))  # the monospaced face's advance is 0.5 em
    height = max(1, int(np.ceil(size_px * 1.1)))
    baseline = round(size_px * BASELINE_RATIO)
    glyphs = np.zeros((128, height, width), dtype=bool)
    for code in range(33, 127):
        img = Image.new("L", (width, height), 255)
        ImageDraw.Draw(img).text((0, baseline), chr(code), font=font, fill=0, anchor="ls")
        glyphs[code] = np.asarray(img) < 128
    return _Atlas(glyphs, width, height, baseline)


def _or_bits(rows: np.ndarray, y: int, x: int, bits: np.ndarray, repeat: int = 1) -> None:
    """OR ``bits`` ``(n, h, w)`` (bool, row-repeated ``repeat`` times) into packed ``rows``
    ``(n, H, bytes)`` at pixel (x, y), clipped to the canvas. With ``_text_bits``, the
    plain way to draw a field: tests/unit/test_png_writer.py composes whole labels with
    them to check ``_Renderer.rows``."""
    n, h, w = bits.shape
    off = x % 8
    nbytes = -(-(off + w) // 8)
    buf = np.zeros((n, h, nbytes * 8), dtype=bool)
    buf[:, :, off : off + w] = bits
    packed = np.packbits(buf, axis=2)
    if repeat > 1:
        packed = np.repeat(packed, repeat, axis=1)
    _or_packed(rows, y, x // 8, packed)


def _or_packed(rows: np.ndarray, y: int, b0: int, packed: np.ndarray) -> None:
    hh = min(packed.shape[1], rows.shape[1] - y)
    bb = min(packed.shape[2], rows.shape[2] - b0)
    if hh > 0 and bb > 0:
        rows[:, y : y + hh, b0 : b0 + bb] |= packed[:, :hh, :bb]


def _text_bits(atlas: _Atlas, text: np.ndarray) -> np.ndarray:
    """ASCII ``(n, chars)`` uint8 -> ``(n, atlas.height, chars * atlas.width)`` bool."""
    n, chars = text.shape
    g = atlas.glyphs[text & 0x7F]  # (n, chars, h, w)
    return g.transpose(0, 2, 1, 3).reshape(n, atlas.height, chars * atlas.width)


class _TextField:
    """A per-label ASCII field at a fixed place, drawn from pre-packed glyphs.

    Character ``i`` always starts at pixel ``x + i * advance``, so its bit offset inside a
    byte is known in advance: the atlas is packed once per offset, and for a run of
    character positions the packed glyphs are stacked into one table, column-major (a
    glyph's byte columns, each ``height`` bytes), and the ink is column-major too: drawing
    a field is one gather for all its characters and one OR of a contiguous block per
    character.
    """

    def __init__(self, atlas: _Atlas, x: int, y: int):
        self.atlas, self.x, self.y = atlas, x, y
        self._tables: dict[int, np.ndarray] = {}
        self._plans: dict[tuple[int, int], _TextPlan] = {}

    def _table(self, off: int) -> np.ndarray:
        table = self._tables.get(off)
        if table is None:
            a = self.atlas
            nbytes = -(-(off + a.width) // 8)
            buf = np.zeros((128, a.height, nbytes * 8), dtype=bool)
            buf[:, :, off : off + a.width] = a.glyphs
            table = self._tables[off] = np.packbits(buf, axis=2)
        return table

    def bytes_span(self, chars: int, first: int = 0) -> tuple[int, int]:
        """Canvas bytes ``[b0, b1)`` that characters ``first .. first + chars`` touch."""
        plan = self._plan(first, chars)
        return plan.b0, plan.b0 + plan.width

    def _plan(self, first: int, chars: int) -> _TextPlan:
        plan = self._plans.get((first, chars))
        if plan is None:
            a = self.atlas
            px = [self.x + (first + i) * a.width for i in range(chars)]
            tables = [self._table(p % 8) for p in px]
            wide = max(t.shape[2] for t in tables)
            stack = np.zeros((chars * 128, wide, a.height), dtype=np.uint8)
            for i, t in enumerate(tables):
                stack[i * 128 : (i + 1) * 128, : t.shape[2]] = t.transpose(0, 2, 1)
            b0 = px[0] // 8
            starts = [p // 8 - b0 for p in px]
            plan = self._plans[(first, chars)] = _TextPlan(
                stack, 128 * np.arange(chars), starts, b0, starts[-1] + wide
            )
        return plan

    def draw(
        self,
        columns: np.ndarray,
        text: np.ndarray,
        first: int = 0,
        origin: tuple[int, int] = (0, 0),
    ) -> None:
        """OR ``text`` ``(n, chars)`` (ASCII), starting at character position ``first``,
        into packed ink stored column-major, ``(n, byte columns, rows)``, whose byte 0 /
        row 0 are the canvas's ``origin`` (row, byte)."""
        n, chars = text.shape
        if not chars:
            return
        plan = self._plan(first, chars)
        glyphs = plan.stack[plan.base + (text & 0x7F)]  # (n, chars, wide, height)
        wide, h = glyphs.shape[2:]
        b, y = plan.b0 - origin[1], self.y - origin[0]
        inside = b >= 0 and y >= 0 and b + plan.width <= columns.shape[1]
        inside = inside and y + h <= columns.shape[2]
        if inside:
            line = columns[:, b : b + plan.width, y : y + h]
        else:  # partly off the canvas: drawn apart, then clipped
            line = np.zeros((n, plan.width, h), dtype=np.uint8)
        for i, start in enumerate(plan.starts):
            line[:, start : start + wide] |= glyphs[:, i]
        if not inside:
            _or_packed(columns.transpose(0, 2, 1), y, b, line.transpose(0, 2, 1))


@dataclass(frozen=True)
class _TextPlan:
    stack: np.ndarray  # (chars * 128, wide, height): code c at position i is row 128 i + c
    base: np.ndarray  # (chars,) 128 * i
    starts: list[int]  # first byte of each character, from b0
    b0: int  # canvas byte of the line's first byte
    width: int  # bytes


def _draw_condensed(
    img: Image.Image, at: tuple[int, int], text: str, font: ImageFont.FreeTypeFont, scale: float
) -> None:
    """``text`` with its baseline start at ``at``, squeezed horizontally by ``scale``.

    Pillow has no horizontal scaling for a font, so the line is drawn at full width on its
    own canvas, resampled to the narrower width (once per run) and darkened onto ``img``.
    """
    left, top, right, bottom = (round(v) for v in font.getbbox(text, anchor="ls"))
    width, height = max(1, right - min(0, left)), max(1, bottom - top)
    line = Image.new("L", (width, height), 255)
    ImageDraw.Draw(line).text((-min(0, left), -top), text, font=font, fill=0, anchor="ls")
    narrow = line.resize((max(1, round(width * scale)), height), Image.Resampling.LANCZOS)
    x, y = at[0] + round(min(0, left) * scale), at[1] + top
    box = (x, y, x + narrow.width, y + narrow.height)
    img.paste(ImageChops.darker(img.crop(box), narrow), box)


@dataclass
class _Area:
    """A rectangle of the canvas whose pixels change from label to label: rows
    ``[y0, y1)``, bytes ``[b0, b1)``, and what is drawn there."""

    y0: int
    y1: int
    b0: int
    b1: int
    parts: list[str]

    def touches(self, other: _Area) -> bool:
        # The Up filter of row r reads rows r - 1 and r: areas closer than that are one.
        return (
            self.b0 < other.b1
            and other.b0 < self.b1
            and self.y0 <= other.y1
            and other.y0 <= self.y1
        )


class _Scanlines:
    """Scanlines of blank labels, kept by a worker thread between sub-chunks: ``rows``
    rewrites only the rectangles that differ between labels (``areas``: the last ones)."""

    def __init__(self, blank: np.ndarray, labels: int):
        self.rows = np.empty((labels, *blank.shape), dtype=np.uint8)
        self.rows[:] = blank
        self.areas: list[tuple[int, int, int, int]] | None = None


class _Renderer:
    """Everything about the label's pixels that does not change from label to label."""

    def __init__(self, profile: PrinterProfile, layout: Layout, place: QrPlacement):
        self.layout = layout
        self.place = place
        dpi = profile.dpi
        self.dpi = dpi
        self.width = _px(profile.label.width_mm, dpi)
        self.height = _px(profile.label.height_mm, dpi)
        self.row_bytes = -(-self.width // 8)
        ref = require_cjk_font(profile.render_font)

        img = Image.new("L", (self.width, self.height), 255)
        draw = ImageDraw.Draw(img)
        for line in layout.text:
            size = _px(line.size_mm, dpi)
            x, base = _px(line.x_mm, dpi), _px(line.y_mm, dpi) + round(size * BASELINE_RATIO)
            if abs(line.width_mm - line.size_mm) < 1e-6:
                draw.text((x, base), line.text, font=_font(ref, size), fill=0, anchor="ls")
            else:
                _draw_condensed(
                    img, (x, base), line.text, _font(ref, size), line.width_mm / line.size_mm
                )
        serial_x = 0
        if layout.serial is not None:  # the prefix is static; the digits are drawn after it
            s = layout.serial
            size = _px(s.size_mm, dpi)
            font = _font(ref, size)
            x, base = _px(s.x_mm, dpi), _px(s.y_mm, dpi) + round(size * BASELINE_RATIO)
            draw.text((x, base), s.prefix, font=font, fill=0, anchor="ls")
            serial_x = x + round(font.getlength(s.prefix))
        self.static = np.packbits(np.asarray(img) < 128, axis=1)  # (H, row_bytes), 1 = ink
        self.static_rows = self._up(self.static[None])[0]  # the scanlines of a blank label
        self._static_columns = np.ascontiguousarray(self.static.T)

        self.code_fields = [
            (_TextField(_atlas(ref, _px(c.size_mm, dpi)), _px(c.x_mm, dpi), _px(c.y_mm, dpi)), c)
            for c in layout.code_lines
        ]
        self.serial_field: _TextField | None = None
        if layout.serial is not None:
            s = layout.serial
            atlas = _atlas(ref, _px(s.size_mm, dpi))
            self.serial_field = _TextField(atlas, serial_x, _px(s.y_mm, dpi))

        # The QR: module rows packed at the symbol's bit offset inside its first byte.
        p = place
        self._qr_b0, self._qr_off = divmod(p.x_dots, 8)
        self._qr_bytes = -(-(self._qr_off + p.modules * p.module_dots) // 8)
        # byte of 8 modules -> the module_dots bytes of their 8 * module_dots dots
        bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(bool)
        self._widen = np.packbits(np.repeat(bits, p.module_dots, axis=1), axis=1)
        self._local = threading.local()  # a _Scanlines per worker thread

    @staticmethod
    def _up(ink: np.ndarray) -> np.ndarray:
        """PNG scanlines of packed ink ``(n, H, bytes)``: ``(n, H, 1 + bytes)``, each with
        filter type 2 ("Up") and bits 1 = white. Up(white)[r] = ~ink[r] - ~ink[r - 1] =
        ink[r - 1] - ink[r] (mod 256), with ink[-1] = all ink (Up's row above row 0 is 0)."""
        n, h, nb = ink.shape
        out = np.empty((n, h, 1 + nb), dtype=np.uint8)
        out[:, :, 0] = 2
        np.invert(ink[:, 0], out=out[:, 0, 1:])
        np.subtract(ink[:, :-1], ink[:, 1:], out=out[:, 1:, 1:])
        return out

    def _areas(self, serial_digits: int) -> list[_Area]:
        """The canvas rectangles the per-label fields draw in, merged where the Up filter
        makes them depend on each other, clipped to the canvas."""
        p = self.place
        found = [
            _Area(
                p.y_dots,
                p.y_dots + p.modules * p.module_dots,
                self._qr_b0,
                self._qr_b0 + self._qr_bytes,
                ["qr"],
            )
        ]
        for i, (field, c) in enumerate(self.code_fields):
            b0, b1 = field.bytes_span(c.stop - c.start)
            found.append(_Area(field.y, field.y + field.atlas.height, b0, b1, [f"code{i}"]))
        if self.serial_field is not None and serial_digits:
            f = self.serial_field
            b0, b1 = f.bytes_span(serial_digits)
            found.append(_Area(f.y, f.y + f.atlas.height, b0, b1, ["serial"]))
        merged: list[_Area] = []
        for area in found:
            area.y0, area.y1 = max(0, area.y0), min(self.height, area.y1)
            area.b0, area.b1 = max(0, area.b0), min(self.row_bytes, area.b1)
            if area.y0 >= area.y1 or area.b0 >= area.b1:
                continue
            while True:
                other = next((m for m in merged if m.touches(area)), None)
                if other is None:
                    break
                merged.remove(other)
                area = _Area(
                    min(area.y0, other.y0),
                    max(area.y1, other.y1),
                    min(area.b0, other.b0),
                    max(area.b1, other.b1),
                    other.parts + area.parts,
                )
            merged.append(area)
        return merged

    def rows(
        self,
        matrices: np.ndarray,
        codes: np.ndarray,
        serials: np.ndarray,
        out: _Scanlines | None = None,
    ) -> np.ndarray:
        """PNG image data for ``n`` labels: ``(n, H, 1 + row_bytes)`` uint8 scanlines, each
        with filter type 2 ("Up") and bits 1 = white.

        The Up filter turns every row equal to the one above (a QR module is ``module``
        identical rows, blank margins are long runs) into zeros, which deflate's RLE
        strategy compresses fast. Only the rectangles the QR, code text and serial digits
        are drawn in differ between labels: the rest is the blank label's scanlines. In
        each rectangle the ink is composed and filtered (with the static rows above and
        below it); a QR on blank paper only changes its rows at module boundaries.

        ``out`` (from ``scanlines``) is a buffer of blank labels kept between calls: then
        only the rectangles are written into its first ``n`` labels (no 21 KB copy per
        label), and the result is a view of it, valid until the next call with it.
        """
        n = len(serials)
        counts = digit_counts(serials) if self.serial_field is not None else None
        areas = self._areas(int(counts.max()) if counts is not None and n else 0)
        if out is None:
            rows = np.empty((n, self.height, 1 + self.row_bytes), dtype=np.uint8)
            rows[:] = self.static_rows
        else:
            key = [(a.y0, a.y1, a.b0, a.b1) for a in areas]
            if out.areas != key:  # other rectangles than last time (e.g. more digits)
                out.rows[:] = self.static_rows
                out.areas = key
            rows = out.rows[:n]
        for area in areas:
            y0, y1, b0, b1 = area.y0, area.y1, area.b0, area.b1
            if area.parts == ["qr"] and self._qr_alone(area):
                self._qr_edges(rows, matrices, area)
                continue
            # the area's ink from row y0 - 1, column-major: (n, byte columns, rows)
            ink = np.empty((n, b1 - b0, y1 - y0 + 1), dtype=np.uint8)
            ink[:, :, 0] = self.static[y0 - 1, b0:b1] if y0 else 0xFF
            ink[:, :, 1:] = self._static_columns[b0:b1, y0:y1]
            origin = (y0 - 1, b0)
            for part in area.parts:
                if part == "qr":
                    qr = np.repeat(self._qr_rows(matrices), self.place.module_dots, axis=1)
                    y = self.place.y_dots - origin[0]
                    _or_packed(ink.transpose(0, 2, 1), y, self._qr_b0 - b0, qr)
                elif part == "serial":
                    assert self.serial_field is not None and counts is not None
                    for run in uniform_runs(counts):
                        value = digits_matrix(serials[run], int(counts[run.start]))
                        self.serial_field.draw(ink[run], value, origin=origin)
                else:
                    field, c = self.code_fields[int(part[4:])]
                    field.draw(ink, codes[:, c.start : c.stop], origin=origin)
            up = ink[:, :, :-1] - ink[:, :, 1:]
            rows[:, y0:y1, 1 + b0 : 1 + b1] = up.transpose(0, 2, 1)
            if y1 < self.height:
                np.subtract(ink[:, :, -1], self.static[y1, b0:b1], out=rows[:, y1, 1 + b0 : 1 + b1])
        return rows

    def scanlines(self, labels: int) -> _Scanlines:
        """This thread's buffer for ``rows(..., out=)``, for at least ``labels`` labels."""
        buf: _Scanlines | None = getattr(self._local, "scanlines", None)
        if buf is None or len(buf.rows) < labels:
            buf = self._local.scanlines = _Scanlines(self.static_rows, max(labels, SUB_CHUNK))
        return buf

    def _qr_alone(self, area: _Area) -> bool:
        """The QR is the only thing in its rectangle, whole, on blank paper."""
        p = self.place
        return (
            area.y0 == p.y_dots
            and area.y1 == p.y_dots + p.modules * p.module_dots
            and area.b0 == self._qr_b0
            and area.b1 == self._qr_b0 + self._qr_bytes
            and not self.static[area.y0 : area.y1, area.b0 : area.b1].any()
        )

    def _qr_edges(self, out: np.ndarray, matrices: np.ndarray, area: _Area) -> None:
        """A QR alone on blank paper: inside a module row, a row equals the one above (Up
        = 0, as in the blank label), so only the rows starting a module row and the row
        below the symbol are written: (row above) - (module row 0), (module row k - 1) -
        (module row k), ..., (last module row) - (row below)."""
        y0, y1, b0, b1 = area.y0, area.y1, area.b0, area.b1
        n, m = len(matrices), self.place.modules
        ext = np.empty((n, m + 2, b1 - b0), dtype=np.uint8)
        ext[:, 0] = self.static[y0 - 1, b0:b1] if y0 else 0xFF
        ext[:, 1 : m + 1] = self._qr_rows(matrices)
        ext[:, m + 1] = self.static[y1, b0:b1] if y1 < self.height else 0
        keep = m + 1 if y1 < self.height else m  # the row below, if there is one
        ms = self.place.module_dots
        edges = out[:, y0 : y0 + ms * (keep - 1) + 1 : ms, 1 + b0 : 1 + b1]
        np.subtract(ext[:, :keep], ext[:, 1 : keep + 1], out=edges)

    def _qr_rows(self, matrices: np.ndarray) -> np.ndarray:
        """One packed row per module row, ``(n, modules, qr bytes)``, 1 = dark, starting at
        the symbol's bit offset inside its first byte: 8 modules are packed into a byte,
        which ``_widen`` turns into the ``module_dots`` bytes of their dots."""
        n, m = len(matrices), self.place.modules
        nb = -(-m // 8)
        modules = np.zeros((n, m, 8 * nb), dtype=np.uint8)  # rows padded to whole bytes:
        modules[:, :, :m] = matrices  # packbits of the flat array is much faster
        packed = np.packbits(modules.reshape(-1)).reshape(n, m, nb)
        wide = np.take(self._widen, packed, axis=0).reshape(n, m, nb * self.place.module_dots)
        off, size = self._qr_off, self._qr_bytes
        if wide.shape[2] < size:  # 1-dot modules shifted into one more byte than they fill
            wide = np.concatenate([wide, np.zeros((n, m, 1), dtype=np.uint8)], axis=2)
        if not off:
            return wide[:, :, :size]
        shifted = np.right_shift(wide[:, :, :size], off)
        shifted[:, :, 1:] |= wide[:, :, : size - 1] << (8 - off)
        return shifted

    def header(self) -> bytes:
        ihdr = struct.pack(">IIBBBBB", self.width, self.height, 1, 0, 0, 0, 0)  # 1-bit gray
        ppm = round(self.dpi / 0.0254)
        phys = struct.pack(">IIB", ppm, ppm, 1)  # pixels per metre: carries the dpi
        return _PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"pHYs", phys)

    @functools.cached_property
    def file_crc(self) -> _FileCrc:
        return _FileCrc(self.header())


# -- zip ----------------------------------------------------------------------------------

_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01: fixed, so output is reproducible
_DOS_TIME = 0
_U32 = 0xFFFFFFFF
_LOCAL = struct.Struct("<IHHHHHIIIHH")  # local file header, without name
_LOCAL_FIXED = (0x04034B50, 20, 0, 0, _DOS_TIME, _DOS_DATE)  # then crc, sizes, name length, 0
# central directory file header, without name and extra field
_CENTRAL_RECORD = np.dtype(
    [
        ("signature", "<u4"),
        ("made_by", "<u2"),
        ("needed", "<u2"),
        ("flags", "<u2"),
        ("method", "<u2"),
        ("time", "<u2"),
        ("date", "<u2"),
        ("crc", "<u4"),
        ("compressed", "<u4"),
        ("size", "<u4"),
        ("name_len", "<u2"),
        ("extra_len", "<u2"),
        ("comment_len", "<u2"),
        ("disk", "<u2"),
        ("internal_attr", "<u2"),
        ("external_attr", "<u4"),
        ("offset", "<u4"),
    ]
)


class ZipStream:
    """A forward-only zip writer for STORED entries (works on pipes and sockets)."""

    ZIP64_ENTRIES = 0xFFFF  # class attributes so a test can force ZIP64 with few entries
    ZIP64_OFFSET = _U32

    def __init__(self, out: BinaryIO):
        self.out = out
        self.pos = 0
        self.count = 0
        self._central = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by close()
        self._pending = bytearray()
        self._zip64_any = False

    def add(self, name: bytes, data: bytes, crc: int | None = None) -> None:
        """Append one entry; ``crc`` (zlib.crc32 of ``data``) when the caller has it."""
        if crc is None:
            crc = zlib.crc32(data)
        offset = self.pos
        self.out.write(self.local_headers([name], [len(data)], [crc])[0])
        self.out.write(data)
        self.pos += _LOCAL.size + len(name) + len(data)
        self._central_record(name, len(data), crc, offset)
        self._spill()
        self.count += 1

    @staticmethod
    def local_headers(
        names: Sequence[bytes], sizes: Sequence[int], crcs: Sequence[int]
    ) -> list[bytes]:
        """Local file headers (with the name) of STORED entries: what ``add_batch``
        expects before each entry's data (``_png_batch`` packs the same inline)."""
        return [
            _LOCAL.pack(*_LOCAL_FIXED, crc, size, size, len(name), 0) + name
            for name, size, crc in zip(names, sizes, crcs, strict=True)
        ]

    def add_batch(
        self, entries: bytes, names: list[bytes], sizes: np.ndarray, crcs: np.ndarray
    ) -> None:
        """Append entries already laid out by the caller: ``entries`` is, for each,
        ``local_headers(...)[i]`` followed by its ``sizes[i]`` bytes of data. One write;
        the central directory records are built with numpy when the names are all the
        same length and no entry needs ZIP64, else one by one."""
        n = len(names)
        if not n:
            return
        name_len = len(names[0])
        lengths = np.array([len(name) for name in names], dtype=np.int64)
        steps = _LOCAL.size + lengths + sizes.astype(np.int64)
        offsets = self.pos + np.cumsum(steps) - steps
        self.out.write(entries)
        self.pos += len(entries)
        uniform = bool((lengths == name_len).all())
        if uniform and int(offsets[-1]) < self.ZIP64_OFFSET:
            rec = np.zeros(n, dtype=_CENTRAL_RECORD)
            rec["signature"] = 0x02014B50
            rec["made_by"] = rec["needed"] = 20
            rec["time"], rec["date"] = _DOS_TIME, _DOS_DATE
            rec["crc"] = crcs
            rec["compressed"] = rec["size"] = sizes
            rec["name_len"] = name_len
            rec["offset"] = offsets
            table = np.empty((n, _CENTRAL_RECORD.itemsize + name_len), dtype=np.uint8)
            table[:, : _CENTRAL_RECORD.itemsize] = rec.view(np.uint8).reshape(n, -1)
            table[:, _CENTRAL_RECORD.itemsize :] = np.frombuffer(
                b"".join(names), dtype=np.uint8
            ).reshape(n, name_len)
            self._pending += table.tobytes()
        else:
            for name, size, crc, offset in zip(
                names, sizes.tolist(), crcs.tolist(), offsets.tolist(), strict=True
            ):
                self._central_record(name, size, crc, offset)
        self._spill()
        self.count += n

    def _central_record(self, name: bytes, size: int, crc: int, offset: int) -> None:
        extra = b""
        needed = 20
        if offset >= self.ZIP64_OFFSET:
            extra = struct.pack("<HHQ", 0x0001, 8, offset)
            offset = _U32
            needed = 45
            self._zip64_any = True
        self._pending += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50, 20, needed, 0, 0, _DOS_TIME, _DOS_DATE, crc, size, size,
            len(name), len(extra), 0, 0, 0, 0, offset,
        ) + name + extra  # fmt: skip

    def _spill(self) -> None:
        if len(self._pending) > 1 << 20:
            self._central.write(self._pending)
            self._pending.clear()

    def close(self) -> None:
        self._central.write(self._pending)
        self._pending.clear()
        cd_start = self.pos
        self._central.seek(0)
        while block := self._central.read(1 << 20):
            self.out.write(block)
            self.pos += len(block)
        self._central.close()
        cd_size = self.pos - cd_start
        zip64 = (
            self._zip64_any
            or self.count >= self.ZIP64_ENTRIES
            or cd_start >= self.ZIP64_OFFSET
            or cd_size >= self.ZIP64_OFFSET
        )
        tail = b""
        if zip64:
            record_at = self.pos
            tail += struct.pack(
                "<IQHHIIQQQQ",
                0x06064B50,
                44,
                45,
                45,
                0,
                0,
                self.count,
                self.count,
                cd_size,
                cd_start,
            )
            tail += struct.pack("<IIQI", 0x07064B50, 0, record_at, 1)
        n16 = 0xFFFF if zip64 else self.count
        tail += struct.pack(
            "<IHHHHIIH",
            0x06054B50, 0, 0, n16, n16,
            _U32 if zip64 else cd_size, _U32 if zip64 else cd_start, 0,
        )  # fmt: skip
        self.out.write(tail)
        self.pos += len(tail)


# -- writer -------------------------------------------------------------------------------

_IDAT_CRC = zlib.crc32(b"IDAT")
_IDAT_HEAD = struct.Struct(">I4s")  # chunk length, b"IDAT"
_U32BE = struct.Struct(">I")
_IEND = _png_chunk(b"IEND", b"")


@dataclass(frozen=True)
class _Batch:
    """A sub-chunk's zip entries, laid out for ``ZipStream.add_batch``."""

    entries: bytes
    names: list[bytes]
    sizes: np.ndarray
    crcs: np.ndarray


class _FileCrc:
    """The zip's CRC-32 of a PNG file from the CRC of its IDAT chunk, which the file needs
    anyway: the file is ``head + be32(len) + b"IDAT" + idat`` then the chunk's CRC and
    IEND. CRC-32 is affine, so crc(P + Q) = crc(P + zeros(len Q)) ^ crc(Q) ^ crc(zeros(len
    Q)): the first and last terms depend on the IDAT length only and are kept per length,
    and the second is the chunk's CRC. Saves hashing every file a second time."""

    def __init__(self, head: bytes):
        self.head = head
        self._by_length: dict[int, int] = {}

    def __call__(self, idat_len: int, chunk_crc: int, tail: bytes) -> int:
        """CRC of the file whose IDAT data is ``idat_len`` bytes with CRC ``chunk_crc``
        (over b"IDAT" + data), followed by ``tail`` (the chunk's CRC and IEND)."""
        base = self._by_length.get(idat_len)
        if base is None:
            zeros = bytes(4 + idat_len)
            prefix = zlib.crc32(self.head + _U32BE.pack(idat_len))
            base = self._by_length[idat_len] = zlib.crc32(zeros, prefix) ^ zlib.crc32(zeros)
        return zlib.crc32(tail, base ^ chunk_crc)


def _png_batch(renderer: _Renderer, sub: LabelChunk, ecc: str) -> _Batch:
    """The zip entries of the labels of ``sub``, in a worker thread: numpy and zlib release
    the GIL for the heavy parts, and everything per label that is not compression (PNG
    chunks, CRCs, zip local headers) is done here too, so that the thread writing the zip
    does one write and a few numpy calls per sub-chunk."""
    n = len(sub)
    matrices = encode_chunk(sub, ecc, renderer.place.version)
    rows = renderer.rows(matrices, ascii_matrix(sub.codes), sub.serials, out=renderer.scanlines(n))
    size = rows.shape[1] * rows.shape[2]
    data = rows.reshape(-1).data  # contiguous: the first n labels of the buffer
    head = renderer.header()
    head_len, file_crc = len(head), renderer.file_crc
    compressobj, crc32, pack_head, pack_u32, pack_local = (
        zlib.compressobj,
        zlib.crc32,
        _IDAT_HEAD.pack,
        _U32BE.pack,
        _LOCAL.pack,
    )
    names = [b"%010d.png" % serial for serial in sub.serials.tolist()]
    parts: list[bytes] = []
    crcs: list[int] = []
    sizes: list[int] = []
    # Everything per label happens in this one loop, between the zlib calls that release
    # the GIL: no long stretch of Python keeps the other worker waiting for it.
    for name, start in zip(names, range(0, n * size, size), strict=True):
        # Z_RLE: after the Up filter the data is mostly runs; matching only distance-1 runs
        # is ~1.4x faster than level 1's hash chains at about the same size.
        c = compressobj(COMPRESS_LEVEL, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
        idat = c.compress(data[start : start + size]) + c.flush()
        chunk_crc = crc32(idat, _IDAT_CRC)
        end = pack_u32(chunk_crc) + _IEND
        crc = file_crc(len(idat), chunk_crc, end)  # the PNG file's CRC, for the zip
        png_size = head_len + 8 + len(idat) + len(end)
        local = pack_local(*_LOCAL_FIXED, crc, png_size, png_size, len(name), 0)
        parts += (local, name, head, pack_head(len(idat), b"IDAT"), idat, end)
        crcs.append(crc)
        sizes.append(png_size)
    return _Batch(
        b"".join(parts),
        names,
        np.array(sizes, dtype=np.uint32),
        np.array(crcs, dtype=np.uint32),
    )


def _sub_chunks(chunks: Iterable[LabelChunk]) -> Iterator[LabelChunk]:
    for chunk in chunks:
        for start in range(0, len(chunk), SUB_CHUNK):
            part = slice(start, start + SUB_CHUNK)
            yield LabelChunk(chunk.serials[part], chunk.codes[part], chunk.payloads[part])


def write_png_zip(
    profile: PrinterProfile,
    content: LabelContent,
    chunks: Iterable[LabelChunk],
    out: BinaryIO,
) -> int:
    """Write a zip of ``<serial, 10 digits>.png`` files; returns labels written.

    Composition and compression of sub-chunks run on ``WORKERS`` threads (at most
    ``2 * WORKERS`` sub-chunks in flight, so memory stays bounded); entries are written
    in serial order by this thread.
    """
    check_format("png", profile)
    layout = compute_layout(profile, content)
    ecc = profile.qr.ecc
    zf = ZipStream(out)
    renderer: _Renderer | None = None
    written = 0
    pending: deque[Future[_Batch]] = deque()

    def drain(limit: int) -> None:
        nonlocal written
        while len(pending) > limit:
            batch = pending.popleft().result()
            zf.add_batch(batch.entries, batch.names, batch.sizes, batch.crcs)
            written += len(batch.names)

    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="png") as pool:
        try:
            for sub in _sub_chunks(chunks):
                if not len(sub):
                    continue
                if renderer is None:
                    version = qr_version(sub.payloads.dtype.itemsize, ecc)
                    renderer = _Renderer(profile, layout, qr_placement(profile, version))
                pending.append(pool.submit(_png_batch, renderer, sub, ecc))
                drain(2 * WORKERS)
            drain(0)
        finally:
            for future in pending:
                future.cancel()
    zf.close()
    return written
