"""Test-data factories shared by the records-core API tests.

- valid request bodies for every event type (tests override one field to break it);
- small real media files: a PNG made with Pillow and a structurally valid MP4;
- `World`: the demo world on a migrated database, built once per test module and backend.
  Building it costs about a second (migrations plus password hashing), so tests that only
  need "some records of two tenants" share it; each test takes snapshots around its own
  requests instead of assuming a pristine database.
"""

from __future__ import annotations

import io
import itertools
import struct
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from tests.conftest import BACKENDS, TEST_KEYS, _pg_database
from trace.app import close_app, create_app
from trace.cli.db import upgrade
from trace.config import Config
from trace.db import Base

__all__ = ["BACKENDS"]

PROBLEM_JSON = "application/problem+json"
MAX_UPLOAD = 2 * 1024 * 1024
HUANING, SONGMING = "huaning-coop", "songming-farm"
HUANING_REG, SONGMING_REG = "huaning-regulator", "songming-regulator"

_numbers = itertools.count(1)


def unique(prefix: str) -> str:
    """A value no other factory call returns (batch numbers, usernames)."""
    return f"{prefix}-{next(_numbers)}-{uuid.uuid4().hex[:6]}"


# -- event bodies ------------------------------------------------------------------------

DETAILS: dict[str, dict[str, Any]] = {
    "sowing": {"variety": "温州蜜柑", "area_mu": "10"},
    "fertilizing": {"name": "有机肥", "amount": "100", "amount_unit": "kg/亩"},
    "pesticide": {
        "product_name": "1.8%阿维菌素乳油",
        "registration_no": "PD20080123",
        "active_ingredient": "阿维菌素",
        "dose": "30",
        "dose_unit": "mL/亩",
        "dilution": "3000倍",
        "target": "红蜘蛛",
        "phi_days": 14,
    },
    "irrigation": {"method": "滴灌", "water_m3": "50"},
    "care": {"operation": "修剪"},
    "harvest": {"quantity": "100", "unit": "kg"},
    "inspection": {
        "method": "农药残留快速检测",
        "items": [{"name": "有机磷", "result": "抑制率 10%", "limit": "< 50%", "passed": True}],
        "verdict": "pass",
        "inspector": "赵检测员",
    },
    "certification": {
        "cert_type": "绿色",
        "number": "LB-45-2026",
        "issuer": "中国绿色食品发展中心",
        "valid_from": "2026-01-01",
        "valid_until": "2028-12-31",
    },
    "processing": {"process": "清洗"},
    "packing": {"package": "5kg纸箱", "units": 20},
    "shipping": {"destination": "昆明金马正昌农产品批发市场", "destination_region": "530111"},
    "receiving": {"receiver": "昆明某超市"},
    "retail": {"store": "华宁县农贸市场"},
}


def event_body(
    kind: str, occurred_at: str = "2026-06-01T09:00:00+08:00", **details: Any
) -> dict[str, Any]:
    """A valid POST body for `kind`; keyword arguments override single detail fields."""
    merged = {**DETAILS[kind], **details}
    return {"type": kind, "occurred_at": occurred_at, "details": merged}


# -- media ------------------------------------------------------------------------------


def png_bytes(width: int = 16, height: int = 16) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (230, 140, 20)).save(out, format="PNG")
    return out.getvalue()


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def mp4_bytes(size: int = 4096) -> bytes:
    """A minimal ISO-BMFF file: ftyp (isom/mp42), moov with a version-0 mvhd, then mdat
    padding up to `size` bytes. Real enough for content sniffing and byte ranges."""
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2mp41mp42")
    mvhd = _box(
        b"mvhd",
        struct.pack(">I", 0)  # version 0, flags
        + struct.pack(">IIII", 0, 0, 1000, 0)  # created, modified, timescale, duration
        + struct.pack(">IH", 0x00010000, 0x0100)  # rate 1.0, volume 1.0
        + b"\0" * 10  # reserved
        + struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)  # matrix
        + b"\0" * 24  # pre_defined
        + struct.pack(">I", 2),  # next track id
    )
    head = ftyp + _box(b"moov", mvhd)
    # mdat filled with a repeating counter so every byte range has distinct content.
    fill = bytes(i % 251 for i in range(max(0, size - len(head) - 8)))
    return head + _box(b"mdat", fill)


# -- responses --------------------------------------------------------------------------


def problem_fields(r: TestResponse) -> list[str]:
    return [e["field"] for e in (r.get_json(force=True) or {}).get("errors", [])]


def assert_problem(r: TestResponse, status: int, *fields: str) -> dict[str, Any]:
    """`r` is an RFC 9457 problem with `status`, naming at least `fields`."""
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True)[:500])
    assert r.mimetype == PROBLEM_JSON, r.mimetype
    body = r.get_json(force=True)
    assert body["status"] == status and body["title"], body
    named = problem_fields(r)
    for field in fields:
        assert field in named, (field, body)
    return dict(body)


# -- the shared world -------------------------------------------------------------------


@dataclass
class World:
    app: Flask
    client: FlaskClient
    ids: dict[str, Any]
    media_dir: Path

    def headers(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.ids['tokens'][username]}"}

    @contextmanager
    def db(self) -> Iterator[Session]:
        with self.app.extensions["trace.sessions"]() as s:
            yield s

    def counts(self) -> dict[str, int]:
        """Rows per table: compared before and after a refused request."""
        tables = Base.metadata.sorted_tables
        one_query = select(*(select(func.count()).select_from(t).scalar_subquery() for t in tables))
        with self.db() as s:
            row = s.execute(one_query).one()
        return {t.name: int(n) for t, n in zip(tables, row, strict=True)}

    def media_files(self) -> list[Path]:
        if not self.media_dir.exists():
            return []
        return sorted(p for p in self.media_dir.rglob("*") if p.is_file())

    # --- records made through the API, as their owner ---

    def get(self, username: str, url: str) -> Any:
        r = self.client.get(url, headers=self.headers(username))
        assert r.status_code == 200, (url, r.get_data(as_text=True)[:300])
        return r.get_json()

    def own_product_site(self, username: str) -> tuple[int, int]:
        products = self.get(username, "/api/v1/products")
        sites = self.get(username, "/api/v1/sites")
        return products[0]["id"], sites[0]["id"]

    def new_batch(self, username: str = HUANING, **fields: Any) -> dict[str, Any]:
        product_id, site_id = self.own_product_site(username)
        body = {
            "product_id": product_id,
            "site_id": site_id,
            "batch_no": unique("T"),
            "quantity": "100",
            "unit": "kg",
            **fields,
        }
        r = self.client.post("/api/v1/batches", json=body, headers=self.headers(username))
        assert r.status_code == 201, r.get_data(as_text=True)
        return dict(r.get_json())

    def new_event(self, username: str, batch_id: int, body: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post(
            f"/api/v1/batches/{batch_id}/events", json=body, headers=self.headers(username)
        )
        assert r.status_code == 201, r.get_data(as_text=True)
        return dict(r.get_json())

    def upload(
        self,
        username: str,
        batch_id: int,
        data: bytes,
        filename: str = "photo.png",
        content_type: str = "application/octet-stream",
        **form: Any,
    ) -> TestResponse:
        fields: dict[str, Any] = {k: str(v) for k, v in form.items()}
        fields["file"] = (io.BytesIO(data), filename, content_type)
        return self.client.post(
            f"/api/v1/batches/{batch_id}/attachments",
            data=fields,
            headers=self.headers(username),
            content_type="multipart/form-data",
        )

    def set_labelled(self, batch_id: int) -> None:
        """Stand in for a label run: from now on the batch's history is corrected, not edited."""
        from trace.db import utcnow
        from trace.models import Batch

        with self.db() as s:
            batch = s.get(Batch, batch_id)
            assert batch is not None
            batch.labelled_at = utcnow()
            s.commit()


def build_world(backend: str, tmp: Path) -> Iterator[World]:
    """The demo world (two enterprises, two regulators) plus one photo and one video per
    enterprise, on a freshly migrated database of `backend`."""
    drop = None
    app: Flask | None = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'world.sqlite3'}"
    else:
        url, drop = _pg_database("w_" + uuid.uuid4().hex[:12])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRACE_CODE_KEYS", TEST_KEYS)
        try:
            upgrade(url)
            config = Config(
                database_url=url,
                secret_key="test-secret-key",
                instance_dir=tmp / "instance",
                media_dir=tmp / "media",
                key_file=tmp / "instance" / "keys.json",
                public_base_url="https://t.example.cn/q/",
                max_upload_bytes=MAX_UPLOAD,
                testing=True,
            )
            app = create_app(config)
            from trace.services import demo

            with app.extensions["trace.sessions"]() as s:
                ids = demo.load(s, config.secret_key)
                s.commit()
            world = World(app, app.test_client(), ids, config.media_dir)
            for username, batch_key in ((HUANING, "batch_id"), (SONGMING, "tomato_batch_id")):
                batch_id = ids[batch_key]
                events = world.get(username, f"/api/v1/batches/{batch_id}/events")
                photo = world.upload(
                    username,
                    batch_id,
                    png_bytes(),
                    f"{username}-secret-photo.png",
                    event_id=events[0]["id"],
                    caption=f"{username} private caption",
                )
                video = world.upload(
                    username, batch_id, mp4_bytes(), f"{username}-field.mp4", "video/mp4"
                )
                assert photo.status_code == video.status_code == 201, photo.get_data()
                ids[f"{username}:photo"] = photo.get_json()["id"]
                ids[f"{username}:video"] = video.get_json()["id"]
                ids[f"{username}:event"] = events[0]["id"]
                ids[f"{username}:batch"] = batch_id
            yield world
        finally:
            if app is not None:
                close_app(app)
            if drop is not None:
                drop()
