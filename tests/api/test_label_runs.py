"""Label runs through the API and the CLI: one row per run, disjoint serial ranges,
voids and reprints, bad input that records nothing, failures that never half-issue."""

from __future__ import annotations

import itertools
import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.conftest import bearer
from trace.crypto.codes import parse
from trace.models import Batch, Enterprise, LabelRun
from trace.services import labels
from trace.services.keys import load_keyring

QR_FIELD = re.compile(rb"\^FD[LMQH]A,([^\^]+)\^FS")


def _issue(client: FlaskClient, token: str, **overrides: Any) -> Any:
    body = {"batch_id": 1, "count": 50, "profile": "zpl-203dpi-40x30", "format": "zpl"}
    body.update(overrides)
    return client.post("/api/v1/label-runs", json=body, headers=bearer(token))


def _run_count(session: Session) -> int:
    session.expire_all()
    return int(session.scalar(select(func.count()).select_from(LabelRun)) or 0)


def test_issue_download_and_codes_resolve_to_the_run(
    app: Flask, client: FlaskClient, demo: dict[str, Any], session: Session
) -> None:
    token = demo["tokens"]["huaning-coop"]
    r = _issue(client, token, batch_id=demo["batch_id"], count=120)
    assert r.status_code == 201, r.json
    run = r.json
    assert run["count"] == 120 and run["last_serial"] - run["first_serial"] == 119
    assert _run_count(session) == 1  # one row, not 120

    f = client.get(run["file_url"], headers=bearer(token))
    assert f.status_code == 200
    body = f.get_data()
    payloads = QR_FIELD.findall(body)
    assert len(payloads) == body.count(b"^XA") == 120
    keyring = load_keyring(app.extensions["trace.config"])
    serials = []
    for payload in payloads:
        assert payload.startswith(b"HTTPS://T.EXAMPLE.CN/Q/")
        code = parse(keyring, payload.rsplit(b"/", 1)[1].decode())
        assert code is not None and code.run_id == run["id"]
        serials.append(code.serial)
    assert serials == list(range(run["first_serial"], run["last_serial"] + 1))
    batch = session.get(Batch, demo["batch_id"])
    assert batch is not None and batch.labelled_at is not None


def test_ranges_follow_on_and_listing_counts(client: FlaskClient, demo: dict[str, Any]) -> None:
    token = demo["tokens"]["huaning-coop"]
    a = _issue(client, token, count=10).json
    b = _issue(client, token, count=5, format="tspl", profile="tspl-203dpi-40x30").json
    assert b["first_serial"] == a["last_serial"] + 1
    listing = client.get("/api/v1/label-runs", headers=bearer(token)).json
    assert [x["id"] for x in listing] == [b["id"], a["id"]]
    assert all(x["voided"] == 0 and x["scanned"] == 0 for x in listing)
    other = client.get("/api/v1/label-runs", headers=bearer(demo["tokens"]["songming-farm"]))
    assert other.json == []
    assert (
        client.get(
            f"/api/v1/label-runs/{a['id']}", headers=bearer(demo["tokens"]["songming-farm"])
        ).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("overrides", "field", "status"),
    [
        ({"profile": "no-such-printer"}, "profile", 422),
        ({"profile": "../etc/passwd"}, "profile", 422),
        ({"count": 0}, "count", 422),
        ({"count": -5}, "count", 422),
        ({"count": 10**9}, "count", 422),
        ({"format": "bmp"}, "format", 422),
        ({"format": "zpl", "profile": "a4-sheet-5x13"}, "format", 422),
        ({"colour": "red"}, "colour", 422),
        ({"template": {"label": ["secret_field"]}}, "template.label", 422),
        # Beyond PostgreSQL's bigint: refused by the schema, never sent to the database.
        ({"batch_id": 10**20}, "batch_id", 422),
        ({"batch_id": "1"}, "batch_id", 422),
    ],
)
def test_bad_input_is_refused_and_records_nothing(
    client: FlaskClient,
    demo: dict[str, Any],
    session: Session,
    overrides: dict[str, Any],
    field: str,
    status: int,
) -> None:
    before = session.scalar(select(Enterprise.next_serial).where(Enterprise.id == 1))
    r = _issue(client, demo["tokens"]["huaning-coop"], **overrides)
    assert r.status_code == status
    assert r.mimetype == "application/problem+json"
    assert field in {e["field"] for e in r.json["errors"]}
    assert _run_count(session) == 0
    session.expire_all()
    assert session.scalar(select(Enterprise.next_serial).where(Enterprise.id == 1)) == before


def test_foreign_and_recalled_batches(
    client: FlaskClient, demo: dict[str, Any], session: Session
) -> None:
    r = _issue(client, demo["tokens"]["songming-farm"], batch_id=demo["batch_id"])
    assert r.status_code == 404 and r.mimetype == "application/problem+json"
    batch = session.get(Batch, demo["tomato_batch_id"])
    assert batch is not None
    batch.status = "recalled"
    session.commit()
    r = _issue(client, demo["tokens"]["songming-farm"], batch_id=demo["tomato_batch_id"])
    assert r.status_code == 409
    assert _run_count(session) == 0


def test_void_code_and_range_then_reprint_leaves_them_out(
    app: Flask, client: FlaskClient, demo: dict[str, Any]
) -> None:
    token = demo["tokens"]["huaning-coop"]
    run = _issue(client, token, count=20).json
    first = run["first_serial"]
    keyring = load_keyring(app.extensions["trace.config"])
    run_row = type("R", (), {"id": run["id"], "key_version": run["key_version"]})
    code = labels.code_of(keyring, run_row, first + 3)  # type: ignore[arg-type]
    v1 = client.post(
        f"/api/v1/label-runs/{run['id']}/voids",
        json={"code": code.lower(), "reason": "撕坏"},
        headers=bearer(token),
    )
    assert v1.status_code == 201 and v1.json["first_serial"] == v1.json["last_serial"] == first + 3
    v2 = client.post(
        f"/api/v1/label-runs/{run['id']}/voids",
        json={"first_serial": first + 10, "last_serial": first + 12},
        headers=bearer(token),
    )
    assert v2.status_code == 201
    bad = client.post(
        f"/api/v1/label-runs/{run['id']}/voids",
        json={"first_serial": first + 100},
        headers=bearer(token),
    )
    assert bad.status_code == 422 and bad.json["errors"][0]["field"] == "first_serial"
    foreign = client.post(
        f"/api/v1/label-runs/{run['id']}/voids",
        json={"first_serial": first},
        headers=bearer(demo["tokens"]["songming-farm"]),
    )
    assert foreign.status_code == 404

    reprint = client.get(
        f"/api/v1/label-runs/{run['id']}/file?first_serial={first}&last_serial={first + 14}",
        headers=bearer(token),
    )
    payloads = QR_FIELD.findall(reprint.get_data())
    serials = [parse(keyring, p.rsplit(b"/", 1)[1].decode()).serial for p in payloads]  # type: ignore[union-attr]
    assert serials == [
        s for s in range(first, first + 15) if s != first + 3 and not first + 10 <= s <= first + 12
    ]
    listing = client.get("/api/v1/label-runs", headers=bearer(token)).json
    assert listing[0]["voided"] == 4


def test_batch_level_run_prints_one_code_many_times(
    client: FlaskClient, demo: dict[str, Any]
) -> None:
    token = demo["tokens"]["huaning-coop"]
    run = _issue(client, token, count=7, level="batch").json
    assert run["count"] == 1
    body = client.get(run["file_url"] + "?copies=7", headers=bearer(token)).get_data()
    payloads = QR_FIELD.findall(body)
    assert len(payloads) == 7 and len(set(payloads)) == 1


def test_concurrent_runs_never_overlap(app: Flask, demo: dict[str, Any]) -> None:
    token = demo["tokens"]["huaning-coop"]

    def one(_: int) -> tuple[int, int]:
        with app.test_client() as c:
            r = _issue(c, token, count=1000)
            assert r.status_code == 201, r.json
            return r.json["first_serial"], r.json["last_serial"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ranges = sorted(pool.map(one, range(16)))
    for (_, last), (first, _) in itertools.pairwise(ranges):
        assert first == last + 1


def _printer_server(
    received: bytearray, drop_after: int | None = None
) -> tuple[int, threading.Thread]:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            while chunk := conn.recv(65536):
                received.extend(chunk)
                if drop_after is not None and len(received) >= drop_after:
                    conn.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    break
        srv.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


def test_send_to_network_printer_and_refusal(client: FlaskClient, demo: dict[str, Any]) -> None:
    token = demo["tokens"]["huaning-coop"]
    run = _issue(client, token, count=30, format="tspl", profile="tspl-203dpi-40x30").json
    received = bytearray()
    port, thread = _printer_server(received)
    r = client.post(
        f"/api/v1/label-runs/{run['id']}/print",
        json={"host": "127.0.0.1", "port": port},
        headers=bearer(token),
    )
    thread.join(5)
    assert r.status_code == 200, r.json
    assert r.json["bytes_sent"] == len(received) and received.count(b"PRINT 1,1") == 30

    closed = socket.create_server(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    r = client.post(
        f"/api/v1/label-runs/{run['id']}/print",
        json={"host": "127.0.0.1", "port": dead_port},
        headers=bearer(token),
    )
    assert r.status_code == 502 and r.mimetype == "application/problem+json"
    assert str(dead_port) in r.json["detail"]


def test_only_the_owner_downloads_or_prints_codes(
    client: FlaskClient, demo: dict[str, Any]
) -> None:
    """A print file is a list of genuine codes, and printing makes the server connect where
    it is told: reading a run (regulators may) is not enough."""
    run = _issue(client, demo["tokens"]["huaning-coop"], count=5).json
    regulator = bearer(demo["tokens"]["huaning-regulator"])
    assert client.get(f"/api/v1/label-runs/{run['id']}", headers=regulator).status_code == 200
    for method, path, body in (
        ("get", "file", None),
        ("post", "print", {"host": "127.0.0.1", "port": 9}),
    ):
        url = f"/api/v1/label-runs/{run['id']}/{path}"
        r = getattr(client, method)(url, json=body, headers=regulator)
        assert r.status_code == 403 and r.mimetype == "application/problem+json"
        other = bearer(demo["tokens"]["songming-farm"])
        assert getattr(client, method)(url, json=body, headers=other).status_code == 404


@pytest.mark.parametrize("host", ["a..b", "x" * 64 + ".local", "-printer", "bad host"])
def test_print_to_a_malformed_host_is_422_naming_it(
    client: FlaskClient, demo: dict[str, Any], host: str
) -> None:
    """A host like "a..b" once reached the socket, whose IDNA encoder raised (a 500)."""
    token = demo["tokens"]["huaning-coop"]
    run = _issue(client, token, count=3, format="tspl", profile="tspl-203dpi-40x30").json
    r = client.post(
        f"/api/v1/label-runs/{run['id']}/print", json={"host": host}, headers=bearer(token)
    )
    assert r.status_code == 422 and r.mimetype == "application/problem+json"
    assert [e["field"] for e in r.json["errors"]] == ["host"]


def test_cli_issue_and_failure_never_reuses_the_range(
    app: Flask,
    demo: dict[str, Any],
    session: Session,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = app.test_cli_runner()
    out = tmp_path / "run.tspl"
    ok = runner.invoke(
        args=[
            "labels",
            "issue",
            "--batch",
            str(demo["batch_id"]),
            "--count",
            "500",
            "--profile",
            "tspl-203dpi-40x30",
            "--format",
            "tspl",
            "--out",
            str(out),
        ]
    )
    assert ok.exit_code == 0, ok.output
    assert out.read_bytes().count(b"PRINT 1,1") == 500

    def explode(*_: Any, **__: Any) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(labels, "write_job", explode)
    bad_out = tmp_path / "bad.tspl"
    failed = runner.invoke(
        args=[
            "labels",
            "issue",
            "--batch",
            str(demo["batch_id"]),
            "--count",
            "100",
            "--profile",
            "tspl-203dpi-40x30",
            "--format",
            "tspl",
            "--out",
            str(bad_out),
        ]
    )
    assert failed.exit_code != 0 and "disk full" in failed.output
    assert not bad_out.exists() and not list(tmp_path.glob(".bad.tspl.*"))
    session.expire_all()
    runs = session.scalars(select(LabelRun).order_by(LabelRun.id)).all()
    assert [r.status for r in runs] == ["issued", "failed"]
    monkeypatch.undo()
    again = runner.invoke(
        args=[
            "labels",
            "issue",
            "--batch",
            str(demo["batch_id"]),
            "--count",
            "10",
            "--profile",
            "tspl-203dpi-40x30",
            "--format",
            "tspl",
            "--out",
            str(tmp_path / "again.tspl"),
        ]
    )
    assert again.exit_code == 0, again.output
    session.expire_all()
    third = session.scalars(select(LabelRun).order_by(LabelRun.id.desc())).first()
    assert third is not None and third.first_serial == runs[1].last_serial + 1

    refused = runner.invoke(
        args=[
            "labels",
            "issue",
            "--batch",
            str(demo["batch_id"]),
            "--count",
            "0",
            "--profile",
            "tspl-203dpi-40x30",
            "--format",
            "tspl",
            "--out",
            str(tmp_path / "zero.tspl"),
        ]
    )
    assert refused.exit_code != 0 and "count" in refused.output
