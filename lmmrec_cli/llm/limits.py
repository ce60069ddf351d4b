"""Client-side limits: requests per minute, tokens per minute, and requests in flight.

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


class AdaptiveLimit:
    """How many entities may have a request in flight at once, adapted to the server.

    A server that computes one answer at a time (llama.cpp and Ollama with one slot) queues
    every request beyond the first; with ``--concurrency 16`` and 30 s per answer the last one
    waits 8 minutes, passes ``--timeout`` and is abandoned and sent again, paying twice. So:

    * slow start: begin with two in flight and add one per answer while latency stays low
      (doubling per round trip, like TCP), up to ``--concurrency``;
    * multiplicative decrease: an answer slower than a third of ``--timeout`` or a timeout
      halves the limit, at most once per round trip (answers already in flight when the limit
      was cut say nothing new about it);
    * additive increase after a decrease: one more per ``limit`` fast answers.

    A hosted API answers in seconds whatever the concurrency, so it reaches ``--concurrency``
    within a few round trips and stays there.
    """

    def __init__(self, maximum: int, timeout: float, start: int = 2) -> None:
        self.maximum = max(1, maximum)
        self.timeout = timeout
        self.limit = float(min(self.maximum, max(1, start)))
        self.slow_start = True
        self.in_flight = 0
        self.lowest = self.limit  # for the record: how far it had to go down
        self.decreases = 0
        self.min_latency: float | None = None
        self._cut_at = 0.0
        self._condition: asyncio.Condition | None = None

    @property
    def slow_threshold(self) -> float:
        return self.timeout / 3

    def _cond(self) -> asyncio.Condition:
        if self._condition is None:  # made inside the running event loop
            self._condition = asyncio.Condition()
        return self._condition

    async def acquire(self) -> None:
        condition = self._cond()
        async with condition:
            while self.in_flight >= int(self.limit):
                await condition.wait()
            self.in_flight += 1

    async def release(self) -> None:
        condition = self._cond()
        async with condition:
            self.in_flight -= 1
            condition.notify_all()

    def answered(self, latency: float, started: float) -> None:
        """One request answered after ``latency`` seconds; it was sent at ``started``."""
        if self.min_latency is None or latency < self.min_latency:
            self.min_latency = latency
        if latency > self.slow_threshold:
            self._decrease(started)
        elif self.slow_start:
            self.limit = min(self.maximum, self.limit + 1)
        else:
            self.limit = min(self.maximum, self.limit + 1 / self.limit)
        self._wake()

    def timed_out(self, started: float) -> None:
        self._decrease(started)

    def _decrease(self, started: float) -> None:
        if started < self._cut_at:
            return
        self._cut_at = time.monotonic()
        self.slow_start = False
        self.limit = max(1.0, self.limit / 2)
        self.lowest = min(self.lowest, self.limit)
        self.decreases += 1

    def _wake(self) -> None:
        condition = self._condition
        if condition is None:
            return

        async def notify() -> None:
            async with condition:
                condition.notify_all()

        asyncio.ensure_future(notify())
