"""Printer profiles: every shipped file loads; bad files fail naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from trace.labels.profiles import (
    FORMATS,
    PRINTER_PROFILES_DIR,
    ProfileError,
    list_profiles,
    load_profile,
    load_profile_file,
)

SHIPPED = sorted(PRINTER_PROFILES_DIR.glob("*.toml"))
REQUIRED = {
    "tspl-203dpi-40x30": "tspl",
    "tspl-203dpi-50x30": "tspl",
    "zpl-203dpi-40x30": "zpl",
    "zpl-300dpi-40x30": "zpl",
    "a4-sheet-5x13": "pdf",
    "png-300dpi-40x30": "png",
}

GOOD = """\
name = "{name}"
description = "test printer"
language = "tspl"
dpi = 203

[label]
width_mm = 40
height_mm = 30
gap_mm = 2

[qr]
ecc = "M"
module_dots = 4
x_mm = 2.5
y_mm = 2.5

[text]
x_mm = 18.5
y_mm = 2.5
font = "TSS24.BF2"
size_mm = 3
line_height_mm = 3.6
max_lines = 4
max_width_mm = 20

[code_text]
x_mm = 2.5
y_mm = 18.5
font = "2"
size_mm = 2.5
line_height_mm = 2.9

[serial]
x_mm = 2.5
y_mm = 25
font = "2"
size_mm = 2.5
"""


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_profile_loads(path: Path) -> None:
    profile = load_profile_file(path)
    assert profile.name == path.stem
    assert profile.formats and set(profile.formats) <= set(FORMATS)
    assert profile.label.width_mm > 0 and profile.label.height_mm > 0
    assert profile.qr.module_dots is not None or profile.qr.size_mm is not None


def test_required_profiles_exist_with_their_language() -> None:
    profiles = {p.name: p for p in list_profiles()}
    for name, language in REQUIRED.items():
        assert profiles[name].language == language
        assert language in profiles[name].formats or language == "png"
    sheet = profiles["a4-sheet-5x13"].sheet
    assert sheet is not None and (sheet.columns, sheet.rows, sheet.per_page) == (5, 13, 65)
    a4 = profiles["a4-sheet-5x13"]
    assert (a4.label.width_mm, a4.label.height_mm) == (38.1, 21.2)
    assert profiles["tspl-203dpi-40x30"].text.font == "TSS24.BF2"
    assert profiles["zpl-300dpi-40x30"].dpi == 300


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ProfileError, match=r"unknown printer profile 'nope'.*tspl-203dpi-40x30"):
        load_profile("nope")


@pytest.mark.parametrize("name", ["../printer_profiles/a4-sheet-5x13", "a/b", "", "A4"])
def test_profile_names_are_not_paths(name: str) -> None:
    with pytest.raises(ProfileError, match="unknown printer profile"):
        load_profile(name)


def _write(tmp_path: Path, text: str, name: str = "test-printer") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_file_in_another_directory(tmp_path: Path) -> None:
    _write(tmp_path, GOOD.format(name="test-printer"))
    profile = load_profile("test-printer", tmp_path)
    assert profile.formats == ("tspl", "tspl-raster")  # default for the language
    assert profile.dots(40) == 320
    assert [p.name for p in list_profiles(tmp_path)] == ["test-printer"]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (('ecc = "M"', 'ecc = "X"'), "qr.ecc", "Must be one of"),
        (("width_mm = 40\n", ""), "label.width_mm", "Missing data"),
        (("module_dots = 4", 'module_dots = 4\ncolour = "red"'), "qr.colour", "Unknown field"),
        (("module_dots = 4", "module_dots = 40"), "qr.module_dots", "less than or equal to 10"),
        (("module_dots = 4\n", ""), "qr.module_dots", "give module_dots or size_mm"),
        (('language = "tspl"', 'language = "epl"'), "language", "Must be one of"),
        (("dpi = 203", 'dpi = "fast"'), "dpi", "Not a valid integer"),
        (('language = "tspl"', 'language = "tspl"\nformats = ["zpl"]'), "formats", "cannot be"),
        (('language = "tspl"', 'language = "pdf"'), "sheet", "needs a [sheet] table"),
        (("x_mm = 18.5", "x_mm = 45"), "text.x_mm", "outside the label width"),
        (("max_lines = 4", "max_lines = -1"), "text.max_lines", "greater than or equal to 0"),
        (
            ("max_width_mm = 20", 'max_width_mm = 20\nnarrow_font = "9"'),
            "text.narrow_font",
            "one of",
        ),
        (
            ("max_width_mm = 20", "max_width_mm = 20\nmin_width_mm = 4"),
            "text.min_width_mm",
            "exceed",
        ),
        (
            ("max_width_mm = 20", "max_width_mm = 20\nmin_width_mm = 0"),
            "text.min_width_mm",
            "greater",
        ),
    ],
)
def test_bad_field_names_file_and_field(
    tmp_path: Path, change: tuple[str, str], field: str, message: str
) -> None:
    text = GOOD.format(name="test-printer").replace(*change, 1)
    assert text != GOOD.format(name="test-printer")
    path = _write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    assert str(path) in str(info.value) or path.name in str(info.value)
    assert f"{field}:" in str(info.value)
    assert message in str(info.value)


def test_sheet_must_fit_the_page(tmp_path: Path) -> None:
    text = GOOD.format(name="test-printer").replace('language = "tspl"', 'language = "pdf"')
    text += (
        "\n[sheet]\npage_width_mm = 210\npage_height_mm = 297\ncolumns = 6\nrows = 13\n"
        "margin_left_mm = 5\nmargin_top_mm = 10\npitch_x_mm = 40.6\npitch_y_mm = 21.2\n"
    )
    with pytest.raises(ProfileError, match="sheet: columns do not fit the page width"):
        load_profile_file(_write(tmp_path, text))


def test_invalid_toml_and_name_mismatch(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"broken\.toml: not valid TOML"):
        load_profile_file(_write(tmp_path, "name = [", "broken"))
    path = _write(tmp_path, GOOD.format(name="other-name"))
    with pytest.raises(ProfileError, match="name: must equal the file name 'test-printer'"):
        load_profile_file(path)
    with pytest.raises(ProfileError, match="no such profile file"):
        load_profile_file(tmp_path / "missing.toml")


def test_text_fitting_keys(tmp_path: Path) -> None:
    """``[text] narrow_font`` (TSPL: an ASCII font for long ASCII values) and
    ``min_width_mm`` (how far text may be condensed) are optional."""
    base = GOOD.format(name="test-printer")
    plain = load_profile_file(_write(tmp_path, base))
    assert plain.text.narrow_font is None and plain.text.min_width_mm is None
    extra = 'max_width_mm = 20\nnarrow_font = "1"\nmin_width_mm = 2.2'
    profile = load_profile_file(_write(tmp_path, base.replace("max_width_mm = 20", extra, 1)))
    assert (profile.text.narrow_font, profile.text.min_width_mm) == ("1", 2.2)
    zpl = base.replace('language = "tspl"', 'language = "zpl"').replace(
        "max_width_mm = 20", 'max_width_mm = 20\nnarrow_font = "1"', 1
    )
    with pytest.raises(ProfileError, match=r"text\.narrow_font: only for TSPL profiles"):
        load_profile_file(_write(tmp_path, zpl))


def test_thermal_tspl_profiles_name_their_narrow_font() -> None:
    for profile in list_profiles():
        if profile.language == "tspl":
            assert profile.text.narrow_font == "1", profile.name
