"""Answer many entity requests concurrently: cached ones first, without touching the network.

The cache pass is synchronous (a SQLite read per entity), so a fully cached rerun never builds
a client or an event-loop task per entity. Each remaining entity is one task that holds an
in-flight place (``ChatClient.slot``) for its whole ask → repair, so entities finish in the
order they start: every answer is cached and counted the moment it arrives, and a killed run
loses only the few entities in flight (not every entity still waiting for its repair behind
the first calls of the whole phase).

A phase stops early when its failures are systematic (:class:`FailureWatch`): an unreachable
server, or the first entities all failing for one cause and none answered, is the same cause
for every entity, and asking the rest would only repeat it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from lmmrec_cli.console import Progress
from lmmrec_cli.llm.ask import Asker, EntityRequest, Outcome, cached_answer
from lmmrec_cli.llm.client import FatalCallError

# No entity answered and this many failed for one cause: stop the phase.
SYSTEMATIC_AFTER = 8
# Connection failures in a row that stop a run even after answers (the server went away).
CONNECTION_FAILURES_IN_A_ROW = 8

_FIXES = {
    "connection": "check that the server runs and that --base-url is right (it usually ends in "
    "/v1)",
    "timeout": "raise --timeout, or lower --concurrency for a server that answers one request "
    "at a time",
    "invalid answer": "the model does not return the JSON asked for: try a larger model, raise "
    "--max-tokens, or force --response-format json_object or text",
    "response format": "force --response-format text",
}


def fix_for(kind: str) -> str:
    if kind in _FIXES:
        return _FIXES[kind]
    if kind.startswith("HTTP 5"):
        return "the server failed: see its log; rerun to ask again (answers so far are cached)"
    return "see the reason above; answers so far are cached, a rerun asks only for the rest"


class FailureWatch:
    """Raises :class:`FatalCallError` when a phase's failures are systematic: a server never
    reached, the first ``SYSTEMATIC_AFTER`` finished entities all failing for one cause with
    none answered, or ``CONNECTION_FAILURES_IN_A_ROW`` connection failures in a row."""

    def __init__(self, server: str, label: str, total: int) -> None:
        self.server = server
        self.label = label
        self.threshold = max(1, min(SYSTEMATIC_AFTER, total))
        self.answered = 0
        self.kinds: Counter[str] = Counter()
        self.connection_run = 0

    def record(self, outcome: Outcome) -> None:
        if outcome.answer is not None:
            self.answered += 1
            self.connection_run = 0
            return
        self.kinds[outcome.kind] += 1
        self.connection_run = self.connection_run + 1 if outcome.kind == "connection" else 0
        if outcome.kind == "connection" and (
            not self.answered or self.connection_run >= CONNECTION_FAILURES_IN_A_ROW
        ):
            raise FatalCallError(
                f"cannot reach the LLM server at {self.server}: {outcome.reason}",
                hint=fix_for("connection"),
            )
        if not self.answered and len(self.kinds) == 1 and self.kinds[outcome.kind] >= self.threshold:
            raise FatalCallError(
                f"stopped early: the first {self.kinds[outcome.kind]} {self.label} all failed "
                f"for the same reason ({outcome.reason})",
                hint=fix_for(outcome.kind),
            )


def answer_from_cache(
    asker: Asker, requests: Sequence[EntityRequest]
) -> tuple[list[Outcome], list[tuple[str, EntityRequest]]]:
    """Cached outcomes, and the (key, request) pairs still to ask for."""
    hits: list[Outcome] = []
    misses: list[tuple[str, EntityRequest]] = []
    settings = asker.chat.settings
    for request in requests:
        key = request.key(settings)
        found = cached_answer(asker.cache, key)
        if found is None:
            misses.append((key, request))
        else:
            hits.append(Outcome(request, found[0], cached=True, model=found[1]))
    asker.cache_hits += len(hits)
    return hits, misses


async def answer_all(
    asker: Asker,
    requests: Sequence[EntityRequest],
    progress: Progress,
    label: str,
    server: str = "",
) -> list[Outcome]:
    """Outcomes for all ``requests`` in their order; failures are outcomes, not exceptions
    (only a :class:`FatalCallError` stops the run)."""
    hits, misses = answer_from_cache(asker, requests)
    by_request: dict[int, Outcome] = {id(o.request): o for o in hits}
    if not misses:
        return [by_request[id(r)] for r in requests]
    # Entities whose prompts are identical (say, users with no training history) are
    # asked once and share the answer.
    groups: dict[str, list[EntityRequest]] = {}
    for key, request in misses:
        groups.setdefault(key, []).append(request)
    watch = FailureWatch(server, label, len(groups))
    failures = 0
    chat = asker.chat
    description = f"{label} ({len(hits):,} cached)" if hits else label
    # The bar counts the answers still to get, so its rate and ETA are those of the server.
    with progress.task(description, total=len(groups)) as bar:

        async def one(key: str, group: list[EntityRequest]) -> None:
            nonlocal failures
            async with chat.slot():
                outcome = await asker.fetch(group[0], key)
            for request in group:
                by_request[id(request)] = replace(outcome, request=request)
            if outcome.answer is None:
                failures += len(group)
            bar.advance(1)
            bar.set_postfix(f"{failures} failed, {int(chat.limit.limit)} in flight")
            watch.record(outcome)

        tasks = [asyncio.ensure_future(one(k, g)) for k, g in groups.items()]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return [by_request[id(r)] for r in requests]
