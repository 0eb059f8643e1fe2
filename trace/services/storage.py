"""Where attachment bytes live. Local files today; an object store would implement the same."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

CHUNK = 1024 * 1024


class TooLarge(Exception):
    pass


@dataclass(frozen=True)
class Stored:
    key: str
    size: int
    sha256: str
    head: bytes  # first bytes, for content sniffing


class Storage(Protocol):
    def save(self, stream: IO[bytes], limit: int) -> Stored: ...
    def path(self, key: str) -> Path: ...
    def delete(self, key: str) -> None: ...


class LocalStorage:
    """Content-addressed files under a root directory (instance/media/ by default)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, stream: IO[bytes], limit: int) -> Stored:
        """Copy `stream` in chunks, hashing as it goes; give up past `limit` bytes so an
        oversized upload is never stored whole."""
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        head = b""
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as tmp:
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(f"larger than {limit} bytes")
                    if len(head) < 512:
                        head += chunk[: 512 - len(head)]
                    digest.update(chunk)
                    tmp.write(chunk)
            sha = digest.hexdigest()
            key = f"{sha[:2]}/{sha}"
            final = self.root / key
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, final)
            return Stored(key=key, size=size, sha256=sha, head=head)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def path(self, key: str) -> Path:
        candidate = (self.root / key).resolve()
        if self.root.resolve() not in candidate.parents:
            raise ValueError("storage key escapes the media root")
        return candidate

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def files_older_than(self, seconds: float) -> Iterator[tuple[str, int]]:
        """``(key, size)`` of stored files not written for ``seconds``. Saving replaces a
        file (os.replace), so content uploaded again just now counts as new."""
        cutoff = time.time() - seconds
        if not self.root.is_dir():
            return
        for entry in sorted(self.root.glob("??/*")):  # keys are "<2 hex>/<sha256>"
            if entry.is_file():
                stat = entry.stat()
                if stat.st_mtime < cutoff:
                    yield f"{entry.parent.name}/{entry.name}", stat.st_size

    def remove_stale_uploads(self, seconds: float, dry_run: bool = False) -> int:
        """Temporary files of uploads that never finished (a killed worker), older than
        ``seconds``: removed (unless ``dry_run``); returns how many there were."""
        cutoff = time.time() - seconds
        if not self.root.is_dir():
            return 0
        stale = [p for p in self.root.glob(".upload-*") if p.stat().st_mtime < cutoff]
        if not dry_run:
            for path in stale:
                path.unlink(missing_ok=True)
        return len(stale)
