"""Answer many entity requests concurrently: cached ones first, without touching the network.

The cache pass is synchronous (a SQLite read per entity), so a fully cached rerun never builds
a client or an event-loop task per entity. The remaining requests run as asyncio tasks whose
concurrency the chat client bounds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from lmmrec_cli.console import Progress
from lmmrec_cli.llm.ask import Asker, EntityRequest, Outcome, cached_answer


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
    asker: Asker, requests: Sequence[EntityRequest], progress: Progress, label: str
) -> list[Outcome]:
    """Outcomes for all ``requests`` in their order; failures are outcomes, not exceptions
    (only a :class:`FatalCallError` stops the run)."""
    hits, misses = answer_from_cache(asker, requests)
    by_request: dict[int, Outcome] = {id(o.request): o for o in hits}
    failures = 0
    with progress.task(label, total=len(requests)) as bar:
        bar.advance(len(hits))
        if hits:
            bar.set_postfix(f"{len(hits)} cached")

        # Entities whose prompts are identical (say, users with no training history) are
        # asked once and share the answer.
        groups: dict[str, list[EntityRequest]] = {}
        for key, request in misses:
            groups.setdefault(key, []).append(request)

        async def one(key: str, group: list[EntityRequest]) -> None:
            nonlocal failures
            outcome = await asker.fetch(group[0], key)
            for request in group:
                by_request[id(request)] = replace(outcome, request=request)
                if outcome.answer is None:
                    failures += 1
            bar.advance(len(group))
            bar.set_postfix(f"{len(hits)} cached, {failures} failed")

        tasks = [asyncio.ensure_future(one(k, g)) for k, g in groups.items()]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
    return [by_request[id(r)] for r in requests]
