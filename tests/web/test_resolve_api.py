"""The resolve API: verdicts, forged codes (no DB access, one answer whatever was wrong),
the scan log (one event per resolve, never the raw IP), query counts, failures of the log,
device scans and the rate limit across processes."""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import IN_CI, TEST_KEYS, bearer
from tests.web.conftest import PHONE_UA, World, scan_inserts_refused
from trace.app import close_app, create_app
from trace.config import Config
from trace.crypto.codes import B32_ALPHABET, VERSION_ALPHABET, mint
from trace.models import CodeState, LabelRun
from trace.services import scanlog

ROOT = Path(__file__).resolve().parents[2]
COUNTERFEIT = b'{"verdict":"counterfeit"}\n'


def _resolve(client: FlaskClient, code: str, **headers: str) -> Any:
    return client.get("/api/v1/resolve/" + quote(code, safe=""), headers=headers)


def test_genuine_code_first_and_repeat_scan(client: FlaskClient, world: World) -> None:
    code = world.code(7)
    r = _resolve(client, code, **{"User-Agent": PHONE_UA})
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    body = r.json
    assert body["verdict"] == "genuine"
    assert body["scan"]["count"] == 1 and body["scan"]["first_scan"] is True
    assert body["product"]["name"] == "华宁柑桔"
    assert body["product"]["batch_no"] == "HN-GJ-2026-11-001"
    assert body["producer"]["wechat_account"] == "华宁柑桔合作社"
    assert body["origin"]["county"] == "华宁县" and body["origin"]["village"] == "华溪村"
    assert body["dates"] == {"harvest_date": "2026-11-02", "pack_date": "2026-11-04"}
    assert body["grade"] == "一级"
    pesticides = [e for e in body["timeline"] if e["type"] == "pesticide"]
    assert len(pesticides) == 2 and all(p["phi"]["respected"] is True for p in pesticides)
    assert [i["details"]["verdict"] for i in body["inspections"]] == ["pass"]
    assert body["certificates"][0]["details"]["cert_type"] == "承诺达标合格证"

    again = _resolve(client, code.lower()).json
    assert again["scan"]["count"] == 2 and again["scan"]["first_scan"] is False
    assert again["scan"]["first_scan_at"] == body["scan"]["first_scan_at"]

    scans = world.scans()
    assert [(s.channel, s.verdict, s.ua_class) for s in scans] == [
        ("api", "genuine", "wechat"),
        ("api", "genuine", "other"),
    ]
    run = scans[0].run_id
    assert run == world.citrus_run and scans[0].batch_id == world.demo["batch_id"]
    # A keyed hash of the client address: 32 hex characters, never the address itself.
    assert all(len(s.ip_hash or "") == 32 and "127.0.0.1" not in (s.ip_hash or "") for s in scans)
    state = world.state(world.citrus_run, scans[0].serial or 0)
    assert state is not None and state.scan_count == 2


def test_whole_qr_url_resolves_too(client: FlaskClient, world: World) -> None:
    url = "HTTPS://T.EXAMPLE.CN/Q/" + world.code(3)
    assert _resolve(client, url).json["verdict"] == "genuine"


def _mutations(code: str, rng: random.Random) -> str:
    """A random change of a valid code that is not the same code in another case."""
    alphabet = B32_ALPHABET + "0189-._~"
    while True:
        chars = list(code)
        kind = rng.randrange(7)
        if kind == 0:  # one character replaced
            i = rng.randrange(len(chars))
            chars[i] = rng.choice(alphabet)
        elif kind == 1:  # several replaced
            for i in rng.sample(range(len(chars)), rng.randint(2, 5)):
                chars[i] = rng.choice(alphabet)
        elif kind == 2:  # neighbours swapped
            i = rng.randrange(len(chars) - 1)
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif kind == 3:  # one deleted
            del chars[rng.randrange(len(chars))]
        elif kind == 4:  # one inserted
            chars.insert(rng.randrange(len(chars) + 1), rng.choice(alphabet))
        elif kind == 5:  # another key version
            chars[0] = rng.choice(VERSION_ALPHABET)
        else:  # the last character (its two spare bits) changed
            chars[-1] = rng.choice(B32_ALPHABET)
        text = "".join(chars)
        if text.upper() != code.upper():
            return text


def test_ten_thousand_mutations_are_all_counterfeit_with_one_answer(
    client: FlaskClient, world: World
) -> None:
    rng = random.Random(4)
    valid = [world.code(i) for i in range(0, 200, 20)]
    bodies: set[bytes] = set()
    statuses: set[int] = set()
    n = 10_000
    for i in range(n):
        r = _resolve(client, _mutations(valid[i % len(valid)], rng))
        bodies.add(r.get_data())
        statuses.add(r.status_code)
    # The same bytes for every kind of mistake: nothing says which part was wrong.
    assert statuses == {200} and bodies == {COUNTERFEIT}
    scans = world.scans()
    assert len(scans) == n
    assert {(s.verdict, s.run_id, s.serial, s.batch_id) for s in scans} == {
        ("counterfeit", None, None, None)
    }
    with world.session() as s:
        assert s.scalars(select(CodeState)).first() is None


def test_decrypting_codes_outside_issued_runs_are_counterfeit_too(
    client: FlaskClient, world: World
) -> None:
    with world.session() as s:
        run = s.get(LabelRun, world.citrus_run)
        assert run is not None
        past_end = mint(world.keyring, run.id, run.last_serial + 1)
        before_start = mint(world.keyring, run.id, run.first_serial - 1)
        no_run = mint(world.keyring, 999_999, 1)
        run.status = "failed"
        failed_run_code = mint(world.keyring, run.id, run.first_serial)
        s.commit()
    for code in (past_end, before_start, no_run, failed_run_code):
        r = _resolve(client, code)
        assert r.get_data() == COUNTERFEIT, code


def _without_set(statements: list[str]) -> list[str]:
    return list(statements)


def test_forged_code_touches_the_database_only_to_log_the_attempt(
    client: FlaskClient, world: World, statements: list[str]
) -> None:
    forged = "A" + "B" * 26
    _resolve(client, forged)  # PostgreSQL: the scan buffer starts and reserves scan ids
    world.flush()
    buffered = world.app.extensions.get("trace.scan_buffer") is not None
    statements.clear()
    assert _resolve(client, forged).get_data() == COUNTERFEIT
    if buffered:
        # The request itself sends nothing: the scan is queued and written behind it.
        assert statements == [], statements
        world.flush()
        assert len(statements) == 1, statements
        assert statements[0].startswith("WITH relaxed AS")
        assert "INSERT INTO scan_events" in statements[0]
        assert "label_runs" not in statements[0] and "label_voids" not in statements[0]
        return
    # One statement: the log insert.
    assert len(statements) == 1, statements
    assert "INSERT INTO scan_events" in statements[0]
    for table in ("label_runs", "code_states", "batches", "label_voids"):
        assert table not in statements[0]


def test_genuine_code_costs_three_statements_and_no_n_plus_one(
    client: FlaskClient, world: World, statements: list[str]
) -> None:
    codes = [world.code(i) for i in range(1, 4)]  # before counting: these query too
    _resolve(client, "A" + "B" * 26)  # PostgreSQL: the scan buffer reserves its scan ids
    world.flush()  # with the write-behind buffer (PostgreSQL) its one write is counted too
    statements.clear()
    _resolve(client, codes[0])  # cold: the batch's content is loaded
    world.flush()
    cold = _without_set(statements)
    statements.clear()
    _resolve(client, codes[1])  # warm: content cached
    world.flush()
    warm = _without_set(statements)
    # One read; the write is the scan plus the code's state (one statement on PostgreSQL,
    # written behind the request by the buffer).
    assert [s.split()[0] for s in warm] in (["SELECT", "INSERT", "INSERT"], ["SELECT", "WITH"])
    assert "ON CONFLICT" in warm[-1] and "INSERT INTO scan_events" in " ".join(warm)
    # More events must not mean more queries (no N+1): a batch with twice the records.
    from tests.web.test_scan_rules import add_events

    add_events(world, world.demo["batch_id"], 12)
    statements.clear()
    _resolve(client, codes[2])
    world.flush()
    colder = _without_set(statements)
    assert len(colder) == len(cold) <= 7, (cold, colder)


def test_failed_scan_log_still_answers_and_is_counted(
    app: Flask, client: FlaskClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    before = scanlog.failure_count()
    with (
        scan_inserts_refused(app),
        caplog.at_level(logging.ERROR, logger="trace.services.scanlog"),
    ):
        api = _resolve(client, world.code(5))
        world.flush()  # PostgreSQL: the buffer writes (and fails) behind the request
        page = client.get("/q/" + world.code(5))
        world.flush()
    assert api.status_code == 200 and api.json["verdict"] == "genuine"
    assert page.status_code == 200 and 'data-verdict="genuine"' in page.get_data(as_text=True)
    assert scanlog.failure_count() == before + 2
    assert client.get("/api/v1/scans/log-health").json["scan_log_failures"] == before + 2
    assert sum("scan log write failed" in r.getMessage() for r in caplog.records) == 2
    assert world.scan_count() == 0 and world.state(world.citrus_run, 1) is None
    # The log works again afterwards.
    assert _resolve(client, world.code(5)).json["scan"]["count"] == 1
    assert world.scan_count() == 1


def test_device_scans_record_device_region_and_channel(client: FlaskClient, world: World) -> None:
    token = world.demo["tokens"]["kiosk-huaning"]
    code = world.code(11)
    r = client.post(
        "/api/v1/scans",
        json={"code": code, "latitude": 24.2, "longitude": 102.9},
        headers=bearer(token),
    )
    assert r.status_code == 200, r.json
    assert r.json["verdict"] == "genuine" and r.json["channel"] == "kiosk"
    assert r.json["region_code"] == "530424" and r.json["scan"]["count"] == 1
    scan = world.scans()[-1]
    assert (scan.channel, scan.device_id, scan.region_code) == (
        "kiosk",
        world.demo["kiosk_id"],
        "530424",
    )
    assert scan.id == r.json["scan_id"] and scan.latitude == 24.2
    # First scan's county comes from the kiosk.
    state = world.state(world.citrus_run, scan.serial or 0)
    assert state is not None and state.first_region_code == "530424"

    # Printer stations check labels without counting as the code's scans.
    _, printer = world.device("printer_station", "530424")
    r = client.post("/api/v1/scans", json={"code": world.code(12)}, headers=bearer(printer))
    assert r.json["channel"] == "printer_check" and r.json["scan"]["count"] == 0
    assert world.state(world.citrus_run, world.scans()[-1].serial or 0) is None
    first = _resolve(client, world.code(12)).json["scan"]
    assert first["count"] == 1 and first["first_scan"] is True

    assert client.post("/api/v1/scans", json={"code": code}).status_code == 401
    user = world.demo["tokens"]["huaning-coop"]
    assert (
        client.post("/api/v1/scans", json={"code": code}, headers=bearer(user)).status_code == 401
    )
    bad = client.post("/api/v1/scans", json={"code": code, "x": 1}, headers=bearer(token))
    assert bad.status_code == 422


def test_rate_limit_answers_429_problem(config: Config, world: World) -> None:
    limited = create_app(config.with_overrides(resolve_rate_limit="3 per minute"))
    try:
        c = limited.test_client()
        codes = [_resolve(c, world.code(i)).status_code for i in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        r = _resolve(c, world.code(0))
        assert r.headers["Content-Type"].startswith("application/problem+json")
        assert r.json["status"] == 429 and "Retry-After" in r.headers
        # The consumer page is not limited: shoppers behind one carrier NAT share addresses.
        assert c.get("/q/" + world.code(0)).status_code == 200
    finally:
        close_app(limited)


def test_behind_a_proxy_the_forwarded_client_is_limited(config: Config, world: World) -> None:
    """TRACE_PROXY_HOPS=1: X-Forwarded-For names the client (the proxy appends the address it
    saw); without it every shopper would share the proxy's budget."""
    limited = create_app(config.with_overrides(resolve_rate_limit="2 per minute", proxy_hops=1))
    try:
        c = limited.test_client()

        def via_proxy(client_ip: str) -> int:
            headers = {"X-Forwarded-For": f"1.2.3.4, {client_ip}"}  # left part: client's own
            return c.get("/api/v1/resolve/" + world.code(1), headers=headers).status_code

        assert [via_proxy("10.0.0.1") for _ in range(3)] == [200, 200, 429]
        assert via_proxy("10.0.0.2") == 200  # another shopper, another budget
    finally:
        close_app(limited)


# -- the limit across processes (gunicorn workers share Redis) ----------------------------------

REDIS_URL = os.environ.get("TRACE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SERVER = """
import sys
from werkzeug.serving import make_server
from trace.app import create_app
server = make_server("127.0.0.1", 0, create_app(), threaded=True)
print(server.server_port, flush=True)
server.serve_forever()
"""


def _redis_up() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except Exception:
        return False


def _start_server(
    db_url: str, tmp: Path, redis_url: str | None
) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT),
        TRACE_DATABASE_URL=db_url,
        TRACE_INSTANCE_DIR=str(tmp),
        TRACE_SECRET_KEY="limit-test",
        TRACE_CODE_KEYS=TEST_KEYS,
        TRACE_RESOLVE_RATE_LIMIT="4 per minute",
    )
    env.pop("TRACE_REDIS_URL", None)
    if redis_url:
        env["TRACE_REDIS_URL"] = redis_url
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip():
        proc.kill()
        pytest.fail("test server did not start")
    return proc, int(line)


def _get(port: int, path: str, source: str) -> int:
    # A fresh loopback source address per test: the limit is per client address, and
    # counts left in Redis by earlier runs then never meet this one.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "memory"])
def test_rate_limit_holds_across_two_processes_with_redis(
    shared: bool, db_url: str, world: World, tmp_path: Path
) -> None:
    if shared and not _redis_up():
        if IN_CI:
            pytest.fail(f"Redis not reachable at {REDIS_URL} in CI")
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    servers = [
        _start_server(db_url, tmp_path / f"s{i}", REDIS_URL if shared else None) for i in range(2)
    ]
    try:
        rng = random.Random()
        source = f"127.{rng.randint(1, 250)}.{rng.randint(1, 250)}.{rng.randint(2, 250)}"
        path = "/api/v1/resolve/" + world.code(9)
        statuses = [_get(servers[i % 2][1], path, source) for i in range(6)]
    finally:
        for proc, _port in servers:
            proc.terminate()
            proc.wait(timeout=10)
    if shared:  # one budget of 4 for both processes
        assert statuses == [200, 200, 200, 200, 429, 429]
    else:  # in-memory limits are per process: each allows 4 (why production uses Redis)
        assert statuses == [200] * 6


def test_source_addresses_work() -> None:
    """The cross-process test relies on binding 127.x.y.z source addresses (Linux)."""
    s = socket.socket()
    try:
        s.bind(("127.9.8.7", 0))
    finally:
        s.close()


def test_resolve_is_documented(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").json
    assert "/api/v1/resolve/{code}" in doc["paths"]
    assert "/api/v1/scans" in doc["paths"] and "/api/v1/devices" in doc["paths"]
    resolve = doc["paths"]["/api/v1/resolve/{code}"]["get"]
    assert resolve["security"] == []  # public
    assert "verdict" in json.dumps(resolve["responses"]["200"])
