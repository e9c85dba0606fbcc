"""Rate limits on the heavy endpoints: a token bucket per account and endpoint, in this worker's memory."""

from __future__ import annotations

import os
import threading
import time

from fastapi import HTTPException


class RateLimiter:
    """PER_MINUTE uses per (who, what), refilled continuously; over the limit -> 429 with Retry-After."""

    def __init__(self, per_minute: float | None = None):
        self.per_minute = per_minute if per_minute is not None else float(os.environ.get("HEARTH_WEB_RATE", "30"))
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, who: str, what: str) -> None:
        """Take one token for WHO on WHAT, or refuse with 429."""
        if self.per_minute <= 0:
            return  # 0 turns the limit off (the local benchmark does)
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get((who, what), (self.per_minute, now))
            tokens = min(self.per_minute, tokens + (now - last) * self.per_minute / 60.0)
            if tokens < 1.0:
                wait = int((1.0 - tokens) * 60.0 / self.per_minute) + 1
                self._buckets[(who, what)] = (tokens, now)
                raise HTTPException(429, f"too many {what} requests; try again in {wait} s",
                                    headers={"Retry-After": str(wait)})
            self._buckets[(who, what)] = (tokens - 1.0, now)
