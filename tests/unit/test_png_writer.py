"""PNG writer internals: the fast composition against a plain one, the zip batch path.

tests/unit/test_writers.py decodes the written PNGs (Pillow, zxing-cpp); here the
scanlines are compared byte for byte with a composition that draws every label on a
whole canvas the simple way (the static layer, ``_or_bits`` for the QR and the text,
then the Up filter), over profile variants that take each path of ``_Renderer.rows``:
a QR alone on blank paper (only its module edges are written), static ink over the QR,
fields close enough to be one rectangle, a QR at the label's edges or starting on a byte,
and serial numbers changing width while one buffer is reused.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zipfile
import zlib
from collections.abc import Callable

import numpy as np
import pytest

from trace.crypto.keyring import Keyring
from trace.labels.content import (
    LabelChunk,
    LabelContent,
    compute_layout,
    iter_chunks,
    qr_placement,
    qr_version,
)
from trace.labels.profiles import PrinterProfile, load_profile
from trace.labels.writers import png
from trace.labels.writers.base import ascii_matrix, digit_counts, digits_matrix, uniform_runs
from trace.labels.writers.raster import encode_chunk

KEYRING = Keyring.from_text("0:" + "2b7e151628aed2a6abf7158809cf4f3c")
BASE_URL = "https://t.example.cn/q"
CONTENT = LabelContent(
    lines=[
        ("product", "华宁柑桔"),
        ("batch", "HN-2026-001"),
        ("producer", "华宁县柑桔专业合作社"),
        ("harvest_date", "2026-11-20"),
    ],
)


def _chunk(first: int, count: int) -> LabelChunk:
    return next(iter(iter_chunks(KEYRING, 42, first, count, BASE_URL)))


def _plain_rows(r: png._Renderer, matrices: np.ndarray, chunk: LabelChunk) -> np.ndarray:
    """Every label drawn on a whole canvas, then Up-filtered."""
    ink = np.repeat(r.static[None], len(chunk), axis=0)
    p = r.place
    wide = np.repeat(matrices.astype(bool), p.module_dots, axis=2)
    png._or_bits(ink, p.y_dots, p.x_dots, wide, p.module_dots)
    codes = ascii_matrix(chunk.codes)
    for field, c in r.code_fields:
        png._or_bits(ink, field.y, field.x, png._text_bits(field.atlas, codes[:, c.start : c.stop]))
    if r.serial_field is not None:
        counts = digit_counts(chunk.serials)
        for run in uniform_runs(counts):
            digits = digits_matrix(chunk.serials[run], int(counts[run.start]))
            bits = png._text_bits(r.serial_field.atlas, digits)
            png._or_bits(ink[run], r.serial_field.y, r.serial_field.x, bits)
    return png._Renderer._up(ink)


def _variant(name: str, **changes: dict[str, float]) -> PrinterProfile:
    profile = load_profile(name)
    for part, values in changes.items():
        profile = dataclasses.replace(
            profile, **{part: dataclasses.replace(getattr(profile, part), **values)}
        )
    return profile


# QR on the 300 dpi stock: 29 modules x 6 dots = 174 dots = 14.73 mm from (2.5, 2.5) mm.
VARIANTS: dict[str, Callable[[], PrinterProfile]] = {
    "shipped png": lambda: load_profile("png-300dpi-40x30"),
    "shipped sheet": lambda: load_profile("a4-sheet-5x13"),
    "qr on a byte": lambda: _variant("png-300dpi-40x30", qr={"x_mm": 2.71}),  # x = 32 dots
    "text over the qr": lambda: _variant("png-300dpi-40x30", text={"x_mm": 10.0}),
    "code under the qr": lambda: _variant("png-300dpi-40x30", code_text={"y_mm": 17.23}),
    # 1-dot modules from bit 7 of a byte (x = 39 dots): one more byte than 29 dots fill
    "one-dot modules": lambda: _variant("png-300dpi-40x30", qr={"module_dots": 1, "x_mm": 3.302}),
    "two-dot modules": lambda: _variant("png-300dpi-40x30", qr={"module_dots": 2}),
    "qr in the top left corner": lambda: _variant("png-300dpi-40x30", qr={"x_mm": 0, "y_mm": 0}),
    # 298 + 174 = 472 dots wide, 180 + 174 = 354 high: under the end of the static text
    "qr in the bottom right corner": lambda: _variant(
        "png-300dpi-40x30", qr={"x_mm": 25.23, "y_mm": 15.24}
    ),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_rows_are_the_plain_composition(variant: str) -> None:
    profile = VARIANTS[variant]()
    layout = compute_layout(profile, CONTENT)
    first = _chunk(1, 1)
    version = qr_version(first.payloads.dtype.itemsize, profile.qr.ecc)
    r = png._Renderer(profile, layout, qr_placement(profile, version))
    buffer = r.scanlines(64)
    # serial widths change between chunks (and inside one) while the buffer is reused
    for start, count in ((1, 64), (95, 10), (9_999_990, 20), (4_294_967_200, 40), (7, 3)):
        chunk = _chunk(start, count)
        matrices = encode_chunk(chunk, profile.qr.ecc, version)
        codes = ascii_matrix(chunk.codes)
        expected = _plain_rows(r, matrices, chunk)
        fresh = r.rows(matrices, codes, chunk.serials)
        reused = r.rows(matrices, codes, chunk.serials, out=buffer)
        assert fresh.shape == (count, r.height, 1 + r.row_bytes)
        assert np.array_equal(fresh, expected), (variant, start)
        assert np.array_equal(reused, expected), (variant, start)


def test_the_variants_take_the_paths_they_are_named_for() -> None:
    def areas(variant: str) -> tuple[png._Renderer, list[png._Area]]:
        profile = VARIANTS[variant]()
        version = qr_version(_chunk(1, 1).payloads.dtype.itemsize, profile.qr.ecc)
        r = png._Renderer(profile, compute_layout(profile, CONTENT), qr_placement(profile, version))
        return r, r._areas(10)

    r, found = areas("shipped png")
    assert [a.parts for a in found] == [["qr"], ["code0"], ["code1"], ["serial"]]
    assert r._qr_alone(found[0]) and r._qr_off != 0
    r, found = areas("qr on a byte")
    assert r._qr_alone(found[0]) and r._qr_off == 0
    r, found = areas("text over the qr")
    assert found[0].parts == ["qr"] and not r._qr_alone(found[0])
    r, found = areas("code under the qr")
    assert found[0].parts == ["qr", "code0"]
    r, found = areas("one-dot modules")
    assert r._qr_alone(found[0]) and r._qr_off == 7 and r.place.module_dots == 1
    r, found = areas("qr in the top left corner")
    assert (found[0].y0, found[0].b0) == (0, 0) and r._qr_alone(found[0])
    r, found = areas("qr in the bottom right corner")
    assert (found[0].y1, found[0].b1) == (r.height, r.row_bytes) and not r._qr_alone(found[0])


@pytest.mark.parametrize("x", [0, 5, 300, 470])  # the last ones run off the canvas
def test_text_field_draw_clips_like_or_bits(x: int) -> None:
    profile = load_profile("png-300dpi-40x30")
    version = qr_version(_chunk(1, 1).payloads.dtype.itemsize, profile.qr.ecc)
    r = png._Renderer(profile, compute_layout(profile, CONTENT), qr_placement(profile, version))
    atlas = r.code_fields[0][0].atlas
    field = png._TextField(atlas, x, r.height - atlas.height // 2)  # and off the bottom
    text = ascii_matrix(_chunk(1, 5).codes)[:, 3:17]
    expected = np.zeros((5, r.height, r.row_bytes), dtype=np.uint8)
    png._or_bits(expected, field.y, x, png._text_bits(atlas, text))
    columns = np.zeros((5, r.row_bytes, r.height), dtype=np.uint8)
    field.draw(columns, text)
    assert expected.any() and np.array_equal(columns.transpose(0, 2, 1), expected)


def test_file_crc_is_the_crc_of_the_whole_file() -> None:
    rng = np.random.default_rng(7)
    head = rng.bytes(57)
    file_crc = png._FileCrc(head)
    for size in [0, 1, 3000, 3000, 3001, *rng.integers(0, 9000, 40).tolist()]:
        idat = rng.bytes(size)
        chunk_crc = zlib.crc32(idat, zlib.crc32(b"IDAT"))
        end = struct.pack(">I", chunk_crc) + b"IEND-ish"
        whole = head + struct.pack(">I", size) + b"IDAT" + idat + end
        assert file_crc(size, chunk_crc, end) == zlib.crc32(whole)


# -- zip ----------------------------------------------------------------------------------


def _entries(names: list[bytes]) -> tuple[bytes, np.ndarray, np.ndarray, list[bytes]]:
    rng = np.random.default_rng(len(names))
    datas = [rng.bytes(int(k)) for k in rng.integers(0, 300, len(names))]
    sizes = np.array([len(d) for d in datas], dtype=np.uint32)
    crcs = np.array([zlib.crc32(d) for d in datas], dtype=np.uint32)
    headers = png.ZipStream.local_headers(names, sizes.tolist(), crcs.tolist())
    blob = b"".join(h + d for h, d in zip(headers, datas, strict=True))
    return blob, sizes, crcs, datas


@pytest.mark.parametrize("zip64_offset", [png.ZipStream.ZIP64_OFFSET, 200])
@pytest.mark.parametrize(
    "names",
    [
        [b"%010d.png" % i for i in range(1, 40)],
        [b"a.png", b"bb.png", b"0000000003.png"],  # lengths differ: one record at a time
    ],
)
def test_add_batch_writes_what_add_writes(
    names: list[bytes], zip64_offset: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(png.ZipStream, "ZIP64_OFFSET", zip64_offset)
    blob, sizes, crcs, datas = _entries(names)
    one, batch = io.BytesIO(), io.BytesIO()
    zs = png.ZipStream(one)
    for name, data in zip(names, datas, strict=True):
        zs.add(name, data)
    zs.close()
    zb = png.ZipStream(batch)
    zb.add_batch(blob[:0], [], sizes[:0], crcs[:0])  # an empty batch writes nothing
    zb.add_batch(blob, names, sizes, crcs)
    zb.close()
    assert batch.getvalue() == one.getvalue()
    zf = zipfile.ZipFile(batch)
    assert zf.testzip() is None
    assert [zf.read(n.decode()) for n in names] == datas
    if zip64_offset == 200:  # the last entries start past it: ZIP64 extra fields
        assert struct.pack("<HHQ", 0x0001, 8, zf.infolist()[-1].header_offset) in batch.getvalue()


def test_png_zip_does_not_depend_on_workers_or_sub_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sub-chunks of 7 on two threads (each reusing its scanlines, serials going from 2 to
    3 digits) write the same bytes as one sub-chunk on one thread."""
    profile = load_profile("png-300dpi-40x30")

    def write(sub_chunk: int, workers: int) -> bytes:
        monkeypatch.setattr(png, "SUB_CHUNK", sub_chunk)
        monkeypatch.setattr(png, "WORKERS", workers)
        out = io.BytesIO()
        chunks = iter_chunks(KEYRING, 42, 60, 60, BASE_URL, chunk=25)
        assert png.write_png_zip(profile, CONTENT, chunks, out) == 60
        return out.getvalue()

    assert write(7, 2) == write(512, 1)
