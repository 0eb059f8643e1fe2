"""Record-the-run step for bench_labels.py: one LabelRun row through the real service.

Importing this module prepares a migrated SQLite database with the demo data under
bench/out/ (outside the timed part); `record()` is what the benchmark times.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trace.cli.db import upgrade
from trace.db import make_engine, make_session_factory
from trace.models.enums import Role
from trace.services import demo, labels
from trace.services.actors import Actor

ROOT = Path(__file__).resolve().parents[1]
DB_PATH = ROOT / "bench" / "out" / "bench-labels.sqlite3"
URL = os.environ.get("BENCH_DB_URL", f"sqlite:///{DB_PATH}")

upgrade(URL)
_engine = make_engine(URL)
_sessions = make_session_factory(_engine)
with _sessions() as _s:
    if not demo.is_loaded(_s):
        demo.load(_s, "bench-secret")
        _s.commit()


def record(info: dict[str, Any]) -> dict[str, int]:
    with _sessions() as session:
        actor = Actor(user_id=None, role=Role.ENTERPRISE_ADMIN, enterprise_id=1)
        run = labels.issue_run(
            session,
            actor,
            info["keyring"],
            labels.RunRequest(
                batch_id=1, count=info["count"], profile=info["profile"], format=info["format"]
            ),
            max_count=10_000_000,
        )
        session.commit()
        return {"run_id": run.id, "first_serial": run.first_serial}
