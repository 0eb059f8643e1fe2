"""TSPL (TSC, Xprinter, Gprinter …) with the printer's own QR code (``QRCODE``).

The whole stream is GB18030 bytes (ASCII for commands; the built-in Chinese fonts such as
``TSS24.BF2`` take GB2312/GB18030 text). Job header once, then per label::

    SIZE 40 mm,30 mm / GAP 2 mm,0 mm / DIRECTION 1,0 / REFERENCE 0,0      (once)
    CLS
    QRCODE 20,20,M,4,A,0,M2,"HTTPS://…/Q/<CODE>"    x, y, ECC, cell width, auto mode,
                                                    rotation, model 2, "content"
    TEXT 148,20,"TSS24.BF2",0,1,1,"华宁柑桔"        x, y, font, rotation, x/y multiplier
    TEXT 148,49,"1",0,1,2,"HN-GJ-2026-11-001"      an ASCII value too long for TSS24.BF2:
                                                    the profile's narrow_font, 8 x 24 dots
    TEXT 20,148,"2",0,1,1,"<code chars>"
    TEXT 20,200,"2",0,1,1,"No.<serial>"
    PRINT 1,1

A ``"`` inside quoted TSPL text is written ``\\["]`` (the TSPL escape for a double quote).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import BinaryIO

from trace.labels.content import (
    LabelChunk,
    LabelContent,
    Layout,
    compute_layout,
    qr_placement,
    qr_version,
)
from trace.labels.profiles import TSPL_FONT_CELLS, PrinterProfile
from trace.labels.writers.base import (
    RecordTemplate,
    ascii_matrix,
    check_bytes,
    check_format,
    render_chunk,
)

__all__ = ["ENCODING", "build_template", "job_header", "tspl_text", "write_tspl"]

ENCODING = "gb18030"
FORBIDDEN = b'"\r\n'


def _num(value: float) -> str:
    return f"{value:g}"


def tspl_text(text: str) -> bytes:
    """A quoted TSPL string in GB18030."""
    return b'"' + text.replace('"', '\\["]').encode(ENCODING) + b'"'


def _multipliers(font: str, size_dots: int, width_dots: int | None) -> tuple[int, int]:
    cell = TSPL_FONT_CELLS.get(font.upper())  # unknown fonts print at multiplier 1
    if cell is None:
        return 1, 1
    my = min(10, max(1, round(size_dots / cell[1])))
    mx = my if width_dots is None else min(10, max(1, round(width_dots / cell[0])))
    return mx, my


def _text_cmd(
    profile: PrinterProfile,
    x_mm: float,
    y_mm: float,
    font: str,
    size_mm: float,
    width_mm: float | None,
) -> bytes:
    d = profile.dots
    full_width_font = font.upper().endswith(".BF2")
    # For the CJK bitmap fonts the cell width is the ideograph's; the profile's width is
    # a Latin character's (half of it), so only size decides the multiplier there.
    mx, my = _multipliers(
        font, d(size_mm), None if full_width_font or width_mm is None else d(width_mm)
    )
    return f'TEXT {d(x_mm)},{d(y_mm)},"{font}",0,{mx},{my},'.encode("ascii")


def job_header(profile: PrinterProfile) -> bytes:
    lab = profile.label
    return (
        f"SIZE {_num(lab.width_mm)} mm,{_num(lab.height_mm)} mm\r\n"
        f"GAP {_num(lab.gap_mm)} mm,0 mm\r\n"
        f"DIRECTION {profile.tspl_direction},0\r\n"
        "REFERENCE 0,0\r\n"
    ).encode("ascii")


def build_template(
    profile: PrinterProfile, layout: Layout, qr_parts: Sequence[bytes | str]
) -> RecordTemplate:
    parts: list[bytes | str] = [b"CLS\r\n", *qr_parts]
    for line in layout.text:
        # line.width_mm is a full-width cell; an ASCII font's cell is a Latin character.
        latin = None if line.width_mm >= line.size_mm - 1e-6 else line.width_mm / 2
        parts += [
            _text_cmd(profile, line.x_mm, line.y_mm, line.font, line.size_mm, latin),
            tspl_text(line.text),
            b"\r\n",
        ]
    for c in layout.code_lines:
        parts += [
            _text_cmd(profile, c.x_mm, c.y_mm, c.font, c.size_mm, c.width_mm),
            b'"',
            f"code:{c.start}:{c.stop}",
            b'"\r\n',
        ]
    if layout.serial is not None:
        s = layout.serial
        prefix = tspl_text(s.prefix)[:-1]  # open quote + prefix, the digits follow
        parts += [_text_cmd(profile, s.x_mm, s.y_mm, s.font, s.size_mm, s.width_mm), prefix]
        parts += ["serial", b'"\r\n']
    parts.append(b"PRINT 1,1\r\n")
    return RecordTemplate(parts)


def native_qr_parts(profile: PrinterProfile, x: int, y: int, module: int) -> list[bytes | str]:
    q = profile.qr
    model = f"{q.tspl_model}," if q.tspl_model else ""
    # Manual mode: the content's first character names the data mode (A = alphanumeric).
    lead = "A" if q.input_mode == "M" else ""
    head = f'QRCODE {x},{y},{q.ecc},{min(module, 10)},{q.input_mode},0,{model}"{lead}'
    return [head.encode("ascii"), "payload", b'"\r\n']


def write_tspl(
    profile: PrinterProfile,
    content: LabelContent,
    chunks: Iterable[LabelChunk],
    out: BinaryIO,
) -> int:
    check_format("tspl", profile)
    layout = compute_layout(profile, content)
    template: RecordTemplate | None = None
    written = 0
    for chunk in chunks:
        if not len(chunk):
            continue
        if template is None:
            place = qr_placement(profile, qr_version(chunk.payloads.dtype.itemsize, profile.qr.ecc))
            qr = native_qr_parts(profile, place.x_dots, place.y_dots, place.module_dots)
            template = build_template(profile, layout, qr)
            out.write(job_header(profile))
        check_bytes(ascii_matrix(chunk.payloads), FORBIDDEN, "a QR payload", "TSPL")
        check_bytes(ascii_matrix(chunk.codes), FORBIDDEN, "a code", "TSPL")
        out.write(render_chunk(template, chunk))
        written += len(chunk)
    return written
