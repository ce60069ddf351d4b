"""Client-side rate limits: requests per minute and tokens per minute.

Token buckets refilled continuously. A bucket holds at most ten seconds of its budget, so a
run starts at most a short burst, not a minute's worth of requests at once (which a provider
would answer with a wall of 429s). Tokens are reserved up front from an estimate (prompt
characters / 4 plus the answer limit), the way providers count them against the limit.
"""

from __future__ import annotations

import asyncio
import time

_BURST_SECONDS = 10.0


class TokenBucket:
    def __init__(self, per_minute: float) -> None:
        if per_minute <= 0:
            raise ValueError("a rate limit must be positive")
        self.rate = per_minute / 60.0
        self.capacity = max(self.rate * _BURST_SECONDS, 1.0)
        self._level = self.capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self, amount: float = 1.0) -> None:
        # A request larger than the bucket waits until the bucket is full, then goes.
        amount = min(amount, self.capacity)
        async with self._lock:  # first come, first served
            while True:
                self._refill()
                if self._level >= amount:
                    self._level -= amount
                    return
                await asyncio.sleep((amount - self._level) / self.rate)


class RateLimiter:
    """Both limits together; ``None`` means unlimited."""

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> None:
        self.requests = TokenBucket(requests_per_minute) if requests_per_minute else None
        self.tokens = TokenBucket(tokens_per_minute) if tokens_per_minute else None

    async def acquire(self, tokens: int) -> None:
        if self.requests is not None:
            await self.requests.take(1)
        if self.tokens is not None:
            await self.tokens.take(tokens)


def estimate_tokens(text: str) -> int:
    """Rough token count (characters / 4): tiktoken cannot fetch its encodings offline."""
    return max(1, (len(text) + 3) // 4)
