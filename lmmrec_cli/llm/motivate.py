"""``lmmrec motivate``: items first, then users, into a motivations artifact.

Backends:

``openai``      chat completions (online, or ``batch=True`` for the Batch API) through the
                answer cache; see ``client.py`` and ``batch.py``.
``extractive``  an LLM-free, deterministic approximation (TF-IDF key phrases); see
                ``lmmrec_cli/extractive.py``. Its output says ``source: "extractive"``.

The artifact is committed only when the share of entities without an answer is at most
``max_failure_rate``. Otherwise the command fails, but every answer received so far is in the
cache, the reasons are written to ``cache/llm/failures/``, and a rerun asks only for what is
missing. When an artifact is committed with failures, ``failures.jsonl`` lists every entity
without an answer and the reason: nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from lmmrec_cli.console import SILENT, Progress, stderr
from lmmrec_cli.data.dataset import PreparedDataset
from lmmrec_cli.errors import LmmrecError, UsageError
from lmmrec_cli.llm.ask import Asker, EntityRequest, Outcome, cached_answer
from lmmrec_cli.llm.cache import AnswerCache, cache_dir
from lmmrec_cli.llm.client import ChatClient, ChatSettings, FatalCallError
from lmmrec_cli.llm.entities import (
    PromptOptions,
    TrainingReviews,
    item_requests,
    user_requests,
)
from lmmrec_cli.llm.limits import estimate_tokens
from lmmrec_cli.llm.prompts import PromptSet
from lmmrec_cli.llm.runner import answer_all, fix_for
from lmmrec_cli.motivations import (
    FAILURES_FILE,
    ITEMS_FILE,
    USERS_FILE,
    Motivation,
    write_motivations,
)
from lmmrec_cli.redact import redact_text
from lmmrec_cli.workspace import ArtifactRef, Workspace, atomic_write_text

BACKENDS = ("openai", "extractive")
# Output length assumed by --dry-run (a five+five list, a summary and a short reasoning).
ESTIMATED_ANSWER_TOKENS = 350


@dataclass(frozen=True)
class MotivateSettings:
    backend: str = "openai"
    chat: ChatSettings = field(default_factory=ChatSettings)
    prompt_options: PromptOptions = field(default_factory=PromptOptions)
    prompts_dir: str | None = None
    max_failure_rate: float = 0.0
    batch: bool = False
    poll_interval: float = 30.0
    batch_wait: float = 24 * 3600.0
    retry_failed: bool = False
    sample: int | None = None  # only this many items (and at most as many of their users)
    sample_seed: int = 0


@dataclass
class MotivateResult:
    ref: ArtifactRef | None
    reused: bool
    counts: dict[str, Any]
    llm: dict[str, Any]
    failures: list[dict[str, Any]]
    notice: str = ""


@dataclass
class DryRun:
    """What a run would send. ``calls`` and the tokens assume every first answer is valid;
    the ``*_max`` figures count a repair for every entity (a repair resends the prompt, the
    bad answer and the problem) and ``http_attempts_max`` every retry on top."""

    items: int
    users: int
    cached: int
    calls: int
    users_estimated: bool
    tokens_in: int
    tokens_out: int
    price_in: float | None
    price_out: float | None
    calls_max: int = 0
    http_attempts_max: int = 0
    tokens_in_max: int = 0
    tokens_out_max: int = 0

    def _cost(self, tokens_in: int, tokens_out: int) -> float | None:
        if self.price_in is None or self.price_out is None:
            return None
        return (tokens_in * self.price_in + tokens_out * self.price_out) / 1e6

    @property
    def cost(self) -> float | None:
        return self._cost(self.tokens_in, self.tokens_out)

    @property
    def cost_max(self) -> float | None:
        return self._cost(self.tokens_in_max, self.tokens_out_max)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "cost": self.cost, "cost_max": self.cost_max}


def _source(settings: MotivateSettings) -> str:
    return "extractive" if settings.backend == "extractive" else f"llm:{settings.chat.model}"


def _artifact_key(
    dataset: PreparedDataset, prompts: PromptSet, settings: MotivateSettings, retry_of: str | None
) -> dict[str, Any]:
    key: dict[str, Any] = {"backend": settings.backend, "dataset": dataset.ref.version}
    if settings.backend == "extractive":
        from lmmrec_cli.extractive import METHOD_VERSION

        key["method_version"] = METHOD_VERSION  # a changed method makes a new version
        key["review_chars"] = settings.prompt_options.review_chars
    if settings.backend == "openai":
        key.update(
            model=settings.chat.model,
            parameters=settings.chat.request_parameters(),
            templates=prompts.hashes,
            prompt_options=settings.prompt_options.describe(),
        )
    if settings.sample is not None:
        key["sample"] = {"items": settings.sample, "seed": settings.sample_seed}
    if retry_of:
        key["retry_of"] = retry_of
    return key


def _sample_order(seed: int) -> Any:
    prefix = zlib.crc32(f"sample\x1f{seed}\x1f".encode())
    return lambda entity_id: zlib.crc32(str(entity_id).encode(), prefix)


def sample_items(items: list[EntityRequest], settings: MotivateSettings) -> list[EntityRequest]:
    """``--sample N``: N items in a seeded hash order (the whole list without it)."""
    if settings.sample is None:
        return items
    order = _sample_order(settings.sample_seed)
    chosen = sorted(items, key=lambda r: order(r.entity_id))[: settings.sample]
    return sorted(chosen, key=lambda r: r.index)


def sample_users(
    dataset: PreparedDataset,
    items: list[EntityRequest],
    users: list[EntityRequest],
    settings: MotivateSettings,
) -> list[EntityRequest]:
    """``--sample N``: at most N users who have a sampled item in their training history, in
    the seeded hash order; their prompts show the sampled items' motivations."""
    if settings.sample is None:
        return users
    sampled = {r.index for r in items}
    train = dataset.columns("interactions", ("user", "item"), split="train")
    touching = {int(u) for u, i in zip(train["user"], train["item"], strict=True) if int(i) in sampled}
    order = _sample_order(settings.sample_seed)
    candidates = [r for r in users if r.index in touching]
    chosen = sorted(candidates, key=lambda r: order(r.entity_id))[: settings.sample]
    return sorted(chosen, key=lambda r: r.index)


def _failure(outcome: Outcome) -> dict[str, Any]:
    request = outcome.request
    return {
        "kind": request.kind,
        "index": request.index,
        "id": request.entity_id,
        "reason": outcome.reason,
    }


def _motivation(outcome: Outcome, source: str) -> Motivation:
    answer = outcome.answer
    assert answer is not None
    return Motivation(
        index=outcome.request.index,
        entity_id=outcome.request.entity_id,
        active=answer.active,
        passive=answer.passive,
        summary=answer.summary,
        reasoning=answer.reasoning,
        source=source,
    )


def _previous_with_failures(
    ws: Workspace, name: str, key: dict[str, Any], dataset: PreparedDataset
) -> str | None:
    """The version an identical earlier run committed (with failures), for --retry-failed."""
    build = ws.build("motivations", name, key=key, parents=[dataset.ref])
    found = ws.find("motivations", name, build.version)
    if found is None:
        return None
    return found.version if found.manifest().get("counts", {}).get("failures") else None


def motivate(
    ws: Workspace,
    dataset_reference: str,
    name: str | None,
    settings: MotivateSettings,
    progress: Progress = SILENT,
) -> MotivateResult:
    if settings.backend not in BACKENDS:
        raise UsageError(f"--backend {settings.backend!r}: use one of {', '.join(BACKENDS)}")
    if not 0 <= settings.max_failure_rate <= 1:
        raise UsageError("--max-failure-rate must be between 0 and 1")
    if settings.sample is not None and settings.sample < 1:
        raise UsageError("--sample must be ≥ 1")
    if settings.sample is not None and settings.backend != "openai":
        raise UsageError("--sample tries an LLM server on a few entities; use it with --backend openai")
    dataset = PreparedDataset.open(ws, dataset_reference)
    prompts = PromptSet.load(settings.prompts_dir)
    name = name or dataset.ref.name
    key = _artifact_key(dataset, prompts, settings, None)
    if settings.retry_failed:
        previous = _previous_with_failures(ws, name, key, dataset)
        if previous:
            key = _artifact_key(dataset, prompts, settings, previous)
    manifest_settings = {
        **key,
        "dataset": dataset.ref.label,
        "max_failure_rate": settings.max_failure_rate,
        "batch": settings.batch,
    }
    if settings.sample is not None:
        manifest_settings["sample"] = {"items": settings.sample, "seed": settings.sample_seed}
    if settings.backend == "openai":
        manifest_settings["client"] = settings.chat.describe()
        manifest_settings["prompts_dir"] = str(prompts.directory)
    build = ws.build(
        "motivations", name, key=key, settings=manifest_settings, parents=[dataset.ref]
    )
    with build:
        if build.reused:
            manifest = build.ref.manifest()
            counts = manifest.get("counts", {})
            notice = ""
            if counts.get("failures"):
                notice = (
                    f"{counts['failures']} entities of this version have no answer "
                    "(failures.jsonl); add --retry-failed to ask for them again"
                )
            # This run asked nothing: the recorded calls and tokens were the building run's.
            return MotivateResult(build.ref, True, counts, {"calls": 0}, [], notice)
        if settings.backend == "extractive":
            from lmmrec_cli.extractive import extract_motivations

            options = settings.prompt_options
            items, users = extract_motivations(
                dataset, progress, options.review_chars, options.description_chars
            )
            item_list, user_list, failures, llm = items, users, [], {"backend": "extractive"}
        else:
            item_list, user_list, failures, llm = _ask_llm(ws, dataset, prompts, settings, progress)
        total = dataset.n_items + dataset.n_users
        if settings.sample is not None:
            total = llm["sample"]["items"] + llm["sample"]["users"]
        rate = len(failures) / max(total, 1)
        if rate > settings.max_failure_rate:
            report = cache_dir(ws) / "failures" / f"{name}-{build.version}.jsonl"
            atomic_write_text(
                report, "".join(json.dumps(f, sort_keys=True) + "\n" for f in failures)
            )
            raise LmmrecError(
                f"{len(failures)} of {total} entities have no answer ({rate:.1%} > "
                f"--max-failure-rate {settings.max_failure_rate:g}); reasons in {report}",
                hint="answers received so far are cached: rerun the same command to ask only for "
                "the missing ones, or raise --max-failure-rate to keep a partial artifact",
            )
        write_motivations(build.dir / ITEMS_FILE, "item", item_list)
        write_motivations(build.dir / USERS_FILE, "user", user_list)
        atomic_write_text(
            build.dir / FAILURES_FILE,
            "".join(json.dumps(f, sort_keys=True) + "\n" for f in failures),
        )
        build.counts.update(
            items=len(item_list),
            users=len(user_list),
            failures=len(failures),
            item_failures=sum(f["kind"] == "item" for f in failures),
            user_failures=sum(f["kind"] == "user" for f in failures),
        )
        build.extra["llm"] = llm
        build.extra["source"] = _source(settings)
        if settings.backend == "openai":
            build.extra["templates"] = prompts.hashes
    return MotivateResult(build.ref, False, dict(build.counts), llm, failures)


def _ask_llm(
    ws: Workspace,
    dataset: PreparedDataset,
    prompts: PromptSet,
    settings: MotivateSettings,
    progress: Progress,
) -> tuple[list[Motivation], list[Motivation], list[dict[str, Any]], dict[str, Any]]:
    source = _source(settings)
    with AnswerCache.for_workspace(ws) as cache:

        async def run(chat: ChatClient) -> tuple[list[Outcome], list[Outcome], Asker]:
            asker = Asker(chat, cache, prompts)
            try:
                reviews = TrainingReviews(dataset, settings.prompt_options.review_chars)
                items = item_requests(dataset, prompts, settings.prompt_options, reviews)
                items = sample_items(items, settings)
                item_outcomes = await _answer(asker, items, ws, settings, progress, "items")
                _stop_if_no_item_answered(item_outcomes, settings)
                known = {o.request.index: _motivation(o, source) for o in item_outcomes if o.answer}
                users = user_requests(dataset, prompts, settings.prompt_options, known, reviews)
                users = sample_users(dataset, items, users, settings)
                user_outcomes = await _answer(asker, users, ws, settings, progress, "users")
            finally:
                await chat.aclose()
            return item_outcomes, user_outcomes, asker

        chat = ChatClient(settings.chat)
        chat.warn = lambda message: stderr.print(f"[yellow]warning:[/] {message}")
        item_outcomes, user_outcomes, asker = asyncio.run(run(chat))
    outcomes = item_outcomes + user_outcomes
    failures = [_failure(o) for o in outcomes if o.answer is None]
    stats = chat.stats
    llm = {
        "backend": "openai-batch" if settings.batch else "openai",
        "model": settings.chat.model,
        "templates": prompts.hashes,
        "calls": stats.requests,
        "http_attempts": stats.http_attempts,
        "cache_hits": asker.cache_hits,
        "repairs": asker.repairs,
        "tokens_in": stats.tokens_in,
        "tokens_out": stats.tokens_out,
        "failures": len(failures),
        "response_format": chat.format_mode,
        "format_fallbacks": stats.format_fallbacks,
        "retries": stats.retries,
        "connection_failures": stats.connection_failures,
        "mean_latency_s": round(stats.latency_total / stats.answered, 3) if stats.answered else None,
        "in_flight": {
            "limit": settings.chat.concurrency,
            "final": int(chat.limit.limit),
            "lowest": int(chat.limit.lowest),
            "decreases": chat.limit.decreases,
        },
    }
    if settings.sample is not None:
        llm["sample"] = {
            "items": len(item_outcomes),
            "users": len(user_outcomes),
            "seed": settings.sample_seed,
        }
    items = [_motivation(o, source) for o in item_outcomes if o.answer]
    users = [_motivation(o, source) for o in user_outcomes if o.answer]
    return items, users, failures, llm


async def _answer(
    asker: Asker,
    requests: list[EntityRequest],
    ws: Workspace,
    settings: MotivateSettings,
    progress: Progress,
    label: str,
) -> list[Outcome]:
    if settings.batch:
        from lmmrec_cli.llm.batch import BatchOptions, answer_by_batch

        options = BatchOptions(poll_interval=settings.poll_interval, max_wait=settings.batch_wait)
        return await answer_by_batch(asker, requests, cache_dir(ws), options, progress, label)
    return await answer_all(asker, requests, progress, label, server_label(settings))


def server_label(settings: MotivateSettings) -> str:
    return redact_text(settings.chat.base_url or "https://api.openai.com/v1 (the default)")


def _stop_if_no_item_answered(outcomes: list[Outcome], settings: MotivateSettings) -> None:
    """Every item failed: users would be asked with no item motivation at all, and for the
    same reason they would fail too. Stop before them, naming the cause and the fix."""
    failed = [o for o in outcomes if o.answer is None]
    if not failed or len(failed) < len(outcomes):
        return
    kind, count = Counter(o.kind for o in failed).most_common(1)[0]
    example = next(o.reason for o in failed if o.kind == kind)
    raise FatalCallError(
        f"all {len(outcomes)} items failed ({count} for the same reason: {example}); "
        "users were not asked",
        hint=fix_for(kind),
    )


# --------------------------------------------------------------------------------------------
# dry run


def dry_run(
    ws: Workspace,
    dataset_reference: str,
    settings: MotivateSettings,
    price_in: float | None,
    price_out: float | None,
) -> DryRun:
    """Count the calls a run would make and estimate their tokens; makes no call.

    Item prompts are exact. A user prompt contains its items' answers, which do not exist
    before the item step ran; where an item has no cached answer its motivation is stood in
    by a typical-length text, so user token counts are then estimates (``users_estimated``).
    """
    dataset = PreparedDataset.open(ws, dataset_reference)
    prompts = PromptSet.load(settings.prompts_dir)
    chat = settings.chat
    answer_tokens = min(chat.max_tokens, ESTIMATED_ANSWER_TOKENS)
    with AnswerCache.for_workspace(ws) as cache:
        reviews = TrainingReviews(dataset, settings.prompt_options.review_chars)
        items = item_requests(dataset, prompts, settings.prompt_options, reviews)
        known: dict[int, Motivation] = {}
        stand_in = Motivation(
            0, "", ["a typical motivation phrase"] * 5, ["a typical drawback"] * 3, "word " * 120
        )
        estimated = False
        for request in items:
            hit = cached_answer(cache, request.key(chat))
            if hit is not None:
                answer = hit[0]
                known[request.index] = Motivation(
                    request.index, request.entity_id, answer.active, answer.passive, answer.summary
                )
            else:
                known[request.index] = stand_in
                estimated = True
        users = user_requests(dataset, prompts, settings.prompt_options, known, reviews)
        items = sample_items(items, settings)
        users = sample_users(dataset, items, users, settings)
        cached = 0
        tokens_in = 0
        calls = 0
        for request in items + users:
            if not (request.kind == "user" and estimated) and cached_answer(
                cache, request.key(chat)
            ):
                cached += 1
                continue
            calls += 1
            tokens_in += sum(estimate_tokens(content) for _, content in request.messages)
    tokens_out = calls * answer_tokens
    # A repair resends the prompt and the bad answer, plus the problem (a few dozen tokens).
    repair_in = tokens_in + tokens_out + calls * 50
    return DryRun(
        items=len(items),
        users=len(users),
        cached=cached,
        calls=calls,
        users_estimated=estimated,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        price_in=price_in,
        price_out=price_out,
        calls_max=2 * calls,
        http_attempts_max=2 * calls * (1 + chat.max_retries),
        tokens_in_max=tokens_in + repair_in,
        tokens_out_max=2 * tokens_out,
    )
