"""What goes on the labels of one run, and where: computed once per run, not per label.

``LabelContent`` is the text that is the same on every label of a run (the producer
chooses the fields); ``LabelChunk`` carries the per-label values (serials, code text, QR
payload) for a slice of the run as numpy arrays; ``compute_layout`` resolves a profile
and a content into concrete positions (millimetres from the label's top-left corner)
that every writer renders in its own unit.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from trace.labels.profiles import PrinterProfile

if TYPE_CHECKING:  # pragma: no cover
    from trace.crypto.keyring import Keyring

__all__ = [
    "DEFAULT_CHUNK",
    "CodeLine",
    "LabelChunk",
    "LabelContent",
    "Layout",
    "LayoutError",
    "QrPlacement",
    "SerialLine",
    "TextLine",
    "clean_text",
    "compute_layout",
    "display_width",
    "iter_chunks",
    "make_chunk",
    "qr_placement",
]

DEFAULT_CHUNK = 4096  # labels per chunk: ~1 MB of ZPL/TSPL, a few MB of raster work

# Vertical position of the text baseline inside a line box of height ``size``: the
# CJK faces used here put the ideographic em box ~0.88 em above the baseline.
BASELINE_RATIO = 0.86
ELLIPSIS = "…"


class LayoutError(ValueError):
    """The content does not fit the profile (too many lines, QR too large, ...)."""


@dataclass(frozen=True)
class LabelContent:
    """Text that is the same on every label of a run.

    ``lines`` are ``(field key, display text)`` pairs, e.g. ``("product", "华宁柑桔")``,
    printed one per line in this order below the optional ``title``.
    """

    lines: list[tuple[str, str]]
    show_code_text: bool = True
    show_serial: bool = True
    title: str | None = None


@dataclass(frozen=True)
class LabelChunk:
    """Per-label values for a contiguous slice of a run (all arrays have one row per label).

    ``codes`` is ``S27`` (human-readable code text), ``payloads`` is ``S<n>`` (the QR
    payload URLs, ASCII upper case), ``serials`` is an integer array.
    """

    serials: np.ndarray
    codes: np.ndarray
    payloads: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.serials)
        if len(self.codes) != n or len(self.payloads) != n:
            raise ValueError("serials, codes and payloads must have the same length")
        if self.codes.dtype.kind != "S" or self.payloads.dtype.kind != "S":
            raise ValueError("codes and payloads must be numpy bytes arrays (dtype 'S')")
        if self.serials.dtype.kind not in "iu":
            raise ValueError("serials must be an integer array")

    def __len__(self) -> int:
        return len(self.serials)


# -- building chunks ----------------------------------------------------------------------


def make_chunk(serials: np.ndarray, codes: np.ndarray, base_url: str) -> LabelChunk:
    """A chunk whose payloads are ``payload_prefix(base_url) + code``, built vectorised."""
    from trace.crypto.codes import payload_prefix, payload_url

    prefix = payload_prefix(base_url).encode("ascii")
    codes = np.ascontiguousarray(codes)
    n = len(codes)
    width = codes.dtype.itemsize
    if n:
        # The payload format is owned by trace.crypto.codes: check our fast path agrees.
        first = codes[0].decode("ascii")
        if payload_url(base_url, first).encode("ascii") != prefix + codes[0]:
            raise ValueError("payload_url is not prefix + code; cannot build payloads")
    buf = np.empty((n, len(prefix) + width), dtype=np.uint8)
    buf[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    buf[:, len(prefix) :] = codes.view(np.uint8).reshape(n, width)
    payloads = buf.view(f"S{len(prefix) + width}").reshape(n)
    return LabelChunk(serials=np.asarray(serials, dtype=np.int64), codes=codes, payloads=payloads)


def iter_chunks(
    keyring: Keyring,
    run_id: int,
    first_serial: int,
    count: int,
    base_url: str,
    chunk: int = DEFAULT_CHUNK,
    key_version: int | None = None,
) -> Iterator[LabelChunk]:
    """Mint a run lazily, ``chunk`` labels at a time (memory independent of ``count``)."""
    from trace.crypto.codes import iter_mint

    serial = first_serial
    for codes in iter_mint(keyring, run_id, first_serial, count, key_version, chunk=chunk):
        k = len(codes)
        yield make_chunk(np.arange(serial, serial + k, dtype=np.int64), codes, base_url)
        serial += k


# -- text helpers -------------------------------------------------------------------------


def clean_text(text: str) -> str:
    """One printable line: control characters dropped, whitespace runs made one space.

    Printer languages delimit fields with quotes, carets and line ends; a stray newline
    in a producer name must not end a TSPL command.
    """
    text = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf")
    )
    return " ".join(text.split())


def _char_width(ch: str) -> float:
    return 1.0 if unicodedata.east_asian_width(ch) in ("W", "F", "A") else 0.5


def display_width(text: str) -> float:
    """Width in em of a monospaced CJK face: full-width characters 1, the rest 0.5."""
    return sum(_char_width(ch) for ch in text)


def fit_text(text: str, max_em: float) -> str:
    """``text`` cut (with an ellipsis) so its display width is at most ``max_em``."""
    if display_width(text) <= max_em:
        return text
    out, used = [], _char_width(ELLIPSIS)
    for ch in text:
        w = _char_width(ch)
        if used + w > max_em:
            break
        out.append(ch)
        used += w
    return "".join(out) + ELLIPSIS


# -- layout -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextLine:
    """A static line; ``y_mm`` is the top of its line box."""

    text: str
    x_mm: float
    y_mm: float
    size_mm: float
    width_mm: float
    font: str
    is_title: bool = False


@dataclass(frozen=True)
class CodeLine:
    """Characters ``start:stop`` of each label's code text, printed at (x, y)."""

    start: int
    stop: int
    x_mm: float
    y_mm: float
    size_mm: float
    width_mm: float
    font: str


@dataclass(frozen=True)
class SerialLine:
    prefix: str
    x_mm: float
    y_mm: float
    size_mm: float
    width_mm: float
    font: str


@dataclass(frozen=True)
class Layout:
    profile: PrinterProfile
    text: tuple[TextLine, ...]
    code_lines: tuple[CodeLine, ...]
    serial: SerialLine | None


def compute_layout(profile: PrinterProfile, content: LabelContent, code_length: int = 27) -> Layout:
    """Resolve ``content`` into positions on ``profile``'s label. Raises ``LayoutError``."""
    spec = profile.text
    texts: list[tuple[str, bool]] = []
    if content.title:
        texts.append((clean_text(content.title), True))
    texts.extend((clean_text(text), False) for _key, text in content.lines)
    texts = [(t, is_title) for t, is_title in texts if t]
    if len(texts) > spec.max_lines:
        raise LayoutError(
            f"printer profile {profile.name!r} shows at most {spec.max_lines} text lines, "
            f"this label has {len(texts)}; choose fewer fields"
        )
    lines: list[TextLine] = []
    y = spec.y_mm
    for text, is_title in texts:
        size = spec.title_size_mm if (is_title and spec.title_size_mm) else spec.size_mm
        width = spec.width_mm or size
        fitted = fit_text(text, spec.max_width_mm / width)
        if y + size > profile.label.height_mm + 1e-6:
            raise LayoutError(f"text line {text!r} falls below the label of {profile.name!r}")
        lines.append(TextLine(fitted, spec.x_mm, y, size, width, spec.font, is_title))
        y += spec.line_height_mm + (size - spec.size_mm)

    code_lines: list[CodeLine] = []
    if content.show_code_text:
        c = profile.code_text
        per_line = c.chars_per_line or code_length
        for i, start in enumerate(range(0, code_length, per_line)):
            code_lines.append(
                CodeLine(
                    start,
                    min(code_length, start + per_line),
                    c.x_mm,
                    c.y_mm + i * c.line_height_mm,
                    c.size_mm,
                    c.width_mm or c.size_mm * 0.5,
                    c.font,
                )
            )
    serial = None
    if content.show_serial:
        s = profile.serial
        serial = SerialLine(
            clean_text(s.prefix), s.x_mm, s.y_mm, s.size_mm, s.width_mm or s.size_mm * 0.5, s.font
        )
    return Layout(profile, tuple(lines), tuple(code_lines), serial)


# -- QR geometry --------------------------------------------------------------------------


@dataclass(frozen=True)
class QrPlacement:
    version: int
    modules: int  # symbol width in modules, without quiet zone
    module_dots: int  # in the output's dots (printer dots or PNG pixels)
    x_dots: int
    y_dots: int

    @property
    def size_dots(self) -> int:
        return self.modules * self.module_dots


def qr_version(payload_length: int, ecc: str) -> int:
    """Smallest QR version holding ``payload_length`` alphanumeric characters."""
    from trace.labels.qr_batch import alnum_version_for

    return int(alnum_version_for(payload_length, ecc))


def qr_placement(profile: PrinterProfile, version: int, dpi: int | None = None) -> QrPlacement:
    """Where the QR goes in dots at ``dpi`` (default: the profile's), checked to fit."""
    dpi = dpi or profile.dpi
    modules = 17 + 4 * version
    q = profile.qr
    if q.module_dots is not None and dpi == profile.dpi:
        module = q.module_dots
    else:
        wanted_mm = q.size_mm if q.size_mm is not None else _module_mm(profile) * modules
        module = int(wanted_mm * dpi / 25.4 // modules)
        if module < 1:
            raise LayoutError(
                f"a version {version} QR code does not fit {wanted_mm} mm at {dpi} dpi "
                f"(profile {profile.name!r})"
            )
    x, y = round(q.x_mm * dpi / 25.4), round(q.y_mm * dpi / 25.4)
    size = modules * module
    width, height = (
        round(v * dpi / 25.4) for v in (profile.label.width_mm, profile.label.height_mm)
    )
    if x + size > width or y + size > height:
        raise LayoutError(
            f"a version {version} QR code ({size} dots) does not fit the "
            f"{profile.label.width_mm}x{profile.label.height_mm} mm label of {profile.name!r}; "
            "use a shorter base URL, a lower ECC level or a smaller module size"
        )
    return QrPlacement(version, modules, module, x, y)


def _module_mm(profile: PrinterProfile) -> float:
    assert profile.qr.module_dots is not None
    return profile.qr.module_dots * 25.4 / profile.dpi


def qr_size_mm(profile: PrinterProfile, version: int) -> float:
    """The symbol's width in mm for vector output (PDF), checked to fit the label."""
    modules = 17 + 4 * version
    q = profile.qr
    size = q.size_mm if q.size_mm is not None else _module_mm(profile) * modules
    if (
        q.x_mm + size > profile.label.width_mm + 1e-6
        or q.y_mm + size > profile.label.height_mm + 1e-6
    ):
        raise LayoutError(f"the QR code ({size:.1f} mm) does not fit the label of {profile.name!r}")
    return size
