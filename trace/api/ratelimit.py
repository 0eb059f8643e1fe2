"""Per-client rate limits, checked only by the routes that have one.

Flask-Limiter (what this replaced) hooks every request of the app, limited or not; on the
scan hot path its bookkeeping cost more than a bare Flask request does in total. The only
limited route is the public resolve API, so the limit is checked there, with the `limits`
library Flask-Limiter itself is built on: a fixed window per client address, stored in
Redis when TRACE_REDIS_URL is set (one budget across gunicorn workers and machines), in
process memory otherwise.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from werkzeug.exceptions import TooManyRequests

if TYPE_CHECKING:
    from limits import RateLimitItem

#: TRACE_RESOLVE_RATE_LIMIT values that switch the limit off (benchmarks, trusted networks).
LIMIT_OFF = frozenset({"", "0", "off", "none", "unlimited"})


class ClientRateLimit:
    """One limit (e.g. "120 per minute") for one route, per client key."""

    def __init__(self, name: str, limit: str, storage_uri: str) -> None:
        # Imported here, when a route first needs its limit: `limits` loads its asyncio
        # storages too (~60 ms), which CLI commands and idle workers never use.
        from limits import parse
        from limits.storage import storage_from_string
        from limits.strategies import FixedWindowRateLimiter

        self.name = name
        text = limit.strip()
        self.item: RateLimitItem | None = None if text.lower() in LIMIT_OFF else parse(text)
        self._limiter = (
            FixedWindowRateLimiter(storage_from_string(storage_uri)) if self.item else None
        )

    def check(self, client: str | None) -> None:
        """Count one request of `client`; raise 429 (with Retry-After) beyond the limit."""
        if self.item is None or self._limiter is None:
            return
        key = client or "unknown"
        if self._limiter.hit(self.item, self.name, key):
            return
        reset = self._limiter.get_window_stats(self.item, self.name, key).reset_time
        raise TooManyRequests(
            f"More than {self.item} from this client; try again later.",
            retry_after=max(1, math.ceil(reset - time.time())),
        )
