"""Label text that stays useful on small labels (content.compute_layout).

The batch number and the harvest date are what a co-operative clerk, a shop and a
regulator read off a label: with the demo batch's real values they must come out complete
on every shipped printer profile, in every format the profile offers. Lines that do not fit
lose, in this order: the caption, glyph width (down to a legible minimum), a spare line
(wrap), and only then characters (an ellipsis; in the middle for identifiers).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from trace.crypto.keyring import Keyring
from trace.labels import content as content_mod
from trace.labels.content import (
    ELLIPSIS,
    MIN_EM_MM,
    LabelContent,
    LabelLine,
    Layout,
    compute_layout,
    display_width,
    iter_chunks,
    middle_ellipsis,
)
from trace.labels.profiles import PRINTER_PROFILES_DIR, PrinterProfile, list_profiles, load_profile
from trace.labels.writers import pdf as pdf_writer
from trace.labels.writers import png as png_writer
from trace.labels.writers import raster as raster_writer
from trace.labels.writers import tspl as tspl_writer
from trace.labels.writers import write_labels
from trace.labels.writers import zpl as zpl_writer
from trace.services.labels import label_content

KEYRING = Keyring.from_text("0:" + "2b7e151628aed2a6abf7158809cf4f3c")
BASE_URL = "https://t.example.cn/q"

# The demo batch (trace/services/demo.py, batch 1); test_demo_values_are_the_demo_batch
# checks these against the real thing built in a database.
BATCH_NO = "HN-GJ-2026-11-001"
HARVEST = "2026-11-02"
PRODUCER = "华宁县盘溪柑桔专业合作社"
DEMO_BATCH = SimpleNamespace(
    site=SimpleNamespace(region_code="530424", township="盘溪镇"),
    product=SimpleNamespace(name="华宁柑桔"),
    enterprise=SimpleNamespace(name=PRODUCER),
    batch_no=BATCH_NO,
    harvest_date=date(2026, 11, 2),
    grade="一级",
)
DEFAULT = {"label": ["product", "batch_no", "producer", "harvest_date", "code_text"]}
DEMO = label_content(DEMO_BATCH, DEFAULT)  # type: ignore[arg-type]

PROFILES = list_profiles()
IDS = [p.name for p in PROFILES]
CASES = [(p, fmt) for p in PROFILES for fmt in p.formats]


def _layout_texts(layout: Layout, key: str) -> list[str]:
    return [line.text for line in layout.text if line.key == key]


def _write(profile: PrinterProfile, fmt: str, content: LabelContent, count: int = 2) -> bytes:
    out = io.BytesIO()
    chunks = iter_chunks(KEYRING, 7, 1, count, BASE_URL)
    assert write_labels(fmt, profile, content, chunks, out) == count
    return out.getvalue()


def _printed_texts(fmt: str, data: bytes) -> list[str]:
    """Static text fields of the first label of a ZPL/TSPL stream."""
    if fmt.startswith("zpl"):
        label = data.decode("utf-8").split("^XZ")[0]
        return re.findall(r"\^A@N,\d+,\d+,[^\^]*\^FD([^\^]*)\^FS", label)
    label = data.split(b"PRINT 1,1")[0]
    return re.findall(r'^TEXT \d+,\d+,"[^"]+",0,\d+,\d+,"(.*)"\r?$', _tspl_text(label), re.M)


def _tspl_text(data: bytes) -> str:
    # TSPL raster streams carry binary BITMAP data between the text commands.
    return "\n".join(
        line.decode("gb18030") for line in data.split(b"\r\n") if not line.startswith(b"BITMAP")
    )


# -- the demo batch's fields, every profile, every format ---------------------------------


def test_label_content_is_structured() -> None:
    assert DEMO.lines == [
        LabelLine("product", "", "华宁柑桔"),
        LabelLine("batch_no", "批次", BATCH_NO),
        LabelLine("producer", "", PRODUCER),
        LabelLine("harvest_date", "采收", HARVEST),
    ]
    full = label_content(DEMO_BATCH, {"label": ["origin", "grade"]})  # type: ignore[arg-type]
    assert full.lines == [
        LabelLine(
            "origin", "产地", "云南省玉溪市华宁县盘溪镇", ("玉溪市华宁县盘溪镇", "华宁县盘溪镇")
        ),
        LabelLine("grade", "等级", "一级"),
    ]


@pytest.mark.parametrize("profile", PROFILES, ids=IDS)
def test_origin_prints_a_complete_place_rather_than_a_cut_one(profile: PrinterProfile) -> None:
    """ "华宁县盘溪镇" (county and town) beats "云南省玉溪市华宁…" on a small label."""
    content = label_content(DEMO_BATCH, {"label": ["product", "origin", "harvest_date"]})  # type: ignore[arg-type]
    origin = _layout_texts(compute_layout(profile, content), "origin")
    forms = ["云南省玉溪市华宁县盘溪镇", "玉溪市华宁县盘溪镇", "华宁县盘溪镇"]
    assert origin in [[f] for f in forms] + [[f"产地 {f}"] for f in forms], origin
    if profile.label.width_mm <= 40:
        assert origin != ["产地 云南省玉溪市华宁县盘溪镇"]  # it did not fit before either


def test_shorter_forms_come_before_wrapping_and_the_ellipsis_cuts_the_shortest() -> None:
    profile = load_profile("zpl-203dpi-40x30")  # 4 text lines
    wide = LabelLine("origin", "产地", "甲" * 40, ("乙" * 30, "丙" * 6))
    layout = compute_layout(profile, LabelContent(lines=[wide]))  # 3 lines to spare
    assert _layout_texts(layout, "origin") in (["产地 " + "丙" * 6], ["丙" * 6])
    (fit,) = [t.fit for t in layout.text if t.key == "origin"]
    assert fit in ("shorter+as-is", "shorter+no-caption")  # not wrapped, not cut
    # No form fits and no line to spare: the shortest form is the one cut.
    others = [LabelLine(k, "", "字") for k in ("a", "b", "c")]
    too_long = LabelLine("origin", "产地", "甲" * 40, ("乙" * 35, "丙" * 30))
    layout = compute_layout(profile, LabelContent(lines=[too_long, *others]))
    (cut,) = _layout_texts(layout, "origin")
    assert cut.startswith("丙") and cut.endswith("…") and set(cut) == {"丙", "…"}


def test_demo_values_are_the_demo_batch(demo: dict[str, Any], session: Any) -> None:
    from trace.models import Batch

    batch = session.get(Batch, demo["batch_id"])
    assert label_content(batch, DEFAULT) == DEMO


@pytest.mark.parametrize("profile", PROFILES, ids=IDS)
def test_batch_number_and_harvest_date_complete_in_the_layout(profile: PrinterProfile) -> None:
    layout = compute_layout(profile, DEMO)
    batch = _layout_texts(layout, "batch_no")
    harvest = _layout_texts(layout, "harvest_date")
    assert batch in ([BATCH_NO], [f"批次 {BATCH_NO}"])
    assert harvest in ([HARVEST], [f"采收 {HARVEST}"])
    for line in layout.text:  # nothing sticks out of the text column
        assert display_width(line.text) * line.width_mm <= profile.text.max_width_mm + 1e-6


@pytest.mark.parametrize(("profile", "fmt"), CASES, ids=[f"{p.name}-{f}" for p, f in CASES])
def test_batch_number_and_harvest_date_complete_in_the_output(
    profile: PrinterProfile, fmt: str, tmp_path: Path
) -> None:
    data = _write(profile, fmt, DEMO)
    if fmt in ("zpl", "zpl-raster", "tspl", "tspl-raster"):
        texts = _printed_texts(fmt, data)
        assert any(t in (BATCH_NO, f"批次 {BATCH_NO}") for t in texts), texts
        assert any(t in (HARVEST, f"采收 {HARVEST}") for t in texts), texts
    elif fmt == "pdf" and shutil.which("pdftotext"):
        (tmp_path / "l.pdf").write_bytes(data)
        text = subprocess.run(
            ["pdftotext", str(tmp_path / "l.pdf"), "-"], capture_output=True, text=True, check=True
        ).stdout
        assert BATCH_NO in text and HARVEST in text
    # PNG: pixels only; the layout lines it draws are checked above.


def test_before_and_after_on_the_most_common_label() -> None:
    """tspl-203dpi-40x30 with the demo batch, command by command."""
    profile = next(p for p in PROFILES if p.name == "tspl-203dpi-40x30")
    label = _tspl_text(_write(profile, "tspl", DEMO, 1))
    # Too long for TSS24.BF2 (17 x 12 dots > 164): the profile's ASCII narrow font "1",
    # 8 x 12 dots printed 8 x 24, so it is as tall as the Chinese lines.
    assert 'TEXT 148,49,"1",0,1,2,"HN-GJ-2026-11-001"' in label
    assert 'TEXT 148,106,"TSS24.BF2",0,1,1,"2026-11-02"' in label  # without its caption
    assert 'TEXT 148,78,"TSS24.BF2",0,1,1,"华宁县盘溪…"' in label  # BF2 cannot be condensed


def test_zpl_condenses_with_the_font_width() -> None:
    profile = next(p for p in PROFILES if p.name == "zpl-203dpi-40x30")
    label = _write(profile, "zpl", DEMO, 1).decode("utf-8")
    assert "^FO148,49^A@N,24,19,E:SIMSUN.FNT^FDHN-GJ-2026-11-001^FS" in label
    assert "^FO148,106^A@N,24,24,E:SIMSUN.FNT^FD2026-11-02^FS" in label


def test_caption_kept_and_name_wrapped_where_there_is_room() -> None:
    profile = next(p for p in PROFILES if p.name == "tspl-203dpi-50x30")
    layout = compute_layout(profile, DEMO)
    assert _layout_texts(layout, "harvest_date") == ["采收 2026-11-02"]
    assert _layout_texts(layout, "producer") == ["华宁县盘溪柑桔专", "业合作社"]
    assert [line.fit for line in layout.text if line.key == "producer"] == ["wrap", "wrap"]
    assert len(layout.text) == profile.text.max_lines


def test_wrap_only_into_spare_lines() -> None:
    profile = next(p for p in PROFILES if p.name == "tspl-203dpi-40x30")
    three = LabelContent(lines=[line for line in DEMO.lines if line[0] != "product"])
    layout = compute_layout(profile, three)
    assert _layout_texts(layout, "producer") == ["华宁县盘溪柑", "桔专业合作社"]
    assert len(layout.text) == 4


# -- ellipsis, last resort ----------------------------------------------------------------

LONG_NAME = "云南省玉溪市华宁县盘溪镇华溪村柑桔种植农民专业合作社联合社"


@pytest.mark.parametrize("profile", PROFILES, ids=IDS)
def test_a_long_producer_name_still_gets_an_ellipsis(profile: PrinterProfile) -> None:
    lines = [ln._replace(value=LONG_NAME) if ln.key == "producer" else ln for ln in DEMO.fields()]
    layout = compute_layout(profile, LabelContent(lines=lines))
    shown = "".join(_layout_texts(layout, "producer"))
    assert shown.endswith(ELLIPSIS) and LONG_NAME.startswith(shown[:-1])
    assert _layout_texts(layout, "batch_no") in ([BATCH_NO], [f"批次 {BATCH_NO}"])


def test_long_batch_number_keeps_head_and_tail() -> None:
    long_no = "YN-HN-PX-HUAXI-2026-11-02-000123"
    lines = [ln._replace(value=long_no) if ln.key == "batch_no" else ln for ln in DEMO.fields()]
    content = LabelContent(lines=lines)
    for profile in PROFILES:
        parts = _layout_texts(compute_layout(profile, content), "batch_no")
        if len(parts) > 1:  # a spare line (tspl-203dpi-50x30): wrapped, complete
            assert "".join(parts) == long_no, (profile.name, parts)
            continue
        (shown,) = parts
        mark = ".." if ".." in shown else ELLIPSIS
        head, _, tail = shown.partition(mark)
        assert head and long_no.startswith(head), (profile.name, shown)
        assert long_no.endswith(tail) and tail.endswith("-000123"), (profile.name, shown)
    tspl = next(p for p in PROFILES if p.name == "tspl-203dpi-40x30")
    assert _printed_texts("tspl", _write(tspl, "tspl", content, 1))[1] == "YN-HN-PX..02-000123"


def test_middle_ellipsis() -> None:
    assert middle_ellipsis(BATCH_NO, 9) == BATCH_NO
    assert middle_ellipsis(BATCH_NO, 6) == "HN-G…11-001"
    assert middle_ellipsis("ABCDEFGHIJKLMNOPQRST", 6) == "ABCDE…PQRST"
    assert middle_ellipsis("华宁县盘溪柑桔专业合作社", 6) == "华宁县…作社"
    for width in range(1, 9):
        assert display_width(middle_ellipsis(BATCH_NO, width)) <= width


# -- legibility and cost ------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES, ids=IDS)
def test_never_narrower_than_the_minimum(profile: PrinterProfile) -> None:
    least = profile.text.min_width_mm or MIN_EM_MM
    contents = [
        DEMO,
        LabelContent(lines=[("producer", LONG_NAME), ("batch_no", "X" * 60)]),
    ]
    for content in contents:
        for line in compute_layout(profile, content).text:
            assert line.width_mm >= least - 25.4 / profile.dpi, line


@pytest.mark.parametrize(
    ("fmt", "profile", "module"),
    [
        ("zpl", "zpl-203dpi-40x30", zpl_writer),
        ("tspl", "tspl-203dpi-40x30", tspl_writer),
        ("zpl-raster", "zpl-203dpi-40x30", raster_writer),
        ("tspl-raster", "tspl-203dpi-40x30", raster_writer),
        ("pdf", "a4-sheet-5x13", pdf_writer),
        ("png", "png-300dpi-40x30", png_writer),
    ],
)
def test_layout_is_computed_once_per_run(
    fmt: str, profile: str, module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Layout:
        calls.append(1)
        return content_mod.compute_layout(*args, **kwargs)

    monkeypatch.setattr(module, "compute_layout", counted)
    prof = next(p for p in PROFILES if p.name == profile)
    out = io.BytesIO()
    write_labels(fmt, prof, DEMO, iter_chunks(KEYRING, 7, 1, 30, BASE_URL, chunk=10), out)
    assert calls == [1]


def test_shipped_profiles_are_the_ones_tested() -> None:
    assert sorted(p.stem for p in PRINTER_PROFILES_DIR.glob("*.toml")) == sorted(IDS)
