"""Load the trace-code keyring for the running app (file or TRACE_CODE_KEYS)."""

from __future__ import annotations

import os
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


def load_keyring(config: Config) -> Keyring:
    """Cached per key-file version: a rotation by the CLI is seen without a restart."""
    path = config.key_file
    mtime = path.stat().st_mtime if path.exists() else 0.0
    return _load(path, os.environ.get(ENV_VAR), mtime)
