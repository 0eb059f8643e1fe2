"""Load the trace-code keyring for the running app (file or TRACE_CODE_KEYS)."""

from __future__ import annotations

import os
import time
from functools import lru_cache
from pathlib import Path

from trace.config import Config
from trace.crypto.keyring import ENV_VAR, Keyring


@lru_cache(maxsize=8)
def _load(path: Path, env_keys: str | None, mtime: float) -> Keyring:
    env = {ENV_VAR: env_keys} if env_keys else {}
    if not env and not path.exists():
        return Keyring.generate_file(path)
    return Keyring.load(path if path.exists() else None, env)


#: How long a loaded keyring answers before the key file is looked at again: a rotation
#: by the CLI is seen within this, and the scan hot path does not stat the file per call.
RECHECK_SECONDS = 1.0
_recent: dict[tuple[Path, str | None], tuple[float, Keyring]] = {}


def load_keyring(config: Config) -> Keyring:
    """Cached per key-file version: a rotation by the CLI is seen without a restart."""
    path, env_keys = config.key_file, os.environ.get(ENV_VAR)
    now = time.monotonic()
    recent = _recent.get((path, env_keys))
    if recent is not None and recent[0] > now:
        return recent[1]
    mtime = path.stat().st_mtime if path.exists() else 0.0
    ring = _load(path, env_keys, mtime)
    _recent[(path, env_keys)] = (now + RECHECK_SECONDS, ring)
    return ring
