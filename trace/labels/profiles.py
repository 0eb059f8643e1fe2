"""Printer profiles: one TOML file per printer model + label stock (DESIGN.md §5).

A new printer is a new file in ``printer_profiles/``, not new code. Every file is parsed
with :mod:`tomllib` and validated by a marshmallow schema; a bad file raises
:class:`ProfileError` whose message names the file and the dotted field, e.g.
``printer_profiles/x.toml: qr.ecc: Must be one of: L, M, Q, H.``

All positions and sizes are in millimetres from the label's top-left corner; each writer
converts them to its own unit (printer dots at the profile's dpi, PDF points, PNG pixels).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

__all__ = [
    "FORMATS",
    "LANGUAGES",
    "PRINTER_PROFILES_DIR",
    "TSPL_FONT_CELLS",
    "CodeTextSpec",
    "LabelStock",
    "PrinterProfile",
    "ProfileError",
    "QrSpec",
    "SerialSpec",
    "SheetSpec",
    "TextSpec",
    "list_profiles",
    "load_profile",
    "load_profile_file",
]

PRINTER_PROFILES_DIR = Path(__file__).resolve().parents[2] / "printer_profiles"

FORMATS = ("zpl", "tspl", "zpl-raster", "tspl-raster", "pdf", "png")
LANGUAGES = ("tspl", "zpl", "pdf", "png")

# Which output formats a printer language can produce at all. PDF and PNG only need the
# geometry, so every profile may offer them (a thermal profile then gives one label per
# PDF page / PNG file); a profile lists the subset it really supports in ``formats``.
_ALLOWED_FORMATS: dict[str, tuple[str, ...]] = {
    "tspl": ("tspl", "tspl-raster", "pdf", "png"),
    "zpl": ("zpl", "zpl-raster", "pdf", "png"),
    "pdf": ("pdf", "png"),
    "png": ("png", "pdf"),
}
_DEFAULT_FORMATS: dict[str, tuple[str, ...]] = {
    "tspl": ("tspl", "tspl-raster"),
    "zpl": ("zpl", "zpl-raster"),
    "pdf": ("pdf",),
    "png": ("png",),
}

_NAME_RE = r"^[a-z0-9][a-z0-9._-]{0,63}$"

# Native cell (width, height) in dots of the TSPL built-in fonts (TSPL programming manual,
# TEXT command: "1" 8 x 12, "2" 12 x 20, "3" 16 x 24, "4" 24 x 32, "5" 32 x 48 dots; the
# BF2 Chinese fonts take 24 x 24 per ideograph, 12 x 24 per ASCII character). TSPL scales
# them only by whole multipliers 1..10. Fonts "1".."8" carry ASCII only.
TSPL_FONT_CELLS: dict[str, tuple[int, int]] = {
    "1": (8, 12),
    "2": (12, 20),
    "3": (16, 24),
    "4": (24, 32),
    "5": (32, 48),
    "6": (14, 19),
    "7": (21, 27),
    "8": (14, 25),
    "TSS16.BF2": (16, 16),
    "TSS24.BF2": (24, 24),
    "TST24.BF2": (24, 24),
}
#: The built-in ASCII-only fonts (the rest are the BF2 Chinese fonts).
TSPL_ASCII_FONTS = tuple(f for f in TSPL_FONT_CELLS if not f.endswith(".BF2"))


class ProfileError(ValueError):
    """A profile is unknown, unreadable or invalid. The message names file and field."""


# -- the validated, typed profile ---------------------------------------------------------


@dataclass(frozen=True)
class LabelStock:
    width_mm: float
    height_mm: float
    gap_mm: float


@dataclass(frozen=True)
class SheetSpec:
    """A sheet of labels (PDF on an office printer): columns x rows per page."""

    page_width_mm: float
    page_height_mm: float
    columns: int
    rows: int
    margin_left_mm: float
    margin_top_mm: float
    pitch_x_mm: float
    pitch_y_mm: float

    @property
    def per_page(self) -> int:
        return self.columns * self.rows


@dataclass(frozen=True)
class QrSpec:
    ecc: str  # L M Q H
    x_mm: float
    y_mm: float
    module_dots: int | None  # printer dots per module; None: derived from size_mm
    size_mm: float | None  # wanted symbol size without quiet zone (used if no module_dots)
    tspl_model: str  # "M2" (emit explicitly: some firmware defaults to Model 1) or ""
    input_mode: str  # "A" automatic / "M" manual (alphanumeric) in ZPL ^FD and TSPL


@dataclass(frozen=True)
class TextSpec:
    """The static text column: title + the producer-chosen fields, one per line."""

    x_mm: float
    y_mm: float
    font: str
    size_mm: float
    width_mm: float | None  # character cell width (ZPL ^A w); None: = size_mm
    line_height_mm: float
    max_lines: int
    max_width_mm: float  # longer lines are fitted (content.compute_layout), at worst cut
    title_size_mm: float | None
    # The narrowest full-width character cell the text may be condensed to (ZPL ^A@
    # width, PDF/PNG horizontal scaling); None: content.MIN_EM_MM / MIN_ASPECT.
    min_width_mm: float | None = None
    # TSPL only (its BF2 fonts cannot be condensed): a built-in ASCII font for values that
    # are ASCII only (batch numbers, dates) and do not fit in the text font, e.g. "1".
    narrow_font: str | None = None


@dataclass(frozen=True)
class CodeTextSpec:
    """The human-readable code under / beside the QR (27 characters, maybe wrapped)."""

    x_mm: float
    y_mm: float
    font: str
    size_mm: float
    width_mm: float | None
    line_height_mm: float
    chars_per_line: int  # 0: the whole code on one line


@dataclass(frozen=True)
class SerialSpec:
    x_mm: float
    y_mm: float
    font: str
    size_mm: float
    width_mm: float | None
    prefix: str


@dataclass(frozen=True)
class PrinterProfile:
    name: str
    description: str
    language: str
    formats: tuple[str, ...]
    dpi: int
    label: LabelStock
    sheet: SheetSpec | None
    qr: QrSpec
    text: TextSpec
    code_text: CodeTextSpec
    serial: SerialSpec
    tspl_direction: int
    tspl_black_bit: int  # TSPL BITMAP: the bit value that prints a black dot
    zpl_gf_compress: bool  # ZPL ^GF: ':' repeats the previous row (ZPL ASCII compression)
    render_font: str | None  # PDF/PNG: TTF/TTC path; None: search the usual places
    source: Path

    def supports(self, fmt: str) -> bool:
        return fmt in self.formats

    def dots(self, mm: float) -> int:
        """Millimetres -> printer dots at this profile's resolution."""
        return round(mm * self.dpi / 25.4)


# -- schema -------------------------------------------------------------------------------

_mm = validate.Range(min=0, max=1000)
_pos_mm = validate.Range(min=0, max=1000, min_inclusive=False)


def _mm_field(required: bool = True, positive: bool = False, default: Any = None) -> Any:
    v = _pos_mm if positive else _mm
    if required:
        return fields.Float(required=True, validate=v)
    return fields.Float(load_default=default, validate=v)


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class _LabelSchema(_Strict):
    width_mm = _mm_field(positive=True)
    height_mm = _mm_field(positive=True)
    gap_mm = _mm_field(required=False, default=0.0)


class _SheetSchema(_Strict):
    page_width_mm = _mm_field(positive=True)
    page_height_mm = _mm_field(positive=True)
    columns = fields.Integer(required=True, validate=validate.Range(min=1, max=100))
    rows = fields.Integer(required=True, validate=validate.Range(min=1, max=200))
    margin_left_mm = _mm_field()
    margin_top_mm = _mm_field()
    pitch_x_mm = _mm_field(positive=True)
    pitch_y_mm = _mm_field(positive=True)


class _QrSchema(_Strict):
    ecc = fields.String(required=True, validate=validate.OneOf(["L", "M", "Q", "H"]))
    x_mm = _mm_field()
    y_mm = _mm_field()
    module_dots = fields.Integer(load_default=None, validate=validate.Range(min=1, max=10))
    size_mm = _mm_field(required=False, positive=True)
    tspl_model = fields.String(load_default="M2", validate=validate.OneOf(["M1", "M2", ""]))
    input_mode = fields.String(load_default="A", validate=validate.OneOf(["A", "M"]))

    @validates_schema
    def _size(self, data: Mapping[str, Any], **_: Any) -> None:
        if data.get("module_dots") is None and data.get("size_mm") is None:
            raise ValidationError("give module_dots or size_mm", field_name="module_dots")


class _FontSchema(_Strict):
    x_mm = _mm_field()
    y_mm = _mm_field()
    font = fields.String(required=True, validate=validate.Length(min=1, max=64))
    size_mm = _mm_field(positive=True)
    width_mm = _mm_field(required=False, positive=True)


class _TextSchema(_FontSchema):
    line_height_mm = _mm_field(positive=True)
    max_lines = fields.Integer(required=True, validate=validate.Range(min=0, max=20))
    max_width_mm = _mm_field(positive=True)
    title_size_mm = _mm_field(required=False, positive=True)
    min_width_mm = _mm_field(required=False, positive=True)
    narrow_font = fields.String(load_default=None, validate=validate.OneOf(TSPL_ASCII_FONTS))

    @validates_schema
    def _widths(self, data: Mapping[str, Any], **_: Any) -> None:
        size, least = data.get("size_mm"), data.get("min_width_mm")
        if size is not None and least is not None and least > (data.get("width_mm") or size):
            raise ValidationError("must not exceed the character width", "min_width_mm")


class _CodeTextSchema(_FontSchema):
    line_height_mm = _mm_field(positive=True)
    chars_per_line = fields.Integer(load_default=0, validate=validate.Range(min=0, max=64))


class _SerialSchema(_FontSchema):
    prefix = fields.String(load_default="No.", validate=validate.Length(max=16))


class _TsplSchema(_Strict):
    direction = fields.Integer(load_default=1, validate=validate.OneOf([0, 1]))


class _RasterSchema(_Strict):
    tspl_black_bit = fields.Integer(load_default=0, validate=validate.OneOf([0, 1]))
    zpl_gf_compress = fields.Boolean(load_default=True)


class _RenderSchema(_Strict):
    font = fields.String(load_default=None)


class _ProfileSchema(_Strict):
    name = fields.String(required=True, validate=validate.Regexp(_NAME_RE))
    description = fields.String(required=True, validate=validate.Length(min=1, max=500))
    language = fields.String(required=True, validate=validate.OneOf(LANGUAGES))
    formats = fields.List(fields.String(validate=validate.OneOf(FORMATS)), load_default=None)
    dpi = fields.Integer(required=True, validate=validate.Range(min=72, max=1200))
    label = fields.Nested(_LabelSchema, required=True)
    sheet = fields.Nested(_SheetSchema, load_default=None)
    qr = fields.Nested(_QrSchema, required=True)
    text = fields.Nested(_TextSchema, required=True)
    code_text = fields.Nested(_CodeTextSchema, required=True)
    serial = fields.Nested(_SerialSchema, required=True)
    tspl = fields.Nested(_TsplSchema, load_default=lambda: _TsplSchema().load({}))
    raster = fields.Nested(_RasterSchema, load_default=lambda: _RasterSchema().load({}))
    render = fields.Nested(_RenderSchema, load_default=lambda: _RenderSchema().load({}))

    @validates_schema
    def _cross(self, data: Mapping[str, Any], **_: Any) -> None:
        language = data.get("language")
        formats = data.get("formats")
        if language in _ALLOWED_FORMATS and formats is not None:
            if not formats:
                raise ValidationError("must list at least one format", field_name="formats")
            bad = [f for f in formats if f not in _ALLOWED_FORMATS[language]]
            if bad:
                raise ValidationError(
                    f"{', '.join(bad)} cannot be produced for a {language} printer "
                    f"(possible: {', '.join(_ALLOWED_FORMATS[language])})",
                    field_name="formats",
                )
        if language == "pdf" and data.get("sheet") is None:
            raise ValidationError("a pdf (sheet) profile needs a [sheet] table", "sheet")
        label, sheet = data.get("label"), data.get("sheet")
        if label and sheet:
            right = sheet["margin_left_mm"] + (sheet["columns"] - 1) * sheet["pitch_x_mm"]
            bottom = sheet["margin_top_mm"] + (sheet["rows"] - 1) * sheet["pitch_y_mm"]
            if right + label["width_mm"] > sheet["page_width_mm"] + 1e-6:
                raise ValidationError("columns do not fit the page width", "sheet")
            if bottom + label["height_mm"] > sheet["page_height_mm"] + 1e-6:
                raise ValidationError("rows do not fit the page height", "sheet")
            if sheet["pitch_x_mm"] + 1e-6 < label["width_mm"]:
                raise ValidationError("pitch_x_mm is smaller than the label width", "sheet")
            if sheet["pitch_y_mm"] + 1e-6 < label["height_mm"]:
                raise ValidationError("pitch_y_mm is smaller than the label height", "sheet")
        text = data.get("text")
        if text and text.get("narrow_font") and language != "tspl":
            raise ValidationError(
                {"narrow_font": ["only for TSPL profiles (other outputs condense the font)"]},
                "text",
            )
        if label:
            for part in ("qr", "text", "code_text", "serial"):
                spec = data.get(part)
                if not spec:
                    continue
                if spec["x_mm"] >= label["width_mm"]:
                    raise ValidationError({"x_mm": ["outside the label width"]}, part)
                if spec["y_mm"] >= label["height_mm"]:
                    raise ValidationError({"y_mm": ["outside the label height"]}, part)


# -- loading ------------------------------------------------------------------------------


def _flatten(messages: Any, prefix: str = "") -> list[str]:
    """marshmallow's nested error dict -> ``["qr.ecc: Must be one of ...", ...]``."""
    if isinstance(messages, Mapping):
        out: list[str] = []
        for key, value in messages.items():
            name = prefix if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
            out.extend(_flatten(value, name))
        return out
    if isinstance(messages, list | tuple):
        if all(isinstance(m, str) for m in messages):
            return [f"{prefix or '(file)'}: {' '.join(messages)}"]
        out = []
        for item in messages:
            out.extend(_flatten(item, prefix))
        return out
    return [f"{prefix or '(file)'}: {messages}"]


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PRINTER_PROFILES_DIR.parent))
    except ValueError:
        return str(path)


def load_profile_file(path: Path) -> PrinterProfile:
    """Parse and validate one profile file."""
    shown = _display(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ProfileError(f"{shown}: no such profile file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{shown}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ProfileError(f"{shown}: cannot read: {exc.strerror}") from exc
    try:
        data = _ProfileSchema().load(raw)
    except ValidationError as exc:
        problems = "; ".join(sorted(_flatten(exc.messages)))
        raise ProfileError(f"{shown}: {problems}") from exc
    if data["name"] != path.stem:
        raise ProfileError(f"{shown}: name: must equal the file name {path.stem!r}")
    return _build(data, path)


def _build(d: Mapping[str, Any], path: Path) -> PrinterProfile:
    text, code, serial, qr = d["text"], d["code_text"], d["serial"], d["qr"]
    formats = tuple(d["formats"] or _DEFAULT_FORMATS[d["language"]])
    return PrinterProfile(
        name=d["name"],
        description=d["description"],
        language=d["language"],
        formats=tuple(dict.fromkeys(formats)),
        dpi=d["dpi"],
        label=LabelStock(**d["label"]),
        sheet=SheetSpec(**d["sheet"]) if d["sheet"] else None,
        qr=QrSpec(**qr),
        text=TextSpec(**text),
        code_text=CodeTextSpec(**code),
        serial=SerialSpec(**serial),
        tspl_direction=d["tspl"]["direction"],
        tspl_black_bit=d["raster"]["tspl_black_bit"],
        zpl_gf_compress=d["raster"]["zpl_gf_compress"],
        render_font=d["render"]["font"],
        source=path,
    )


def load_profile(name: str, directory: Path = PRINTER_PROFILES_DIR) -> PrinterProfile:
    """The profile ``<directory>/<name>.toml``; :class:`ProfileError` if unknown or bad."""
    if not isinstance(name, str) or not _valid_name(name):
        raise ProfileError(f"unknown printer profile {name!r}")
    path = directory / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(directory.glob("*.toml")))
        raise ProfileError(f"unknown printer profile {name!r} (known: {known or 'none'})")
    return load_profile_file(path)


def list_profiles(directory: Path = PRINTER_PROFILES_DIR) -> list[PrinterProfile]:
    """Every profile in ``directory``, sorted by name; the first bad file raises."""
    return [load_profile_file(p) for p in sorted(directory.glob("*.toml"))]


def _valid_name(name: str) -> bool:
    import re

    # A name is a file stem, never a path: no separators, no "..".
    return re.fullmatch(_NAME_RE, name) is not None and ".." not in name
