"""`make bench-resolve`: the scan hot path under load, against a bare Flask peer.

What it does, all on 127.0.0.1:
1. Creates a fresh PostgreSQL database (dropped at the end), migrates it, loads the demo
   world and issues one item-level label run of RUN_SIZE codes; writes CODES of them
   (spread over the run) to a file for wrk.
2. Starts gunicorn (2 sync workers, the same settings file trace/gunicorn_conf.py for
   both) for bench/bare_app.py (a bare Flask JSON endpoint) and for the trace app (rate
   limit off: TRACE_RESOLVE_RATE_LIMIT=off; scan log write-behind buffer on, as on any
   PostgreSQL deployment).
3. Drives each with wrk (--latency, 64 connections, 2 threads, DURATION s, after a short
   warm-up): bare `/bare/<code>`, trace `/api/v1/resolve/<code>` and `/q/<code>`, with a Lua
   script rotating through the codes. Then once more the resolve API with the Redis-backed
   rate limit on (a limit wrk never reaches), so its cost is visible.
4. Prints requests/s, p50/p99, errors (socket errors + non-2xx) and the ratio to the bare
   endpoint, and checks that scan events in the database == requests the app answered
   (gunicorn's access log, which has a line for every response the app produced, also the
   few wrk gave up on at its deadline; wrk's own count is shown beside it): per endpoint
   after a short pause, and for the server's whole life after a graceful stop (SIGTERM:
   the workers write their queued scans on the way out).
5. Writes the figures under "## Resolve" in bench/RESULTS.md (other sections untouched).

Environment: BENCH_PG_URL (admin URL, default postgresql://postgres@127.0.0.1:5432/postgres),
BENCH_DURATION (seconds, default 30), BENCH_CONNECTIONS (default 64), BENCH_THREADS (threads
per worker, default 1 = sync workers; gthread above, for both apps), BENCH_NO_RECORD=1
to leave RESULTS.md alone.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DURATION = int(os.environ.get("BENCH_DURATION", "30"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
WORKERS = 2
#: Threads per worker (gthread when > 1), the same for both apps.
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
RUN_SIZE = 300_000
CODES = 50_000
GUNICORN = str(ROOT / ".venv" / "bin" / "gunicorn")
GUNICORN_CONF = "python:trace.gunicorn_conf"
#: The limited run: Redis storage, a limit one client never reaches in DURATION seconds.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
REDIS_LIMIT = "100000000 per minute"
SCAN_PREFIXES = ("/api/v1/resolve/", "/q/")
RESULTS = ROOT / "bench" / "RESULTS.md"
LUA = ROOT / "bench" / "resolve.lua"
TARGETS = {"p99_ms": 100.0, "ratio": 0.6}
#: Where the time goes (CPU seconds per process over 8 s of wrk, py-spy on a worker, and
#: in-process timings against the same PostgreSQL): kept with the figures so a reader knows
#: why the ratio is what it is.
READING = (
    "Reading: the scan log is off the request path (each worker queues its scans and "
    "writes them every 20 ms in one multi-row statement; scan events == answered, also "
    "after a graceful stop); the verdict is one statement prepared once per connection and "
    "run through libpq's PQexecPrepared on the verdict engine's own autocommit pool (no "
    "BEGIN/COMMIT, no pool reset; a psycopg cursor cost ~55 us CPU / ~115 us wall per call, "
    "PQexecPrepared ~14 / ~40 us); the content JSON is serialised once per content version; "
    "the rate limit is checked by the resolve route only; the phone page's scan token is one "
    "TimestampSigner per app. Where the CPU goes (per request, CPU seconds of each process "
    "from /proc over 15 s of wrk, 2026-11-29 session 3): bare endpoint 0.37 ms in the "
    "workers (most of it gunicorn's accept/parse/write/close: the bare view itself is ~0.07 "
    "ms in-process); a trivial route of this app 0.45 ms; resolve API 0.88 ms in the workers "
    "+ 0.19 ms in PostgreSQL (1.08 + 0.22 before this session's changes); /q/ page 1.20 + "
    "0.21 ms. With the verdict read replaced by a constant row (an experiment, not "
    "shippable) the API still took 0.79 ms of worker CPU and reached 0.47x of bare: the "
    "scan's own Python (decrypt, IP hash, buffer, JSON) plus the read cannot fit in the "
    "~0.3 ms of extra CPU that 0.6x allows on 2 cores shared by wrk, PostgreSQL and both "
    "workers. 0.6x is NOT met. Kept on purpose: one read per scan, so a code's count, a void "
    "or a recall shows at once on every worker. Levers left: PostgreSQL on its own cores; a "
    "pre-rendered page shell. gthread workers (BENCH_THREADS=4 for both apps) were measured "
    "in session 2 and give lower ratios (bare gains more). Figures on this shared machine "
    "move by 20-30 % between runs minutes apart (the API did 1337-1597 req/s in 15-s runs "
    "the same hour); compare the ratios, not the absolute numbers."
)


def _db_url(name: str) -> str:
    base = ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def _engine(url: str, **kw: object):  # type: ignore[no-untyped-def]
    from trace.db import make_engine

    return make_engine(url, **kw)


def prepare(db_url: str, keys: str, codes_file: Path) -> int:
    """Migrate, load the demo and one big run; write codes for wrk. Returns the run id."""
    os.environ["TRACE_CODE_KEYS"] = keys
    from trace.cli.db import upgrade
    from trace.crypto.codes import mint_batch
    from trace.crypto.keyring import Keyring
    from trace.db import make_session_factory
    from trace.models import Batch
    from trace.models.enums import Role
    from trace.services import demo, labels
    from trace.services.actors import Actor

    upgrade(db_url)
    engine = _engine(db_url)
    with make_session_factory(engine)() as s:
        ids = demo.load(s, "bench-secret")
        keyring = Keyring.from_text(keys)
        batch = s.get(Batch, ids["batch_id"])
        assert batch is not None
        actor = Actor(user_id=None, role=Role.ENTERPRISE_ADMIN, enterprise_id=batch.enterprise_id)
        run = labels.issue_run(
            s,
            actor,
            keyring,
            labels.RunRequest(
                batch_id=batch.id, count=RUN_SIZE, profile="tspl-203dpi-40x30", format="tspl"
            ),
            max_count=RUN_SIZE,
        )
        s.commit()
        step = RUN_SIZE // CODES
        all_codes = mint_batch(keyring, run.id, run.first_serial, RUN_SIZE)
        picked = all_codes[::step][:CODES]
        codes_file.write_bytes(b"\n".join(bytes(c) for c in picked) + b"\n")
        run_id = run.id
    engine.dispose()
    return run_id


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    access_log: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(app: str, chdir: Path, env: dict[str, str], log_dir: Path, probe: str) -> Server:
    port = _free_port()
    access = log_dir / f"access-{port}.log"
    cmd = [
        GUNICORN,
        "--chdir",
        str(chdir),
        "--config",
        GUNICORN_CONF,
        "--workers",
        str(WORKERS),
        "--threads",
        str(THREADS),
        "--bind",
        f"127.0.0.1:{port}",
        "--backlog",
        "2048",
        "--access-logfile",
        str(access),
        "--error-logfile",
        str(log_dir / f"error-{port}.log"),
        app,
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=chdir)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{probe}", timeout=2) as r:
                if r.status == 200:
                    return Server(proc, port, access)
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"gunicorn {app} did not start; see {log_dir}")


def wrk(port: int, prefix: str, codes_file: Path, seconds: int) -> dict[str, float]:
    env = dict(os.environ, CODES=str(codes_file), PREFIX=prefix)
    out = subprocess.run(
        [
            "wrk",
            "--latency",
            "-t2",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            f"http://127.0.0.1:{port}",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    data: dict[str, float] = json.loads(line.removeprefix("WRKJSON "))
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    data["errors"] = data["connect"] + data["read"] + data["write"] + data["timeout"]
    data["non2xx"] = data["status"]
    return data


def access_lines(log: Path, prefix: str | tuple[str, ...]) -> tuple[int, int]:
    """(responses, non-2xx) for paths starting with `prefix` in a gunicorn access log."""
    pattern = re.compile(r'"GET (\S+) HTTP/[\d.]+" (\d{3}) ')
    total = bad = 0
    with log.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = pattern.search(line)
            if m and m.group(1).startswith(prefix):
                total += 1
                bad += not m.group(2).startswith("2")
    return total, bad


def all_logged_after_stop(server: Server, db_url: str, before: int) -> tuple[int, int]:
    """Stop gracefully; (scan requests answered in the server's life, scan events)."""
    server.stop()
    answered, _ = access_lines(server.access_log, SCAN_PREFIXES)
    return answered, scan_events(db_url) - before


def scan_events(db_url: str) -> int:
    from trace.models import ScanEvent

    engine = _engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(ScanEvent)).scalar_one())
    finally:
        engine.dispose()


def measure(
    name: str, server: Server, prefix: str, codes_file: Path, db_url: str | None
) -> dict[str, float]:
    wrk(server.port, prefix, codes_file, 3)  # warm-up: imports, caches, connection pools
    time.sleep(1)
    lines_before, bad_before = access_lines(server.access_log, prefix)
    events_before = scan_events(db_url) if db_url else 0
    result = wrk(server.port, prefix, codes_file, DURATION)
    time.sleep(2)  # let in-flight responses finish and reach the access log
    lines_after, bad_after = access_lines(server.access_log, prefix)
    result["answered"] = lines_after - lines_before
    result["answered_non2xx"] = bad_after - bad_before
    if db_url:
        result["scan_events"] = scan_events(db_url) - events_before
    print(
        f"{name:>14}: {result['rps']:8.0f} req/s  p50 {result['p50_us'] / 1000:6.1f} ms  "
        f"p99 {result['p99_us'] / 1000:6.1f} ms  errors {int(result['errors'])}  "
        f"non-2xx {int(result['non2xx'])}  wrk count {int(result['requests'])}  "
        f"answered {int(result['answered'])}"
        + (f"  scan events {int(result['scan_events'])}" if db_url else ""),
        flush=True,
    )
    return result


def record(rows: dict[str, dict[str, float]], verdicts: dict[str, bool], note: str) -> None:
    bare = rows["bare"]["rps"]
    lines = [
        "## Resolve",
        "",
        f"`make bench-resolve` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC): gunicorn {WORKERS} "
        + ("sync workers" if THREADS == 1 else f"gthread workers x {THREADS} threads")
        + f" for both apps (-c {GUNICORN_CONF}), PostgreSQL, wrk --latency -t2 "
        f"-c{CONNECTIONS} -d{DURATION}s on 127.0.0.1, codes rotating over {CODES:,} labels of a "
        f"{RUN_SIZE:,}-label run; scan log write-behind buffer on (default on PostgreSQL, "
        "flush every 20 ms); rate limit off except in the row marked Redis limit "
        f"({REDIS_LIMIT!r}, storage {REDIS_URL}). wrk, PostgreSQL and both workers share "
        f"the machine's {os.cpu_count()} cores.",
        "",
        "| endpoint | req/s | × bare | p50 ms | p99 ms | errors | non-2xx | answered "
        "| scan events |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        events = str(int(r["scan_events"])) if "scan_events" in r else "–"
        lines.append(
            f"| {name} | {r['rps']:.0f} | {r['rps'] / bare:.2f} | {r['p50_us'] / 1000:.1f} | "
            f"{r['p99_us'] / 1000:.1f} | {int(r['errors'])} | {int(r['non2xx'])} | "
            f"{int(r['answered'])} | {events} |"
        )
    lines += [
        "",
        "Targets (≥ 0.6× bare, p99 ≤ 100 ms, 0 errors, scan events == answered; the Redis "
        "row is shown for its cost, not held to them):",
    ]
    lines += [f"- {k}: {'met' if ok else 'NOT met'}" for k, ok in verdicts.items()]
    if note:
        lines += ["", note]
    section = "\n".join(lines) + "\n"
    current = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    # Replace only our own section (up to the next "## " heading); others stay as they are.
    pattern = re.compile(r"^## Resolve\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(current):
        updated = pattern.sub(lambda _m: section + "\n", current, count=1)
    else:
        updated = current.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(updated.rstrip("\n") + "\n", encoding="utf-8")


def main() -> int:
    for tool in ("wrk", GUNICORN):
        if not shutil.which(tool) and not Path(tool).exists():
            print(f"{tool} is missing", file=sys.stderr)
            return 2
    name = f"trace_bench_{os.getpid()}_{secrets.token_hex(3)}"
    admin = _engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    db_url = _db_url(name)
    work = Path(tempfile.mkdtemp(prefix="bench-resolve-"))
    keys = f"0:{secrets.token_hex(16)},master:{secrets.token_hex(32)}"
    servers: list[Server] = []
    try:
        print(f"preparing {name}: demo + a {RUN_SIZE:,}-label run …", flush=True)
        prepare(db_url, keys, work / "codes.txt")
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("TRACE_")}
        base_env["PYTHONPATH"] = str(ROOT)  # both load trace/gunicorn_conf.py
        trace_env = dict(
            base_env,
            PYTHONPATH=str(ROOT),
            TRACE_DATABASE_URL=db_url,
            TRACE_CODE_KEYS=keys,
            TRACE_INSTANCE_DIR=str(work / "instance"),
            TRACE_SECRET_KEY=secrets.token_hex(16),
            TRACE_RESOLVE_RATE_LIMIT="off",
        )
        bare = start("bare_app:app", ROOT / "bench", base_env, work, "/bare/x")
        servers.append(bare)
        rows = {"bare": measure("bare", bare, "/bare/", work / "codes.txt", None)}
        bare.stop()
        servers.remove(bare)
        life: dict[str, tuple[int, int]] = {}
        before = scan_events(db_url)
        app = start("trace.app:create_app()", ROOT, trace_env, work, "/api/v1/scans/log-health")
        servers.append(app)
        rows["resolve API"] = measure(
            "resolve API", app, "/api/v1/resolve/", work / "codes.txt", db_url
        )
        rows["/q/ page"] = measure("/q/ page", app, "/q/", work / "codes.txt", db_url)
        servers.remove(app)
        life["rate limit off"] = all_logged_after_stop(app, db_url, before)
        before = scan_events(db_url)
        limited_env = dict(
            trace_env, TRACE_REDIS_URL=REDIS_URL, TRACE_RESOLVE_RATE_LIMIT=REDIS_LIMIT
        )
        limited = start(
            "trace.app:create_app()", ROOT, limited_env, work, "/api/v1/scans/log-health"
        )
        servers.append(limited)
        rows["resolve API, Redis limit"] = measure(
            "+ Redis limit", limited, "/api/v1/resolve/", work / "codes.txt", db_url
        )
        servers.remove(limited)
        life["Redis limit"] = all_logged_after_stop(limited, db_url, before)
    finally:
        for server in servers:
            server.stop()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)

    base = rows["bare"]["rps"]
    verdicts: dict[str, bool] = {}
    for key in ("resolve API", "/q/ page"):
        r = rows[key]
        ratio = r["rps"] / base
        print(f"{key}: {ratio:.2f}× bare")
        verdicts[f"{key} ratio {ratio:.2f}"] = ratio >= TARGETS["ratio"]
        verdicts[f"{key} p99 {r['p99_us'] / 1000:.1f} ms"] = r["p99_us"] / 1000 <= TARGETS["p99_ms"]
        verdicts[f"{key} errors {int(r['errors'] + r['non2xx'])}"] = r["errors"] + r["non2xx"] == 0
        verdicts[f"{key} scan events {int(r['scan_events'])} == answered {int(r['answered'])}"] = (
            r["scan_events"] == r["answered"]
        )
    for key, (answered, events) in life.items():
        verdicts[
            f"after a graceful stop ({key}, warm-ups included): scan events {events} == "
            f"scan requests answered {answered}"
        ] = events == answered
    for k, ok in verdicts.items():
        print(f"  {'ok ' if ok else 'MISS'} {k}")
    if os.environ.get("BENCH_NO_RECORD") != "1":
        record(rows, verdicts, os.environ.get("BENCH_NOTE", READING))
        print(f"recorded in {RESULTS.relative_to(ROOT)}")
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
