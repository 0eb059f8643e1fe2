"""PDF label sheets (A4 sticker stock) written by a minimal streaming PDF writer.

Why not reportlab's canvas: it keeps every page in memory until ``save()``. Measured on
the project machine, 80 A4 pages of 65 QR labels drawn as rectangles took 9 s and grew the
process by ~0.4 MB per page -- a 300k-label run is 4,616 pages (≈ 8 minutes, ≈ 2 GB). This
writer emits each page as soon as it is complete, so memory stays flat; only 8 bytes per
PDF object (the cross-reference offsets) are kept until the end. reportlab is still used
for the one hard part, TrueType subsetting (see ``fonts.py``).

Per run (once): the font (an embedded TrueType subset, or the STSong-Light fallback), and
a Form XObject ``/T0`` with the label's static text. Per label: ``/T0 Do`` at the label's
position, the QR as a 1-bit inline image (one sample per module, scaled by the CTM,
``/Interpolate`` off so it stays sharp; ASCIIHex inside a Flate-compressed content
stream), and the code text and serial as text in the same font (ASCII codes are identity
in the subset, so they are copied into the stream as they are).

QR as image vs vector: an image costs 116 bytes per version-3 symbol whatever its
pattern; merged horizontal runs still cost ~230 ``re`` operators (~3 KB) per symbol.
Measured over 300k labels the vector form is several times slower to write and
compress (see bench/RESULTS.md), so the image form is used.
"""

from __future__ import annotations

import itertools
import zlib
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from trace.labels.content import (
    BASELINE_RATIO,
    LabelChunk,
    LabelContent,
    Layout,
    compute_layout,
    qr_size_mm,
    qr_version,
)
from trace.labels.profiles import PrinterProfile
from trace.labels.writers.base import ascii_matrix, check_bytes, check_format
from trace.labels.writers.fonts import PdfFontSubset, find_cjk_font
from trace.labels.writers.raster import HEX_TABLE, encode_chunk

__all__ = ["PT_PER_MM", "write_pdf"]

PT_PER_MM = 72 / 25.4
COMPRESS_LEVEL = 6  # page content streams; level 1 is ~1.4x faster but ~25 % larger

# Object numbers fixed by this layout: catalog, page tree (written last), shared page
# resources, info, first font object; the form and the pages follow the font objects.
_CATALOG, _PAGES, _RESOURCES, _INFO, _FONT = 1, 2, 3, 4, 5


def _n(value: float) -> str:
    """A PDF number with at most 3 decimals and no trailing zeros."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _array(values: list[Any]) -> str:
    """A (nested) list of numbers as a PDF array."""
    return "[" + " ".join(_array(v) if isinstance(v, list) else str(v) for v in values) + "]"


class _PdfFile:
    """Counts bytes and records object offsets while writing to a forward-only stream."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.pos = 0
        self.offsets = array("Q")

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.pos += len(data)

    def obj(self, num: int, body: bytes, stream: bytes | None = None) -> None:
        if len(self.offsets) <= num:
            self.offsets.extend([0] * (num + 1 - len(self.offsets)))
        self.offsets[num] = self.pos
        parts = [b"%d 0 obj\n" % num, body]
        if stream is not None:
            parts += [b"\nstream\n", stream, b"\nendstream"]
        parts.append(b"\nendobj\n")
        self.write(b"".join(parts))

    def xref_and_trailer(self, count: int) -> None:
        start = self.pos
        rows = [b"xref\n0 %d\n0000000000 65535 f \n" % count]
        rows += [b"%010d 00000 n \n" % self.offsets[i] for i in range(1, count)]
        rows.append(
            b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
            % (count, _CATALOG, _INFO, start)
        )
        self.write(b"".join(rows))


@dataclass(frozen=True)
class _Page:
    width_mm: float
    height_mm: float
    slots: tuple[tuple[float, float], ...]  # label top-left corners, mm from page top-left


def _page_geometry(profile: PrinterProfile) -> _Page:
    s = profile.sheet
    if s is None:  # thermal / PNG profile: one label per page of the label's size
        return _Page(profile.label.width_mm, profile.label.height_mm, ((0.0, 0.0),))
    slots = tuple(
        (s.margin_left_mm + c * s.pitch_x_mm, s.margin_top_mm + r * s.pitch_y_mm)
        for r in range(s.rows)
        for c in range(s.columns)
    )
    return _Page(s.page_width_mm, s.page_height_mm, slots)


class _Fonts:
    """``/F1`` for the static text and ``/F2`` for per-label ASCII text."""

    def __init__(self, profile: PrinterProfile, layout: Layout):
        ref = find_cjk_font(profile.render_font)
        chars = "".join(line.text for line in layout.text) + (
            layout.serial.prefix if layout.serial else ""
        )
        self.subset = PdfFontSubset(ref, chars) if ref is not None else None

    def objects(self) -> tuple[list[tuple[int, bytes, bytes | None]], bytes, int]:
        """(objects, /Font resource dictionary, next free object number)."""
        if self.subset is not None:
            objs = self.subset.objects(_FONT)
            return objs, b"<< /F1 %d 0 R /F2 %d 0 R >>" % (_FONT, _FONT), _FONT + len(objs)
        # Fallback: Adobe-GB1 CID font (not embedded) + Courier for the ASCII fields. The
        # descendant font's metrics (widths of the Latin CIDs) come from reportlab's data.
        from reportlab.pdfbase._cidfontdata import CIDFontInfo

        info = CIDFontInfo["STSong-Light"]["DescendantFonts"][0]
        desc = info["FontDescriptor"]
        cid = (
            "<< /Type /Font /Subtype /Type0 /BaseFont /STSong-Light /Encoding /UniGB-UCS2-H "
            "/DescendantFonts [<< /Type /Font /Subtype /CIDFontType0 /BaseFont /STSong-Light "
            "/CIDSystemInfo << /Registry (Adobe) /Ordering (GB1) /Supplement 2 >> "
            f"/FontDescriptor << /Type /FontDescriptor /FontName /STSong-Light "
            f"/Flags {desc['Flags']} /FontBBox {_array(desc['FontBBox'])} /ItalicAngle 0 "
            f"/Ascent {desc['Ascent']} /Descent {desc['Descent']} "
            f"/CapHeight {desc['CapHeight']} /StemV {desc['StemV']} >> "
            f"/DW {info['DW']} /W {_array(info['W'])} >>] >>"
        ).encode("ascii")
        courier = b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier /Encoding /WinAnsiEncoding >>"
        objs = [(_FONT, cid, None), (_FONT + 1, courier, None)]
        return objs, b"<< /F1 %d 0 R /F2 %d 0 R >>" % (_FONT, _FONT + 1), _FONT + 2

    def static_text(self, text: str) -> bytes:
        if self.subset is not None:
            return self.subset.encode(text)
        return b"<" + text.encode("utf-16-be", "replace").hex().upper().encode() + b">"


def _form_content(layout: Layout, fonts: _Fonts) -> bytes:
    label_h = layout.profile.label.height_mm
    ops = []
    for line in layout.text:
        size = line.size_mm * PT_PER_MM
        x = line.x_mm * PT_PER_MM
        y = (label_h - line.y_mm - line.size_mm * BASELINE_RATIO) * PT_PER_MM
        # A condensed line (content.compute_layout) is drawn with horizontal scaling; Tz is
        # graphics state and outlives ET, so it is set back for the next line.
        scale = 100 * line.width_mm / line.size_mm
        condensed = abs(scale - 100) > 0.05
        ops.append(
            f"BT /F1 {_n(size)} Tf {_n(scale) + ' Tz ' if condensed else ''}"
            f"{_n(x)} {_n(y)} Td ".encode()
            + fonts.static_text(line.text)
            + (b" Tj 100 Tz ET\n" if condensed else b" Tj ET\n")
        )
    return b"".join(ops)


def _slot_pieces(
    layout: Layout,
    fonts: _Fonts,
    page: _Page,
    slot: tuple[float, float],
    qr_mm: float,
    modules: int,
) -> list[bytes]:
    """The static bytes around a label's fields at one position on the page.

    Returns ``[before QR hex, after QR hex (+ code line 1 head), …, after serial]``: one
    piece more than the number of per-label fields.
    """
    prof = layout.profile
    ox, oy = slot
    k = PT_PER_MM

    def x_of(mm: float) -> str:
        return _n((ox + mm) * k)

    def base_of(top_mm: float, size_mm: float) -> str:
        return _n((page.height_mm - oy - top_mm - size_mm * BASELINE_RATIO) * k)

    qy = page.height_mm - oy - prof.qr.y_mm - qr_mm
    label_bottom = (page.height_mm - oy - prof.label.height_mm) * k
    first = (
        f"q 1 0 0 1 {_n(ox * k)} {_n(label_bottom)} cm /T0 Do Q\n"
        f"q {_n(qr_mm * k)} 0 0 {_n(qr_mm * k)} {x_of(prof.qr.x_mm)} {_n(qy * k)} cm "
        f"BI /W {modules} /H {modules} /BPC 1 /CS /G /D [1 0] /F /AHx ID\n"
    ).encode()
    pieces = [first]
    tail = b">\nEI Q\n"
    for c in layout.code_lines:
        pos = f"{x_of(c.x_mm)} {base_of(c.y_mm, c.size_mm)}"
        pieces.append(tail + f"BT /F2 {_n(c.size_mm * k)} Tf {pos} Td (".encode())
        tail = b") Tj ET\n"
    if layout.serial is not None:
        s = layout.serial
        pos = f"{x_of(s.x_mm)} {base_of(s.y_mm, s.size_mm)}"
        size = _n(s.size_mm * k)
        # The prefix may be Chinese ("编号"): it goes through /F1 like the static text.
        prefix = f"BT /F1 {size} Tf {pos} Td ".encode() + fonts.static_text(s.prefix)
        pieces.append(tail + prefix + f" Tj /F2 {size} Tf (".encode())
        tail = b") Tj ET\n"
    pieces.append(tail)
    return pieces


def _label_fields(chunk: LabelChunk, layout: Layout, ecc: str, version: int) -> list[list[bytes]]:
    """Per-label variable bytes, field by field: QR hex, code slices, serial digits."""
    matrices = encode_chunk(chunk, ecc, version)
    n = matrices.shape[0]
    packed = np.packbits(matrices.astype(bool, copy=False), axis=2)  # (n, m, ceil(m/8))
    hexed = np.ascontiguousarray(HEX_TABLE[packed].reshape(n, -1))
    fields = [hexed.view(f"S{hexed.shape[1]}").ravel().tolist()]
    codes = ascii_matrix(chunk.codes)
    for c in layout.code_lines:
        part = np.ascontiguousarray(codes[:, c.start : c.stop])
        fields.append(part.view(f"S{part.shape[1]}").ravel().tolist())
    if layout.serial is not None:
        fields.append([b"%d" % s for s in chunk.serials.tolist()])
    return fields


class _LabelStream:
    """Every label's variable fields (one list per label), chunk by chunk; the QR version
    is fixed by the first chunk's payload length."""

    def __init__(self, chunks: Iterable[LabelChunk], layout: Layout, ecc: str):
        self.version = 0
        self._it = self._labels(chunks, layout, ecc)
        self._first = next(self._it, None)

    @property
    def empty(self) -> bool:
        return self._first is None

    def _labels(
        self, chunks: Iterable[LabelChunk], layout: Layout, ecc: str
    ) -> Iterator[list[bytes]]:
        for chunk in chunks:
            if not len(chunk):
                continue
            check_bytes(ascii_matrix(chunk.codes), b"()\\", "a code", "PDF text")
            if not self.version:
                self.version = qr_version(chunk.payloads.dtype.itemsize, ecc)
            fields = _label_fields(chunk, layout, ecc, self.version)
            yield from (list(row) for row in zip(*fields, strict=True))

    def pages(self, per_page: int) -> Iterator[list[list[bytes]]]:
        if self._first is None:
            return
        labels = itertools.chain([self._first], self._it)
        while batch := list(itertools.islice(labels, per_page)):
            yield batch


def write_pdf(
    profile: PrinterProfile,
    content: LabelContent,
    chunks: Iterable[LabelChunk],
    out: BinaryIO,
) -> int:
    check_format("pdf", profile)
    layout = compute_layout(profile, content)
    page = _page_geometry(profile)
    fonts = _Fonts(profile, layout)
    labels = _LabelStream(chunks, layout, profile.qr.ecc)  # reads the first chunk

    f = _PdfFile(out)
    f.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    f.obj(_CATALOG, b"<< /Type /Catalog /Pages %d 0 R >>" % _PAGES)
    f.obj(_INFO, b"<< /Producer (trace label writer) /Title (Trace labels) >>")
    font_objs, font_res, form_num = fonts.objects()
    for num, body, data in font_objs:
        f.obj(num, body, data)
    f.obj(
        _RESOURCES,
        b"<< /Font %s /XObject << /T0 %d 0 R >> /ProcSet [/PDF /Text /ImageB] >>"
        % (font_res, form_num),
    )
    lw, lh = profile.label.width_mm * PT_PER_MM, profile.label.height_mm * PT_PER_MM
    form = zlib.compress(_form_content(layout, fonts), COMPRESS_LEVEL)
    f.obj(
        form_num,
        f"<< /Type /XObject /Subtype /Form /BBox [0 0 {_n(lw)} {_n(lh)}] ".encode()
        + b"/Resources << /Font %s >> /Filter /FlateDecode /Length %d >>" % (font_res, len(form)),
        form,
    )

    pages = count = 0
    first_page_num = form_num + 1
    if not labels.empty:
        modules = 17 + 4 * labels.version
        qr_mm = qr_size_mm(profile, labels.version)
        slots = [_slot_pieces(layout, fonts, page, s, qr_mm, modules) for s in page.slots]
        width, height = page.width_mm * PT_PER_MM, page.height_mm * PT_PER_MM
        media = f"/MediaBox [0 0 {_n(width)} {_n(height)}]".encode()
        for batch in labels.pages(len(slots)):
            parts: list[bytes] = []
            for pieces, fields in zip(slots, batch, strict=False):
                parts.append(pieces[0])
                for piece, value in zip(pieces[1:], fields, strict=True):
                    parts.append(value)
                    parts.append(piece)
            data = zlib.compress(b"".join(parts), COMPRESS_LEVEL)
            num = first_page_num + 2 * pages
            f.obj(
                num,
                b"<< /Type /Page /Parent %d 0 R %s /Resources %d 0 R /Contents %d 0 R >>"
                % (_PAGES, media, _RESOURCES, num + 1),
            )
            f.obj(num + 1, b"<< /Filter /FlateDecode /Length %d >>" % len(data), data)
            pages += 1
            count += len(batch)
    if pages == 0:  # no labels: one blank page, since viewers reject an empty page tree
        width, height = page.width_mm * PT_PER_MM, page.height_mm * PT_PER_MM
        num = first_page_num
        f.obj(
            num,
            f"<< /Type /Page /Parent {_PAGES} 0 R /MediaBox [0 0 {_n(width)} {_n(height)}] "
            f"/Resources {_RESOURCES} 0 R /Contents {num + 1} 0 R >>".encode(),
        )
        f.obj(num + 1, b"<< /Length 0 >>", b"")
        pages = 1
    kids = b" ".join(b"%d 0 R" % (first_page_num + 2 * i) for i in range(pages))
    f.obj(_PAGES, b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages))
    f.xref_and_trailer(first_page_num + 2 * pages)
    return count
