"""Label writers: one streaming writer per output format (DESIGN.md §5).

``write_labels(fmt, profile, content, chunks, out)`` writes every label of ``chunks`` to
the binary stream ``out`` and returns how many it wrote. Chunks are consumed one at a
time, so memory does not grow with the number of labels.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

from trace.labels.content import LabelChunk, LabelContent
from trace.labels.profiles import FORMATS, PrinterProfile
from trace.labels.writers.base import FormatError, LabelWriter, UnsafeDataError, check_format
from trace.labels.writers.pdf import write_pdf
from trace.labels.writers.png import write_png_zip
from trace.labels.writers.raster import write_tspl_raster, write_zpl_raster
from trace.labels.writers.tspl import write_tspl
from trace.labels.writers.zpl import write_zpl

__all__ = [
    "FORMATS",
    "MEDIA_TYPES",
    "WRITERS",
    "FormatError",
    "UnsafeDataError",
    "file_extension",
    "write_labels",
]

WRITERS: dict[str, LabelWriter] = {
    "zpl": write_zpl,
    "tspl": write_tspl,
    "zpl-raster": write_zpl_raster,
    "tspl-raster": write_tspl_raster,
    "pdf": write_pdf,
    "png": write_png_zip,
}
assert tuple(WRITERS) == FORMATS

# For HTTP downloads and file names. Printer streams are opaque bytes to a browser.
MEDIA_TYPES: dict[str, str] = {
    "zpl": "application/octet-stream",
    "tspl": "application/octet-stream",
    "zpl-raster": "application/octet-stream",
    "tspl-raster": "application/octet-stream",
    "pdf": "application/pdf",
    "png": "application/zip",
}
_EXTENSIONS = {
    "zpl": "zpl",
    "tspl": "tspl",
    "zpl-raster": "zpl",
    "tspl-raster": "tspl",
    "pdf": "pdf",
    "png": "zip",
}


def file_extension(fmt: str) -> str:
    if fmt not in _EXTENSIONS:
        raise FormatError(f"unknown label format {fmt!r} (known: {', '.join(FORMATS)})")
    return _EXTENSIONS[fmt]


def write_labels(
    fmt: str,
    profile: PrinterProfile,
    content: LabelContent,
    chunks: Iterable[LabelChunk],
    out: BinaryIO,
) -> int:
    """Write the labels of ``chunks`` in ``fmt`` for ``profile``; returns labels written.

    Raises ``FormatError`` (a ``ValueError``) for an unknown format or one the profile does
    not support, ``LayoutError`` if the content does not fit the profile -- both before
    anything is written.
    """
    check_format(fmt, profile)
    return WRITERS[fmt](profile, content, chunks, out)
