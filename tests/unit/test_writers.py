"""Label writers: decode what they write.

Raster outputs (ZPL ^GF, TSPL BITMAP, PDF pages rasterised by poppler, PNG zip entries)
are decoded with zxing-cpp back to the exact payload URL. Native ZPL/TSPL outputs are
parsed: QR field data (with the ECC prefix), text encodings, per-label fields.
Golden files: ``UPDATE_GOLDEN=1 pytest tests/unit/test_writers.py`` rewrites them.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import struct
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from trace.crypto.codes import payload_url
from trace.crypto.keyring import Keyring
from trace.labels.content import (
    LabelChunk,
    LabelContent,
    LabelLine,
    LayoutError,
    clean_text,
    compute_layout,
    fit_text,
    iter_chunks,
    make_chunk,
)
from trace.labels.profiles import PrinterProfile, load_profile
from trace.labels.writers import FORMATS, WRITERS, FormatError, UnsafeDataError, write_labels
from trace.labels.writers import png as png_writer

IN_CI = os.environ.get("CI") == "true"
GOLDEN = Path(__file__).resolve().parents[1] / "golden"
BASE_URL = "https://t.example.cn/q"
KEYRING = Keyring.from_text("0:" + "2b7e151628aed2a6abf7158809cf4f3c")
RUN_ID = 42
PRODUCT = "华宁柑桔"
CONTENT = LabelContent(
    lines=[
        ("product", PRODUCT),
        ("batch", "HN-2026-001"),
        ("producer", "华宁县柑桔专业合作社"),
        ("harvest_date", "2026-11-20"),
    ],
)
# As services.labels.label_content() builds it for the demo batch: captions that give way
# first, a batch number that only fits narrowed, a producer name that needs an ellipsis.
DEMO_CONTENT = LabelContent(
    lines=[
        LabelLine("product", "", PRODUCT),
        LabelLine("batch_no", "批次", "HN-GJ-2026-11-001"),
        LabelLine("producer", "", "华宁县盘溪柑桔专业合作社"),
        LabelLine("harvest_date", "采收", "2026-11-02"),
    ],
)

try:
    import zxingcpp
except ImportError:  # pragma: no cover - dev machines without the decoder
    zxingcpp = None  # type: ignore[assignment]


def _require(ok: bool, what: str) -> None:
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} is not installed (apt install poppler-utils / pip install zxing-cpp)")


def _decode(image: object) -> list[str]:
    _require(zxingcpp is not None, "zxing-cpp")
    return [r.text for r in zxingcpp.read_barcodes(image)]


def chunks(count: int, first: int = 1, chunk: int = 4096) -> Iterator[LabelChunk]:
    return iter_chunks(KEYRING, RUN_ID, first, count, BASE_URL, chunk=chunk)


def expected(count: int, first: int = 1) -> tuple[list[str], list[str]]:
    codes = [c.decode() for ch in chunks(count, first) for c in ch.codes]
    return codes, [payload_url(BASE_URL, c) for c in codes]


def run(fmt: str, profile: str, count: int, content: LabelContent = CONTENT, **kw: int) -> bytes:
    out = io.BytesIO()
    written = write_labels(fmt, load_profile(profile), content, chunks(count, **kw), out)
    assert written == count
    return out.getvalue()


# -- registry, errors ---------------------------------------------------------------------


def test_registry_covers_every_format() -> None:
    assert tuple(WRITERS) == FORMATS == ("zpl", "tspl", "zpl-raster", "tspl-raster", "pdf", "png")


@pytest.mark.parametrize(
    ("fmt", "profile"),
    [("tspl", "zpl-203dpi-40x30"), ("zpl", "a4-sheet-5x13"), ("zpl-raster", "png-300dpi-40x30")],
)
def test_incompatible_format_is_a_value_error_and_writes_nothing(fmt: str, profile: str) -> None:
    out = io.BytesIO()
    with pytest.raises(FormatError, match="does not support") as info:
        write_labels(fmt, load_profile(profile), CONTENT, chunks(3), out)
    assert isinstance(info.value, ValueError)
    assert out.getvalue() == b""


def test_unknown_format() -> None:
    with pytest.raises(FormatError, match="unknown label format 'epl'"):
        write_labels("epl", load_profile("zpl-203dpi-40x30"), CONTENT, chunks(1), io.BytesIO())


def test_too_many_lines_fails_before_writing() -> None:
    content = LabelContent(lines=[(f"k{i}", f"line {i}") for i in range(6)], title="溯源")
    out = io.BytesIO()
    with pytest.raises(LayoutError, match="at most 4 text lines, this label has 7"):
        write_labels("tspl", load_profile("tspl-203dpi-40x30"), content, chunks(2), out)
    assert out.getvalue() == b""


def test_text_is_cleaned_and_fitted() -> None:
    assert clean_text('a\r\nb\t\x00"c"') == 'a b "c"'
    assert fit_text("华宁县柑桔专业合作社", 6) == "华宁县柑桔…"
    assert fit_text("HN-2026-001", 6) == "HN-2026-001"
    layout = compute_layout(load_profile("tspl-203dpi-40x30"), CONTENT)
    assert [line.text for line in layout.text][:2] == [PRODUCT, "HN-2026-001"]
    assert [(c.start, c.stop) for c in layout.code_lines] == [(0, 14), (14, 27)]


def test_make_chunk_payloads_equal_payload_url() -> None:
    chunk = next(chunks(50))
    assert chunk.payloads.dtype.kind == "S"
    for code, payload in zip(chunk.codes, chunk.payloads, strict=True):
        assert payload.decode() == payload_url(BASE_URL, code.decode())
    again = make_chunk(chunk.serials, chunk.codes, BASE_URL)
    assert (again.payloads == chunk.payloads).all()


# -- native ZPL ---------------------------------------------------------------------------


def _zpl_labels(data: bytes) -> list[str]:
    text = data.decode("utf-8")
    labels = [part + "^XZ" for part in text.split("^XZ") if part.strip()]
    assert all(label.lstrip().startswith("^XA") for label in labels)
    return labels


def _zpl_fields(label: str) -> list[tuple[str, str]]:
    """(field definition commands, field data) per ^FO … ^FS, ^FH escapes undone."""
    out = []
    for m in re.finditer(r"\^FO(\d+,\d+)(.*?)\^FD(.*?)\^FS", label, re.S):
        head, fd = m.group(2), m.group(3)
        if head.endswith("^FH_"):
            fd = re.sub(r"_([0-9A-F]{2})", lambda h: chr(int(h.group(1), 16)), fd)
            head = head[: -len("^FH_")]
        out.append((m.group(1) + head, fd))
    return out


def test_zpl_native_fields() -> None:
    profile = load_profile("zpl-203dpi-40x30")
    codes, payloads = expected(5)
    labels = _zpl_labels(run("zpl", profile.name, 5))
    assert len(labels) == 5
    for i, label in enumerate(labels):
        assert "^CI28" in label  # UTF-8 field data
        assert "^PW320^LL240" in label  # 40 x 30 mm at 8 dots/mm
        fields = _zpl_fields(label)
        qr = [fd for head, fd in fields if "^BQN,2," in head]
        assert qr == [f"MA,{payloads[i]}"]  # ECC level M, automatic input, then the data
        assert f"^BQN,2,{profile.qr.module_dots}^" in label
        texts = [fd for head, fd in fields if "^A@N" in head]
        assert texts[0] == PRODUCT and texts[1] == "HN-2026-001"
        assert all("E:SIMSUN.FNT" in head for head, _ in fields if "^A@N" in head)
        code_parts = [fd for head, fd in fields if "^A0N" in head and not fd.startswith("No.")]
        assert "".join(code_parts) == codes[i]
        assert [fd for _, fd in fields if fd.startswith("No.")] == [f"No.{i + 1}"]
    assert PRODUCT.encode("utf-8") in run("zpl", profile.name, 1)


def test_zpl_escapes_carets_and_tildes() -> None:
    content = LabelContent(lines=[("product", "A^B~C_D")], show_code_text=False)
    label = _zpl_labels(run("zpl", "zpl-203dpi-40x30", 1, content))[0]
    assert "^FH_^FDA_5EB_7EC_5FD^FS" in label
    assert "A^B~C_D" in [fd for _, fd in _zpl_fields(label)]


def test_zpl_serial_digit_count_changes_inside_a_chunk() -> None:
    labels = _zpl_labels(run("zpl", "zpl-203dpi-40x30", 4, first=98))
    serials = [fd for label in labels for _, fd in _zpl_fields(label) if fd.startswith("No.")]
    assert serials == ["No.98", "No.99", "No.100", "No.101"]


def test_payloads_of_different_lengths_in_one_chunk() -> None:
    chunk = LabelChunk(
        serials=np.array([1, 2], dtype=np.int64),
        codes=np.array([b"A" * 27, b"B" * 27], dtype="S27"),
        payloads=np.array([b"HTTPS://A/" + b"A" * 27, b"HTTPS://AB/" + b"B" * 27]),
    )
    out = io.BytesIO()
    write_labels("zpl", load_profile("zpl-203dpi-40x30"), CONTENT, [chunk], out)
    assert b"\x00" not in out.getvalue()
    qr = [fd for label in _zpl_labels(out.getvalue()) for h, fd in _zpl_fields(label) if "^BQ" in h]
    assert qr == ["MA,HTTPS://A/" + "A" * 27, "MA,HTTPS://AB/" + "B" * 27]


def test_payload_that_would_break_zpl_is_refused() -> None:
    chunk = LabelChunk(
        serials=np.array([1], dtype=np.int64),
        codes=np.array([b"A" * 27], dtype="S27"),
        payloads=np.array([b"HTTPS://X/^XZ" + b"A" * 27]),
    )
    with pytest.raises(UnsafeDataError):
        write_labels("zpl", load_profile("zpl-203dpi-40x30"), CONTENT, [chunk], io.BytesIO())


# -- native TSPL --------------------------------------------------------------------------

_QRCODE = re.compile(r'^QRCODE (\d+),(\d+),([LMQH]),(\d+),([AM]),(\d+),(?:(M[12]),)?"(.*)"$')
_TEXT = re.compile(r'^TEXT (\d+),(\d+),"([^"]+)",(\d+),(\d+),(\d+),"(.*)"$')


def test_tspl_native_commands_and_gb18030_text() -> None:
    profile = load_profile("tspl-203dpi-40x30")
    codes, payloads = expected(4)
    data = run("tspl", profile.name, 4)
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # the Chinese text is GB18030, not UTF-8
    lines = data.decode("gb18030").split("\r\n")
    assert lines[:4] == ["SIZE 40 mm,30 mm", "GAP 2 mm,0 mm", "DIRECTION 1,0", "REFERENCE 0,0"]
    parts = "\r\n".join(lines[4:]).split("PRINT 1,1")
    labels = [part.strip("\r\n").split("\r\n") for part in parts if part.strip()]
    assert len(labels) == 4
    for i, cmds in enumerate(labels):
        assert cmds[0] == "CLS"
        qr = _QRCODE.match(cmds[1])
        assert qr is not None, cmds[1]
        assert qr.groups() == ("20", "20", "M", "4", "A", "0", "M2", payloads[i])
        texts = [_TEXT.match(c) for c in cmds[2:]]
        assert all(texts), cmds
        shown = [t.group(7) for t in texts if t]
        assert shown[0] == PRODUCT and shown[1] == "HN-2026-001"
        assert next(t.group(3) for t in texts if t) == "TSS24.BF2"
        assert shown[-3] + shown[-2] == codes[i] and shown[-1] == f"No.{i + 1}"
    assert PRODUCT.encode("gb18030") in data


def test_tspl_quotes_are_escaped() -> None:
    content = LabelContent(lines=[("product", 'say "hi"')], show_code_text=False)
    data = run("tspl", "tspl-203dpi-40x30", 1, content).decode("gb18030")
    assert 'TEXT 148,20,"TSS24.BF2",0,1,1,"say \\["]hi\\["]"\r\n' in data


# -- raster ZPL / TSPL, decoded -----------------------------------------------------------


def _image_from_bits(bits: np.ndarray, margin: int = 40) -> object:
    """1 = black bits -> a white-bordered PIL image for the decoder."""
    from PIL import Image

    h, w = bits.shape
    canvas = np.full((h + 2 * margin, w + 2 * margin), 255, dtype=np.uint8)
    canvas[margin : margin + h, margin : margin + w][bits.astype(bool)] = 0
    return Image.fromarray(canvas)


def _parse_gfa(label: str) -> np.ndarray:
    m = re.search(r"\^GFA,(\d+),(\d+),(\d+),(.*?)\^FS", label, re.S)
    assert m is not None
    total, bytes_per_row, data = int(m.group(1)), int(m.group(3)), m.group(4)
    rows: list[bytes] = []
    i = 0
    while i < len(data):
        if data[i] == ":":  # ZPL compression: repeat the previous row
            rows.append(rows[-1])
            i += 1
        else:
            rows.append(bytes.fromhex(data[i : i + 2 * bytes_per_row]))
            i += 2 * bytes_per_row
    assert sum(map(len, rows)) == total
    packed = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), bytes_per_row)
    return np.unpackbits(packed, axis=1)


def test_zpl_raster_decodes() -> None:
    _, payloads = expected(40)
    labels = _zpl_labels(run("zpl-raster", "zpl-300dpi-40x30", 40))
    assert len(labels) == 40
    for i in (0, 17, 39):
        assert "^BQ" not in labels[i]
        assert _decode(_image_from_bits(_parse_gfa(labels[i]))) == [payloads[i]]
        assert PRODUCT in labels[i]  # static text stays native


def test_zpl_raster_uncompressed_is_the_same_image() -> None:
    profile = load_profile("zpl-203dpi-40x30")
    plain = dataclasses.replace(profile, zpl_gf_compress=False)
    out_c, out_p = io.BytesIO(), io.BytesIO()
    write_labels("zpl-raster", profile, CONTENT, chunks(2), out_c)
    write_labels("zpl-raster", plain, CONTENT, chunks(2), out_p)
    assert b":" not in re.search(rb"\^GFA,[^^]*", out_p.getvalue()).group(0)[20:]  # type: ignore[union-attr]
    assert len(out_p.getvalue()) > 2 * len(out_c.getvalue())
    for a, b in zip(_zpl_labels(out_c.getvalue()), _zpl_labels(out_p.getvalue()), strict=True):
        assert (_parse_gfa(a) == _parse_gfa(b)).all()


def _tspl_bitmaps(data: bytes) -> list[np.ndarray]:
    """Every BITMAP command's image (1 = black, TSPL's 0 bits inverted)."""
    out = []
    pos = 0
    head = re.compile(rb"BITMAP (\d+),(\d+),(\d+),(\d+),(\d),")
    while (m := head.search(data, pos)) is not None:
        width_bytes, height, mode = int(m.group(3)), int(m.group(4)), int(m.group(5))
        assert mode == 0
        raw = data[m.end() : m.end() + width_bytes * height]
        assert data[m.end() + len(raw) : m.end() + len(raw) + 2] == b"\r\n"
        packed = np.frombuffer(raw, dtype=np.uint8).reshape(height, width_bytes)
        out.append(1 - np.unpackbits(packed, axis=1))
        pos = m.end() + len(raw)
    return out


def test_tspl_raster_decodes_with_zero_as_black() -> None:
    _, payloads = expected(30)
    data = run("tspl-raster", "tspl-203dpi-50x30", 30)
    assert b"QRCODE" not in data and data.count(b"PRINT 1,1") == 30
    bitmaps = _tspl_bitmaps(data)
    assert len(bitmaps) == 30
    for i in (0, 11, 29):
        assert _decode(_image_from_bits(bitmaps[i])) == [payloads[i]]
    assert PRODUCT.encode("gb18030") in data
    # 0 = black: the finder pattern's top-left corner is black, so the first byte is 0x00
    assert data[data.index(b"BITMAP") :].split(b",", 5)[5][0] == 0x00


# -- PDF ----------------------------------------------------------------------------------


def test_pdf_sheet_decodes_and_has_chinese_text(tmp_path: Path) -> None:
    _require(shutil.which("pdftoppm") is not None, "poppler-utils (pdftoppm)")
    count = 70  # a full page of 65 and 5 on the second
    codes, payloads = expected(count)
    pdf = tmp_path / "labels.pdf"
    pdf.write_bytes(run("pdf", "a4-sheet-5x13", count))
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"Pages:\s+2", info) and "595.276 x 841.89" in info
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True)
    assert text.stdout.count(PRODUCT) == count
    assert codes[0][:14] in text.stdout and "No.70" in text.stdout
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True)
    if "TrueType" in fonts.stdout:  # the embedded CJK subset (the normal case)
        assert re.search(r"TrueType\s+\S+\s+yes\s+yes\s+yes", fonts.stdout)
    subprocess.run(["pdftoppm", "-r", "200", "-png", str(pdf), str(tmp_path / "page")], check=True)
    from PIL import Image

    page1 = _decode(Image.open(tmp_path / "page-1.png"))
    page2 = _decode(Image.open(tmp_path / "page-2.png"))
    assert sorted(page1) == sorted(payloads[:65])
    assert sorted(page2) == sorted(payloads[65:])


def test_pdf_for_a_thermal_profile_has_one_label_per_page(tmp_path: Path) -> None:
    _require(shutil.which("pdftoppm") is not None, "poppler-utils (pdftoppm)")
    pdf = tmp_path / "l.pdf"
    pdf.write_bytes(run("pdf", "tspl-203dpi-40x30", 3))
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"Pages:\s+3", info) and "113.386 x 85.039 pts" in info


def test_pdf_empty_run_is_a_valid_document(tmp_path: Path) -> None:
    _require(shutil.which("pdfinfo") is not None, "poppler-utils (pdfinfo)")
    pdf = tmp_path / "empty.pdf"
    out = io.BytesIO()
    assert write_labels("pdf", load_profile("a4-sheet-5x13"), CONTENT, [], out) == 0
    pdf.write_bytes(out.getvalue())
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"Pages:\s+1", info)  # one blank page


# -- PNG ----------------------------------------------------------------------------------


def test_png_zip_entries_decode() -> None:
    from PIL import Image

    count = 600  # more than one sub-chunk, so several worker batches are merged in order
    _, payloads = expected(count)
    zf = zipfile.ZipFile(io.BytesIO(run("png", "png-300dpi-40x30", count, chunk=250)))
    assert zf.testzip() is None
    names = zf.namelist()
    assert names == [f"{s:010d}.png" for s in range(1, count + 1)]
    assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    for i in (0, 249, 250, 511, 512, 599):
        image = Image.open(io.BytesIO(zf.read(names[i])))
        assert image.mode == "1" and image.size == (472, 354)
        assert round(image.info["dpi"][0]) == 300
        assert _decode(image) == [payloads[i]]


def test_png_zip64_when_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(png_writer.ZipStream, "ZIP64_ENTRIES", 2)
    data = run("png", "png-300dpi-40x30", 3)
    assert struct.pack("<I", 0x06064B50) in data  # ZIP64 end of central directory record
    zf = zipfile.ZipFile(io.BytesIO(data))
    assert len(zf.namelist()) == 3 and zf.testzip() is None


def test_png_for_the_sheet_stock() -> None:
    from PIL import Image

    _, payloads = expected(2)
    zf = zipfile.ZipFile(io.BytesIO(run("png", "a4-sheet-5x13", 2)))
    image = Image.open(io.BytesIO(zf.read("0000000002.png")))
    assert image.size == (450, 250)  # 38.1 x 21.2 mm at 300 dpi
    assert _decode(image) == [payloads[1]]


# -- streaming ----------------------------------------------------------------------------


class _Recorder(io.RawIOBase):
    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.size += len(data)
        return len(data)


@pytest.mark.parametrize(
    ("fmt", "profile"),
    [
        ("zpl", "zpl-203dpi-40x30"),
        ("tspl", "tspl-203dpi-40x30"),
        ("tspl-raster", "tspl-203dpi-40x30"),
        ("pdf", "a4-sheet-5x13"),
        ("png", "png-300dpi-40x30"),
    ],
)
def test_writers_stream_chunk_by_chunk(fmt: str, profile: str) -> None:
    """Output is written while chunks are still being produced (nothing is held back)."""
    out = _Recorder()
    written_when: list[int] = []

    def produce() -> Iterator[LabelChunk]:
        for chunk in chunks(4 * 1300, chunk=1300):
            written_when.append(out.size)
            yield chunk

    write_labels(fmt, load_profile(profile), CONTENT, produce(), out)  # type: ignore[arg-type]
    assert len(written_when) == 4
    assert written_when[2] > 0  # bytes were out before the third chunk was even minted
    assert written_when[3] > written_when[2]


# -- golden files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "profile", "name"),
    [("zpl", "zpl-203dpi-40x30", "sample.zpl"), ("tspl", "tspl-203dpi-40x30", "sample.tspl")],
)
def test_golden(fmt: str, profile: str, name: str) -> None:
    data = run(fmt, profile, 3, DEMO_CONTENT)
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
    assert path.read_bytes() == data, f"{name} changed; rerun with UPDATE_GOLDEN=1 if intended"


def _with_serial_prefix(profile_name: str, prefix: str) -> PrinterProfile:
    profile = load_profile(profile_name)
    return dataclasses.replace(profile, serial=dataclasses.replace(profile.serial, prefix=prefix))


def test_chinese_serial_prefix_in_pdf_and_png(tmp_path: Path) -> None:
    _require(shutil.which("pdftotext") is not None, "poppler-utils (pdftotext)")
    out = io.BytesIO()
    write_labels("pdf", _with_serial_prefix("a4-sheet-5x13", "编号"), CONTENT, chunks(3), out)
    (tmp_path / "p.pdf").write_bytes(out.getvalue())
    text = subprocess.run(
        ["pdftotext", str(tmp_path / "p.pdf"), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "编号3" in text.replace(" ", "")
    out = io.BytesIO()
    write_labels("png", _with_serial_prefix("png-300dpi-40x30", "编号"), CONTENT, chunks(1), out)
    assert zipfile.ZipFile(out).namelist() == ["0000000001.png"]


def test_pdf_fallback_cid_font_without_a_ttf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No CJK TrueType font: reportlab's STSong-Light CID font (not embedded) is used."""
    _require(shutil.which("pdftoppm") is not None, "poppler-utils (pdftoppm)")
    from trace.labels.writers import pdf as pdf_writer

    monkeypatch.setattr(pdf_writer, "find_cjk_font", lambda _font=None: None)
    _, payloads = expected(3)
    pdf = tmp_path / "fallback.pdf"
    pdf.write_bytes(run("pdf", "a4-sheet-5x13", 3))
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True)
    assert "STSong-Light" in fonts.stdout and "Courier" in fonts.stdout
    subprocess.run(["pdftoppm", "-r", "200", "-png", str(pdf), str(tmp_path / "fb")], check=True)
    from PIL import Image

    assert sorted(_decode(Image.open(tmp_path / "fb-1.png"))) == sorted(payloads)
