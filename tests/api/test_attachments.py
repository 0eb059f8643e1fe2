"""Attachments: streamed upload with a size limit, type sniffed from the bytes, sha256,
and Range requests so a phone can seek in a video."""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.factories import (
    BACKENDS,
    HUANING,
    MAX_UPLOAD,
    SONGMING,
    World,
    assert_problem,
    build_world,
    event_body,
    mp4_bytes,
    png_bytes,
)
from trace.services import media
from trace.services.storage import LocalStorage

VIDEO = mp4_bytes(50_000)


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    yield from build_world(request.param, tmp_path_factory.mktemp("attachments"))


@pytest.fixture(scope="module")
def video(world: World) -> dict[str, Any]:
    r = world.upload(HUANING, world.ids["batch_id"], VIDEO, "harvest.mp4", "video/mp4")
    assert r.status_code == 201, r.get_data(as_text=True)
    return dict(r.get_json())


def _content(world: World, attachment: dict[str, Any], **headers: str) -> Any:
    return world.client.get(
        attachment["content_url"], headers={**world.headers(HUANING), **headers}
    )


def test_video_upload_records_sha256_size_and_sniffed_type(
    world: World, video: dict[str, Any]
) -> None:
    assert video["content_type"] == "video/mp4"
    assert video["size"] == len(VIDEO)
    assert video["sha256"] == hashlib.sha256(VIDEO).hexdigest()
    assert video["filename"] == "harvest.mp4"
    full = _content(world, video)
    assert full.status_code == 200
    assert full.mimetype == "video/mp4"
    assert full.headers["Accept-Ranges"] == "bytes"
    assert full.get_data() == VIDEO
    listed = world.get(HUANING, f"/api/v1/batches/{world.ids['batch_id']}/attachments")
    assert video["id"] in {a["id"] for a in listed}


def test_photo_upload_attached_to_an_event(world: World) -> None:
    image = png_bytes(40, 30)
    event_id = world.ids[f"{HUANING}:event"]
    r = world.upload(HUANING, world.ids["batch_id"], image, "施肥.png", event_id=event_id)
    assert r.status_code == 201, r.get_data(as_text=True)
    body = r.get_json()
    assert body["content_type"] == "image/png" and body["event_id"] == event_id
    assert body["sha256"] == hashlib.sha256(image).hexdigest()
    assert _content(world, body).get_data() == image


def test_type_comes_from_the_bytes_not_the_name_or_header(world: World) -> None:
    image = png_bytes(9, 9)
    r = world.upload(HUANING, world.ids["batch_id"], image, "not-a-video.mp4", "video/mp4")
    assert r.status_code == 201
    assert r.get_json()["content_type"] == "image/png"
    assert _content(world, r.get_json()).mimetype == "image/png"


@pytest.mark.parametrize(
    "data,filename,claimed",
    [
        (b"just some text\n" * 100, "notes.txt", "text/plain"),
        (b"<html><script>alert(1)</script></html>", "page.mp4", "video/mp4"),
        (b"#!/bin/sh\nrm -rf /\n", "photo.png", "image/png"),
        (b"", "empty.png", "image/png"),
    ],
    ids=["text", "html-as-mp4", "script-as-png", "empty"],
)
def test_unsupported_content_is_refused_and_not_kept(
    world: World, data: bytes, filename: str, claimed: str
) -> None:
    before, files = world.counts(), world.media_files()
    r = world.upload(HUANING, world.ids["batch_id"], data, filename, claimed)
    assert_problem(r, 422, "file")
    assert world.counts() == before
    assert world.media_files() == files


def test_missing_file_field(world: World) -> None:
    before = world.counts()
    r = world.client.post(
        f"/api/v1/batches/{world.ids['batch_id']}/attachments",
        data={"caption": "no file"},
        headers=world.headers(HUANING),
        content_type="multipart/form-data",
    )
    assert_problem(r, 422, "file")
    assert world.counts() == before


def test_bad_form_fields_are_named(world: World) -> None:
    before, files = world.counts(), world.media_files()
    r = world.upload(HUANING, world.ids["batch_id"], png_bytes(), is_public="perhaps", color="x")
    assert_problem(r, 422, "is_public", "color")
    assert world.counts() == before and world.media_files() == files


def test_event_of_another_own_batch_is_refused(world: World) -> None:
    batch = world.new_batch(HUANING)
    before, files = world.counts(), world.media_files()
    r = world.upload(HUANING, batch["id"], png_bytes(), event_id=world.ids[f"{HUANING}:event"])
    assert_problem(r, 422, "event_id")
    assert world.counts() == before and world.media_files() == files


@pytest.mark.parametrize(
    "size",
    [MAX_UPLOAD + 1, MAX_UPLOAD + 200_000, 3 * MAX_UPLOAD],
    ids=["one-byte-over", "past-form-allowance", "triple"],
)
def test_oversized_upload_is_refused_and_nothing_is_kept(world: World, size: int) -> None:
    before, files = world.counts(), world.media_files()
    r = world.upload(HUANING, world.ids["batch_id"], mp4_bytes(size), "big.mp4", "video/mp4")
    assert_problem(r, 413)
    assert world.counts() == before
    assert world.media_files() == files  # no stored file, no temporary left behind


def test_upload_at_the_limit_is_accepted(world: World) -> None:
    data = mp4_bytes(MAX_UPLOAD)
    r = world.upload(HUANING, world.ids["batch_id"], data, "exact.mp4")
    assert r.status_code == 201, r.get_data(as_text=True)
    assert r.get_json()["size"] == MAX_UPLOAD


def test_same_bytes_twice_are_two_attachments_over_one_file(world: World) -> None:
    image = png_bytes(21, 21)
    files = world.media_files()
    first = world.upload(HUANING, world.ids["batch_id"], image, "a.png").get_json()
    second = world.upload(HUANING, world.ids["batch_id"], image, "b.png").get_json()
    assert first["id"] != second["id"] and first["sha256"] == second["sha256"]
    assert len(world.media_files()) == len(files) + 1
    assert _content(world, second).get_data() == image


# -- Range ------------------------------------------------------------------------------


def test_range_first_hundred_bytes(world: World, video: dict[str, Any]) -> None:
    r = _content(world, video, Range="bytes=0-99")
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes 0-99/{len(VIDEO)}"
    assert r.get_data() == VIDEO[:100]
    assert len(r.get_data()) == 100 and r.headers["Content-Length"] == "100"


def test_range_in_the_middle(world: World, video: dict[str, Any]) -> None:
    r = _content(world, video, Range="bytes=1000-1999")
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(VIDEO)}"
    assert r.get_data() == VIDEO[1000:2000]


def test_open_range(world: World, video: dict[str, Any]) -> None:
    r = _content(world, video, Range="bytes=40000-")
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes 40000-{len(VIDEO) - 1}/{len(VIDEO)}"
    assert r.get_data() == VIDEO[40000:]


def test_suffix_range(world: World, video: dict[str, Any]) -> None:
    r = _content(world, video, Range="bytes=-500")
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes {len(VIDEO) - 500}-{len(VIDEO) - 1}/{len(VIDEO)}"
    assert r.get_data() == VIDEO[-500:]


def test_unsatisfiable_range(world: World, video: dict[str, Any]) -> None:
    r = _content(world, video, Range=f"bytes={len(VIDEO)}-")
    assert_problem(r, 416)
    assert r.headers["Content-Range"] == f"bytes */{len(VIDEO)}"


def test_if_range_with_a_stale_etag_sends_the_whole_file(
    world: World, video: dict[str, Any]
) -> None:
    r = _content(world, video, Range="bytes=0-99", **{"If-Range": '"stale"'})
    assert r.status_code == 200 and r.get_data() == VIDEO


def test_conditional_get_by_etag(world: World, video: dict[str, Any]) -> None:
    etag = _content(world, video).headers["ETag"]
    assert video["sha256"] in etag
    r = _content(world, video, **{"If-None-Match": etag})
    assert r.status_code == 304 and r.get_data() == b""


# -- attachments and the events they hang off -------------------------------------------


def test_event_with_attachments_cannot_be_deleted(world: World) -> None:
    batch = world.new_batch(SONGMING)
    event = world.new_event(SONGMING, batch["id"], event_body("care"))
    r = world.upload(SONGMING, batch["id"], png_bytes(), event_id=event["id"])
    assert r.status_code == 201
    before = world.counts()
    d = world.client.delete(f"/api/v1/events/{event['id']}", headers=world.headers(SONGMING))
    assert_problem(d, 409)
    assert world.counts() == before
    assert world.get(SONGMING, f"/api/v1/events/{event['id']}")["id"] == event["id"]


@pytest.mark.parametrize(
    "sent,stored",
    [
        ("a\x00b.png", "ab.png"),
        ("../../etc/passwd.png", "passwd.png"),
        ("invoice\u202egnp.exe", "invoicegnp.exe"),
        ("\x01\x02", "upload"),
        ("长" * 300 + ".png", "长" * 255),
    ],
    ids=["nul", "path", "rtl-override", "only-controls", "long"],
)
def test_filenames_are_cleaned_not_trusted(world: World, sent: str, stored: str) -> None:
    r = world.upload(HUANING, world.ids["batch_id"], png_bytes(), sent)
    assert r.status_code == 201, r.get_data(as_text=True)
    assert r.get_json()["filename"] == stored
    content = _content(world, r.get_json())
    assert content.status_code == 200


def _multipart(data: bytes, boundary: str = "tracebound") -> bytes:
    return (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="stream.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )


@pytest.mark.parametrize("size", [10_000, 3 * MAX_UPLOAD], ids=["small", "oversized"])
def test_chunked_upload_without_length(world: World, size: int) -> None:
    """A client streaming without Content-Length is still held to the limit."""
    data = mp4_bytes(size)
    before, files = world.counts(), world.media_files()
    r = world.client.post(
        f"/api/v1/batches/{world.ids['batch_id']}/attachments",
        input_stream=io.BytesIO(_multipart(data)),
        content_type="multipart/form-data; boundary=tracebound",
        headers={**world.headers(HUANING), "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    if size <= MAX_UPLOAD:
        assert r.status_code == 201, r.get_data(as_text=True)
        assert r.get_json()["sha256"] == hashlib.sha256(data).hexdigest()
    else:
        assert_problem(r, 413)
        assert world.counts() == before and world.media_files() == files


def test_sweep_removes_only_old_unreferenced_files(world: World) -> None:
    """`flask media sweep`: what a failed request left behind goes; what an attachment
    names, and anything written recently (an upload being committed), stays."""
    storage = LocalStorage(world.media_dir)
    kept = world.upload(HUANING, world.ids["batch_id"], png_bytes(77, 33), "kept.png")
    assert kept.status_code == 201, kept.get_data(as_text=True)
    sha = kept.get_json()["sha256"]
    referenced = f"{sha[:2]}/{sha}"
    # Stored like an upload whose row was never committed.
    orphan = storage.save(io.BytesIO(b"orphan bytes " * 100), MAX_UPLOAD)
    fresh = storage.save(io.BytesIO(b"fresh bytes " * 100), MAX_UPLOAD)
    unfinished = world.media_dir / ".upload-killed-worker"
    unfinished.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    for path in (storage.path(orphan.key), storage.path(referenced), unfinished):
        os.utime(path, (two_hours_ago, two_hours_ago))

    with world.db() as s:
        dry = media.sweep_unreferenced(s, storage, 3600, dry_run=True)
    assert (dry.files, dry.bytes, dry.temp_files) == (1, orphan.size, 1)
    assert storage.path(orphan.key).exists() and unfinished.exists()

    result = world.app.test_cli_runner().invoke(args=["media", "sweep", "--older-than-hours", "1"])
    assert result.exit_code == 0, result.output
    assert "removed 1 unreferenced files" in result.output and "1 unfinished" in result.output
    assert not storage.path(orphan.key).exists() and not unfinished.exists()
    assert storage.path(fresh.key).exists()  # too recent to judge
    assert storage.path(referenced).exists()
    served = world.client.get(kept.get_json()["content_url"], headers=world.headers(HUANING))
    assert served.status_code == 200 and hashlib.sha256(served.data).hexdigest() == sha
