"""Typed configuration read from ``TRACE_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = ROOT / "instance"


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Config:
    database_url: str = f"sqlite:///{INSTANCE_DIR / 'trace.sqlite3'}"
    secret_key: str = ""
    instance_dir: Path = INSTANCE_DIR
    media_dir: Path = INSTANCE_DIR / "media"
    #: JSON key file for trace-code keys; kept outside the database and the repository.
    key_file: Path = INSTANCE_DIR / "keys.json"
    #: Base of the QR payload URL; upper-cased in the QR so it fits alphanumeric mode.
    public_base_url: str = "http://127.0.0.1:5000/q/"
    max_upload_bytes: int = 200 * 1024 * 1024
    max_labels_per_run: int = 1_000_000
    redis_url: str | None = None
    resolve_rate_limit: str = "120 per minute"
    suspicious_scan_count: int = 20
    #: Faster than this between two counties and a code looks copied (km/h).
    suspicious_speed_kmh: float = 300.0
    kiosk_idle_seconds: int = 20
    #: Scan log write-behind buffer (services/scanbuffer.py): "auto" = on for PostgreSQL,
    #: off for SQLite (which keeps the synchronous write in the request); "on" / "off".
    scan_log_buffer: str = "auto"
    #: How often the buffer's thread writes queued scans (milliseconds). Each write costs a
    #: transaction's round trips and commit whatever it carries: at 20 ms PostgreSQL spent
    #: ~0.3 ms per scan, at 100 ms ~0.22 (bench/RESULTS.md); what a crash can lose and how
    #: long other workers miss a queued scan stay a tenth of a second.
    scan_log_flush_ms: int = 100
    #: Queued scans per worker process beyond which new scans are dropped and counted
    #: (the database is down or too slow): memory stays bounded.
    scan_log_buffer_cap: int = 20_000
    #: With the buffer: each worker keeps the code states of the runs it serves, kept
    #: current by LISTEN/NOTIFY, so a scan needs no database read (services/codestates.py).
    #: "on" / "off".
    code_state_cache: str = "on"
    #: Reverse proxies in front of the app that append to X-Forwarded-For (0: none). Only
    #: then is that header trusted for the client address (rate limit, keyed IP hash).
    proxy_hops: int = 0
    testing: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        base = cls()
        instance = Path(env.get("TRACE_INSTANCE_DIR", str(base.instance_dir)))
        default_db = f"sqlite:///{instance / 'trace.sqlite3'}"
        return cls(
            database_url=env.get("TRACE_DATABASE_URL", default_db),
            secret_key=env.get("TRACE_SECRET_KEY", ""),
            instance_dir=instance,
            media_dir=Path(env.get("TRACE_MEDIA_DIR", str(instance / "media"))),
            key_file=Path(env.get("TRACE_KEY_FILE", str(instance / "keys.json"))),
            public_base_url=env.get("TRACE_PUBLIC_BASE_URL", base.public_base_url),
            max_upload_bytes=int(env.get("TRACE_MAX_UPLOAD_BYTES", base.max_upload_bytes)),
            max_labels_per_run=int(env.get("TRACE_MAX_LABELS_PER_RUN", base.max_labels_per_run)),
            redis_url=env.get("TRACE_REDIS_URL") or None,
            resolve_rate_limit=env.get("TRACE_RESOLVE_RATE_LIMIT", base.resolve_rate_limit),
            suspicious_scan_count=int(
                env.get("TRACE_SUSPICIOUS_SCAN_COUNT", base.suspicious_scan_count)
            ),
            suspicious_speed_kmh=float(
                env.get("TRACE_SUSPICIOUS_SPEED_KMH", base.suspicious_speed_kmh)
            ),
            kiosk_idle_seconds=int(env.get("TRACE_KIOSK_IDLE_SECONDS", base.kiosk_idle_seconds)),
            scan_log_buffer=env.get("TRACE_SCAN_LOG_BUFFER", base.scan_log_buffer),
            scan_log_flush_ms=int(env.get("TRACE_SCAN_LOG_FLUSH_MS", base.scan_log_flush_ms)),
            scan_log_buffer_cap=int(env.get("TRACE_SCAN_LOG_BUFFER_CAP", base.scan_log_buffer_cap)),
            code_state_cache=env.get("TRACE_CODE_STATE_CACHE", base.code_state_cache),
            proxy_hops=int(env.get("TRACE_PROXY_HOPS", base.proxy_hops)),
            testing=_bool(env.get("TRACE_TESTING", "0")),
        )

    @property
    def scan_log_buffered(self) -> bool:
        """Whether scans are written behind the request (see scan_log_buffer)."""
        mode = self.scan_log_buffer.strip().lower()
        if mode == "auto":
            return self.database_url.startswith("postgresql")
        return _bool(mode)

    @property
    def code_states_cached(self) -> bool:
        """Whether the scan buffer keeps a code-state cache (see code_state_cache)."""
        return _bool(self.code_state_cache)

    def with_overrides(self, **changes: object) -> Config:
        return replace(self, **changes)  # type: ignore[arg-type]
