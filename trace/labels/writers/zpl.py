"""ZPL II (Zebra and compatibles) with the printer's own QR code (``^BQ``).

One ``^XA … ^XZ`` format per label::

    ^XA
    ^CI28^PW320^LL240^LH0,0                      UTF-8 text, label size in dots
    ^FO20,20^BQN,2,4^FDMA,HTTPS://…/Q/<CODE>^FS  QR model 2, magnification 4;
                                                 ^FD data = ECC level, input mode, ','
    ^FO148,20^A@N,24,24,E:SIMSUN.FNT^FD华宁柑桔^FS  static text (CJK font on the printer)
    ^FO20,148^A0N,20,12^FD<code chars>^FS
    ^FO20,200^A0N,20,12^FDNo.<serial>^FS
    ^PQ1^XZ

Everything but the payload, code and serial is rendered to bytes once per run
(``RecordTemplate``); text that contains ``^``, ``~`` or ``_`` goes through ``^FH``
hexadecimal escapes.
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
from trace.labels.profiles import PrinterProfile
from trace.labels.writers.base import (
    RecordTemplate,
    ascii_matrix,
    check_bytes,
    check_format,
    render_chunk,
)

__all__ = ["build_template", "write_zpl", "zpl_font", "zpl_text"]

_ESCAPE = {ord("^"): "_5E", ord("~"): "_7E", ord("_"): "_5F"}
FORBIDDEN = b"^~"


def zpl_text(text: str) -> bytes:
    """``^FD`` data for ``text`` (UTF-8 under ^CI28), with ``^FH`` escapes when needed."""
    if any(ord(ch) in _ESCAPE for ch in text):
        return b"^FH_^FD" + text.translate(_ESCAPE).encode("utf-8")
    return b"^FD" + text.encode("utf-8")


def zpl_font(font: str, height: int, width: int) -> bytes:
    """``^A0N,h,w`` for a built-in font letter/digit, ``^A@N,h,w,E:FONT.FNT`` by name."""
    if len(font) == 1 and font.isalnum():
        return f"^A{font.upper()}N,{height},{width}".encode("ascii")
    return f"^A@N,{height},{width},{font}".encode("ascii")


def build_template(
    profile: PrinterProfile, layout: Layout, qr_parts: Sequence[bytes | str]
) -> RecordTemplate:
    """The label as a template; ``qr_parts`` is the QR field (native ^BQ or raster ^GF)."""
    d = profile.dots
    parts: list[bytes | str] = [
        b"^XA\n",
        f"^CI28^PW{d(profile.label.width_mm)}^LL{d(profile.label.height_mm)}^LH0,0\n".encode(),
        *qr_parts,
    ]
    for line in layout.text:
        parts += [
            f"^FO{d(line.x_mm)},{d(line.y_mm)}".encode(),
            zpl_font(line.font, d(line.size_mm), d(line.width_mm)),
            zpl_text(line.text),
            b"^FS\n",
        ]
    for c in layout.code_lines:
        parts += [
            f"^FO{d(c.x_mm)},{d(c.y_mm)}".encode(),
            zpl_font(c.font, d(c.size_mm), d(c.width_mm)),
            b"^FD",
            f"code:{c.start}:{c.stop}",
            b"^FS\n",
        ]
    if layout.serial is not None:
        s = layout.serial
        parts += [
            f"^FO{d(s.x_mm)},{d(s.y_mm)}".encode(),
            zpl_font(s.font, d(s.size_mm), d(s.width_mm)),
            zpl_text(s.prefix),
            "serial",
            b"^FS\n",
        ]
    parts.append(b"^PQ1^XZ\n")
    return RecordTemplate(parts)


def native_qr_parts(profile: PrinterProfile, x: int, y: int, module: int) -> list[bytes | str]:
    q = profile.qr
    # ^FD of ^BQ: <ECC level><input mode>,<data>; manual mode also names the character
    # mode (A = alphanumeric) before the data.
    head = f"{q.ecc}{q.input_mode}," + ("A" if q.input_mode == "M" else "")
    magnification = min(module, 10)  # ^BQ accepts 1..10
    return [f"^FO{x},{y}^BQN,2,{magnification}^FD{head}".encode("ascii"), "payload", b"^FS\n"]


def write_zpl(
    profile: PrinterProfile,
    content: LabelContent,
    chunks: Iterable[LabelChunk],
    out: BinaryIO,
) -> int:
    check_format("zpl", profile)
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
        check_bytes(ascii_matrix(chunk.payloads), FORBIDDEN, "a QR payload", "ZPL")
        check_bytes(ascii_matrix(chunk.codes), FORBIDDEN, "a code", "ZPL")
        out.write(render_chunk(template, chunk))
        written += len(chunk)
    return written
