"""What goes on the labels of one run, and where: computed once per run, not per label.

``LabelContent`` is the text that is the same on every label of a run (the producer
chooses the fields); ``LabelChunk`` carries the per-label values (serials, code text, QR
payload) for a slice of the run as numpy arrays; ``compute_layout`` resolves a profile
and a content into concrete positions (millimetres from the label's top-left corner)
that every writer renders in its own unit.

Fitting a line that is too long for the text column (``compute_layout``), in the order
that loses least -- a clerk, a shop and a regulator must be able to read the batch number
and the harvest date off a 40 x 30 mm label:

1. as is: ``"批次 HN-GJ-2026-11-001"``;
2. without the caption: ``"HN-GJ-2026-11-001"``;
3. narrower glyphs where the output can scale them: ZPL ``^A@`` with a smaller width, PDF
   and PNG horizontally condensed, never narrower than the profile's minimum (below). TSPL
   cannot scale its BF2 Chinese fonts; for an ASCII-only value a TSPL profile may name a
   built-in ASCII ``narrow_font`` (font "1": 8 dots per character instead of 12);
   (steps 1-3 are tried for the value, then for each of its shorter forms: an origin
   without its province, then without its city -- ``"华宁县盘溪镇"``);
4. wrapped onto following lines, if the profile has lines to spare;
5. only then an ellipsis, of the shortest form: at the end for names, in the MIDDLE for
   identifiers (batch numbers), keeping the head and the distinctive tail --
   ``"HN-GJ-…11-001"``.

Minimum glyph width (step 3): a full-width (CJK) character cell of ``MIN_EM_MM`` = 2.0 mm,
i.e. Latin characters 1.0 mm wide -- 8 dots at 203 dpi, as narrow as TSPL's smallest
built-in font and still legible from a thermal print head -- and never below
``MIN_ASPECT`` (60 %) of the glyph height. A profile may set ``[text] min_width_mm``.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from trace.labels.profiles import TSPL_FONT_CELLS, PrinterProfile

if TYPE_CHECKING:  # pragma: no cover
    from trace.crypto.keyring import Keyring

__all__ = [
    "DEFAULT_CHUNK",
    "CodeLine",
    "LabelChunk",
    "LabelContent",
    "LabelLine",
    "Layout",
    "LayoutError",
    "QrPlacement",
    "SerialLine",
    "TextLine",
    "clean_text",
    "compute_layout",
    "display_width",
    "fit_text",
    "iter_chunks",
    "make_chunk",
    "middle_ellipsis",
    "qr_placement",
]

DEFAULT_CHUNK = 4096  # labels per chunk: ~1 MB of ZPL/TSPL, a few MB of raster work

# Vertical position of the text baseline inside a line box of height ``size``: the
# CJK faces used here put the ideographic em box ~0.88 em above the baseline.
BASELINE_RATIO = 0.86
ELLIPSIS = "…"
ASCII_ELLIPSIS = ".."  # TSPL's ASCII fonts have no "…"

MIN_EM_MM = 2.0  # narrowest full-width cell when condensing (Latin: 1.0 mm); see above
MIN_ASPECT = 0.6  # ... and never narrower than this fraction of the glyph height

#: Fields whose value identifies something: never cut at the end (the tail is what
#: tells two batches apart), shortened in the middle if at all.
IDENTIFIER_KEYS = frozenset({"batch_no", "batch", "lot", "gtin"})


class LayoutError(ValueError):
    """The content does not fit the profile (too many lines, QR too large, ...)."""


class LabelLine(NamedTuple):
    """One field of the label: ``("batch_no", "批次", "HN-GJ-2026-11-001")``.

    The caption is printed before the value when there is room and dropped first when
    there is not; ``""`` for fields that need none (a product name). ``shorter`` are
    complete but less specific forms of the value, longest first (an origin without its
    province, then without its city), tried on one line before wrapping or cutting: on a
    40 x 30 mm label "华宁县盘溪镇" says more than "云南省玉溪市华宁…".
    """

    key: str
    caption: str
    value: str
    shorter: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelContent:
    """Text that is the same on every label of a run.

    ``lines`` are :class:`LabelLine` rows ``(key, caption, value[, shorter])``, printed one per
    line in this order below the optional ``title``. A ``(key, text)`` pair is a line
    without a caption.
    """

    lines: Sequence[LabelLine | tuple[str, str, str] | tuple[str, str]]
    show_code_text: bool = True
    show_serial: bool = True
    title: str | None = None

    def fields(self) -> list[LabelLine]:
        """``lines`` as :class:`LabelLine` rows, cleaned for printing."""
        out = []
        for line in self.lines:
            if len(line) == 2:
                key, caption, value = line[0], "", line[1]
            else:
                key, caption, value = line[0], line[1], line[2]
            shorter = line.shorter if isinstance(line, LabelLine) else ()
            out.append(
                LabelLine(
                    key,
                    clean_text(caption),
                    clean_text(value),
                    tuple(clean_text(v) for v in shorter if v),
                )
            )
        return out


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


def fit_text(text: str, max_em: float, ellipsis: str = ELLIPSIS) -> str:
    """``text`` cut at the end (with an ellipsis) so its display width is at most ``max_em``."""
    if display_width(text) <= max_em + 1e-9:
        return text
    return _prefix(text, max_em - display_width(ellipsis)).rstrip() + ellipsis


def _prefix(text: str, max_em: float) -> str:
    """The longest start of ``text`` at most ``max_em`` wide."""
    used = 0.0
    for i, ch in enumerate(text):
        used += _char_width(ch)
        if used > max_em + 1e-9:
            return text[:i]
    return text


_SEPARATORS = frozenset("-_/.: ·、，,")


def middle_ellipsis(text: str, max_em: float, ellipsis: str = ELLIPSIS) -> str:
    """``text`` shortened in the middle so it is at most ``max_em`` wide.

    For identifiers: the head says whose it is, the tail which one (``HN-GJ-2026-11-001``
    -> ``HN-GJ-…11-001``). The tail gets up to 60 % of the room and starts right after a
    separator when one allows a tail of at least a third of the room; the head takes the
    rest.
    """
    if display_width(text) <= max_em + 1e-9:
        return text
    room = max_em - display_width(ellipsis)
    if room <= 0:
        return _prefix(text, max_em)
    tail_max = room * 0.6
    tail = ""
    for i in range(1, len(text)):  # suffixes starting after a separator, longest first
        after_separator = text[i - 1] in _SEPARATORS and text[i] not in _SEPARATORS
        if after_separator and display_width(text[i:]) <= tail_max + 1e-9:
            tail = text[i:]
            break
    if display_width(tail) < room / 3:
        used, start = 0.0, len(text)
        while start > 0 and used + _char_width(text[start - 1]) <= room / 2 + 1e-9:
            start -= 1
            used += _char_width(text[start])
        tail = text[start:]
    head = _prefix(text, room - display_width(tail))
    # "HN-GJ…" rather than "HN-GJ-…": the ellipsis already marks the join.
    return head.rstrip("".join(_SEPARATORS)) + ellipsis + tail


def _wrap(text: str, max_em: float) -> list[str]:
    """``text`` broken into pieces at most ``max_em`` wide; Latin runs break after a
    separator (``-``, ``/``, space ...) when one is in the piece, CJK between any two
    characters."""
    pieces: list[str] = []
    rest = text
    while rest:
        piece = _prefix(rest, max_em)
        if not piece:  # a single character wider than the column
            return []
        if len(piece) < len(rest):
            nxt = rest[len(piece)]
            if piece[-1].isascii() and piece[-1].isalnum() and nxt.isascii() and nxt.isalnum():
                cut = max((i + 1 for i, ch in enumerate(piece) if ch in _SEPARATORS), default=0)
                if cut > 0:
                    piece = piece[:cut]
        pieces.append(piece.rstrip())
        rest = rest[len(piece) :].lstrip()
    return pieces


# -- layout -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextLine:
    """A static line; ``y_mm`` is the top of its line box.

    ``width_mm`` is the full-width (CJK) character cell: ``size_mm`` when set as designed,
    less when condensed; Latin characters take half of it. ``key`` is the field the line
    shows and ``fit`` how it was fitted: ``as-is``, ``no-caption``, ``narrow``, ``wrap``,
    ``wrap+ellipsis`` or ``ellipsis``; ``shorter+<how>`` when a shorter form of the value
    was printed.
    """

    text: str
    x_mm: float
    y_mm: float
    size_mm: float
    width_mm: float
    font: str
    is_title: bool = False
    key: str = ""
    fit: str = "as-is"


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


@dataclass(frozen=True)
class _Setting:
    """How one field is printed: one or more line texts in one font and cell width."""

    texts: tuple[str, ...]
    width_mm: float
    font: str
    fit: str


class _Fitter:
    """The profile's text column and what its output can do to fit a line (per run)."""

    def __init__(self, profile: PrinterProfile, size_mm: float):
        spec = profile.text
        self.dpi = profile.dpi
        self.max_mm = spec.max_width_mm
        self.font = spec.font
        self.em_mm = spec.width_mm or size_mm
        # TSPL's BF2 fonts scale by whole multipliers only; every other output (ZPL ^A@,
        # PDF, PNG) can draw the same font narrower.
        self.min_em_mm: float | None = None
        if profile.language != "tspl":
            least = spec.min_width_mm or max(MIN_EM_MM, MIN_ASPECT * size_mm)
            dots = math.ceil(least * self.dpi / 25.4 - 1e-6)  # whole dots, not below
            self.min_em_mm = min(self.em_mm, dots * 25.4 / self.dpi)
        self.narrow: tuple[str, float] | None = None
        if profile.language == "tspl" and spec.narrow_font in TSPL_FONT_CELLS:
            cell_w = TSPL_FONT_CELLS[spec.narrow_font][0]
            # A Latin character is half a full-width cell.
            self.narrow = (spec.narrow_font, 2 * cell_w * 25.4 / self.dpi)

    def _floor(self, mm: float) -> float:
        """``mm`` rounded down to whole dots, so a printer rounding it cannot overflow."""
        return math.floor(mm * self.dpi / 25.4 + 1e-6) * 25.4 / self.dpi

    def fits(self, text: str, em_mm: float) -> bool:
        return display_width(text) * em_mm <= self.max_mm + 1e-6

    def condensed(self, text: str) -> float | None:
        """The widest cell (<= nominal) at which ``text`` fits, if not below the minimum."""
        if self.min_em_mm is None or not text:
            return None
        em = min(self.em_mm, self._floor(self.max_mm / display_width(text)))
        return em if em >= self.min_em_mm - 1e-6 else None

    def single(self, line: LabelLine) -> _Setting | None:
        """Steps 1-3: the field on one line, or None; the value first, then each of its
        shorter forms (fit ``shorter``, plus how that one was fitted)."""
        for n, value in enumerate((line.value, *line.shorter)):
            setting = self._single_value(line.caption, value)
            if setting is not None:
                if n:
                    return _Setting(setting.texts, setting.width_mm, setting.font,
                                    f"shorter+{setting.fit}")  # fmt: skip
                return setting
        return None

    def _single_value(self, caption: str, value: str) -> _Setting | None:
        full = f"{caption} {value}" if caption else value
        if self.fits(full, self.em_mm):
            return _Setting((full,), self.em_mm, self.font, "as-is")
        if caption and self.fits(value, self.em_mm):
            return _Setting((value,), self.em_mm, self.font, "no-caption")
        em = self.condensed(value)
        if em is not None:
            return _Setting((value,), em, self.font, "narrow")
        if self.narrow and value.isascii() and self.fits(value, self.narrow[1]):
            return _Setting((value,), self.narrow[1], self.narrow[0], "narrow")
        return None

    def wrapped(self, line: LabelLine, max_lines: int) -> _Setting | None:
        """Step 4: the value on 2..``max_lines`` lines at the designed width, or None.

        A name that needs even more lines is cut at the end of the last one; an
        identifier is never split that way (it gets a middle ellipsis instead).
        """
        if max_lines < 2:
            return None
        pieces = _wrap(line.value, self.max_mm / self.em_mm)
        if not pieces:
            return None
        if len(pieces) > max_lines:
            if line.key in IDENTIFIER_KEYS:
                return None
            last = " ".join(pieces[max_lines - 1 :])
            pieces = [*pieces[: max_lines - 1], fit_text(last, self.max_mm / self.em_mm)]
            return _Setting(tuple(pieces), self.em_mm, self.font, "wrap+ellipsis")
        return _Setting(tuple(pieces), self.em_mm, self.font, "wrap")

    def ellipsis(self, line: LabelLine) -> _Setting:
        """Step 5: the shortest form shortened as narrow as allowed, then widened back as
        far as it fits."""
        cut = middle_ellipsis if line.key in IDENTIFIER_KEYS else fit_text
        value = line.shorter[-1] if line.shorter else line.value
        if self.narrow and value.isascii():
            font, em = self.narrow
            text = cut(value, self.max_mm / em, ASCII_ELLIPSIS)
            return _Setting((text,), em, font, "ellipsis")
        em = self.min_em_mm or self.em_mm
        text = cut(value, self.max_mm / em)
        em = self.condensed(text) or em
        return _Setting((text,), em, self.font, "ellipsis")


def compute_layout(profile: PrinterProfile, content: LabelContent, code_length: int = 27) -> Layout:
    """Resolve ``content`` into positions on ``profile``'s label. Raises ``LayoutError``.

    Each field is fitted to the text column in the order of the module docstring; wrapping
    uses the lines the profile has to spare, identifiers (batch numbers) first.
    """
    spec = profile.text
    fields: list[tuple[LabelLine, bool]] = []
    if content.title:
        fields.append((LabelLine("title", "", clean_text(content.title)), True))
    fields.extend((line, False) for line in content.fields())
    fields = [(line, is_title) for line, is_title in fields if line.value]
    if len(fields) > spec.max_lines:
        raise LayoutError(
            f"printer profile {profile.name!r} shows at most {spec.max_lines} text lines, "
            f"this label has {len(fields)}; choose fewer fields"
        )

    def size_of(is_title: bool) -> float:
        return spec.title_size_mm if (is_title and spec.title_size_mm) else spec.size_mm

    fitters = {size: _Fitter(profile, size) for size in {size_of(t) for _, t in fields}}
    settings: list[_Setting | None] = [
        fitters[size_of(is_title)].single(line) for line, is_title in fields
    ]
    spare = spec.max_lines - len(fields)
    pending = [i for i, s in enumerate(settings) if s is None]
    pending.sort(key=lambda i: fields[i][0].key not in IDENTIFIER_KEYS)
    for i in pending:
        line, is_title = fields[i]
        fitter = fitters[size_of(is_title)]
        setting = fitter.wrapped(line, 1 + spare)
        if setting is None:
            setting = fitter.ellipsis(line)
        spare -= len(setting.texts) - 1
        settings[i] = setting

    lines: list[TextLine] = []
    y = spec.y_mm
    for (line, is_title), setting in zip(fields, settings, strict=True):
        assert setting is not None
        size = size_of(is_title)
        for text in setting.texts:
            if y + size > profile.label.height_mm + 1e-6:
                raise LayoutError(f"text line {text!r} falls below the label of {profile.name!r}")
            lines.append(
                TextLine(
                    text,
                    spec.x_mm,
                    y,
                    size,
                    setting.width_mm,
                    setting.font,
                    is_title,
                    line.key,
                    setting.fit,
                )
            )
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
