"""The Batch API path: half the price, answers within 24 hours.

Requests not in the cache are written as JSONL (``custom_id`` = the request's cache key),
uploaded (``files.create(purpose="batch")``), and submitted (``batches.create``). The batch
id is recorded in ``cache/llm/batches.json`` *before* any waiting, together with the keys it
covers (``cache/llm/batches/<id>.keys``), so a run that is stopped — by the user, a crash, or
``--batch-wait`` running out — is resumed by running the same command again: recorded
batches are polled, finished ones are downloaded (output and error files) and joined to
their requests by custom id, and their answers land in the same cache as online answers.
No request already covered by a pending batch is submitted a second time.

A batch answer that is not valid JSON of the schema is a recorded failure (no follow-up
turn is possible inside a batch); a rerun submits only those requests again.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from lmmrec_cli.console import Progress
from lmmrec_cli.errors import LmmrecError
from lmmrec_cli.llm.ask import Asker, EntityRequest, Outcome, store_answer
from lmmrec_cli.llm.runner import answer_from_cache
from lmmrec_cli.llm.schema import AnswerError, parse_answer
from lmmrec_cli.workspace import atomic_write_json, atomic_write_text

STATE_FILE = "batches.json"
ENDPOINT = "/v1/chat/completions"
FINISHED = ("completed", "failed", "expired", "cancelled")


@dataclass(frozen=True)
class BatchOptions:
    poll_interval: float = 30.0
    max_wait: float = 24 * 3600.0


class BatchState:
    """``batches.json``: every batch this workspace submitted and whether it was collected."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE
        self.lock = FileLock(str(directory / f"{STATE_FILE}.lock"))

    def load(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8")).get("batches", {})
        except (OSError, ValueError):
            return {}

    def update(self, batch_id: str, **fields: Any) -> None:
        with self.lock:
            batches = self.load()
            batches.setdefault(batch_id, {}).update(fields)
            atomic_write_json(self.path, {"batches": batches})

    def keys_path(self, batch_id: str) -> Path:
        return self.directory / "batches" / f"{batch_id}.keys"

    def keys(self, batch_id: str) -> set[str]:
        try:
            return set(self.keys_path(batch_id).read_text(encoding="utf-8").split())
        except OSError:
            return set()


def _request_line(asker: Asker, request: EntityRequest, key: str) -> str:
    settings = asker.chat.settings
    body: dict[str, Any] = {
        "model": settings.model,
        "messages": request.message_dicts(),
        **settings.request_parameters(),
    }
    response_format = asker.chat.response_format_for(asker.chat.format_mode)
    if response_format is not None:
        body["response_format"] = response_format
    return json.dumps({"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body})


async def _submit(
    asker: Asker, state: BatchState, pending: list[tuple[str, EntityRequest]], label: str
) -> str:
    client = asker.chat.openai
    payload = "".join(_request_line(asker, r, k) + "\n" for k, r in pending).encode("utf-8")
    try:
        uploaded = await client.files.create(
            file=(f"lmmrec-{label}.jsonl", io.BytesIO(payload)), purpose="batch"
        )
        batch = await client.batches.create(
            input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h"
        )
    except Exception as error:  # noqa: BLE001 - reported as one redacted line
        raise LmmrecError(f"could not submit the batch: {asker.chat.reason(error)}") from None
    # Record before waiting: from here on a rerun resumes this batch instead of paying again.
    atomic_write_text(state.keys_path(batch.id), "\n".join(k for k, _ in pending) + "\n")
    state.update(
        batch.id,
        input_file_id=uploaded.id,
        label=label,
        requests=len(pending),
        status=batch.status,
        created_at=time.time(),
        collected=False,
    )
    asker.chat.stats.requests += len(pending)
    return batch.id


async def _download(asker: Asker, file_id: str | None) -> list[dict[str, Any]]:
    if not file_id:
        return []
    content = await asker.chat.openai.files.content(file_id)
    lines = []
    for line in content.text.splitlines():
        if line.strip():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


async def _collect(asker: Asker, batch: Any, errors: dict[str, str]) -> None:
    """Store every valid answer of a finished batch in the cache; note the others' reasons."""
    stats = asker.chat.stats
    for line in await _download(asker, batch.output_file_id) + await _download(
        asker, batch.error_file_id
    ):
        key = str(line.get("custom_id", ""))
        response = line.get("response") or {}
        body = response.get("body") or {}
        status = response.get("status_code")
        if line.get("error") or status != 200:
            error = line.get("error") or body.get("error") or {}
            message = error.get("message") if isinstance(error, dict) else str(error)
            errors[key] = f"batch request failed: HTTP {status}: {message}"[:300]
            continue
        usage = body.get("usage") or {}
        stats.tokens_in += int(usage.get("prompt_tokens") or 0)
        stats.tokens_out += int(usage.get("completion_tokens") or 0)
        choices = body.get("choices") or [{}]
        content = (choices[0].get("message") or {}).get("content") or ""
        try:
            answer = parse_answer(content)
        except AnswerError as error:
            errors[key] = f"invalid answer in batch: {error}"
            continue
        store_answer(
            asker.cache,
            key,
            answer,
            model=str(body.get("model") or asker.chat.settings.model),
            via=f"batch:{batch.id}",
            usage={
                "prompt_tokens": int(usage.get("prompt_tokens") or 0),
                "completion_tokens": int(usage.get("completion_tokens") or 0),
            },
        )


async def answer_by_batch(
    asker: Asker,
    requests: Sequence[EntityRequest],
    directory: Path,
    options: BatchOptions,
    progress: Progress,
    label: str,
) -> list[Outcome]:
    settings = asker.chat.settings
    state = BatchState(directory)
    keyed = {r.key(settings): r for r in requests}
    hits, misses = answer_from_cache(asker, requests)
    if not misses:
        return hits
    missing = {r.key(settings) for r in misses}
    errors: dict[str, str] = {}
    client = asker.chat.openai
    waiting: dict[str, set[str]] = {}  # batch id -> keys of ours it covers

    # Resume: every batch not yet collected either answers some of our requests or is
    # still running for them.
    for batch_id, record in state.load().items():
        if record.get("collected"):
            continue
        keys = state.keys(batch_id)
        if missing & keys:
            waiting[batch_id] = keys
    uncovered = missing - set().union(*waiting.values()) if waiting else set(missing)
    if uncovered:
        pending = [(k, keyed[k]) for k in sorted(uncovered)]
        batch_id = await _submit(asker, state, pending, label)
        waiting[batch_id] = {k for k, _ in pending}

    deadline = time.monotonic() + options.max_wait
    with progress.task(f"{label} (batch)", total=len(requests)) as bar:
        bar.advance(len(requests) - len(missing))
        while waiting:
            for batch_id in list(waiting):
                try:
                    batch = await client.batches.retrieve(batch_id)
                except Exception as error:  # noqa: BLE001
                    raise LmmrecError(
                        f"could not poll batch {batch_id}: {asker.chat.reason(error)}",
                        hint="rerun the same command to resume; the batch id is kept in "
                        f"{state.path}",
                    ) from None
                state.update(batch_id, status=batch.status)
                if batch.status not in FINISHED:
                    continue
                await _collect(asker, batch, errors)
                if batch.status != "completed":
                    for key in waiting[batch_id]:
                        errors.setdefault(key, f"batch {batch_id} {batch.status}")
                state.update(batch_id, collected=True, collected_at=time.time())
                done = waiting.pop(batch_id) & missing
                bar.advance(len(done))
            if not waiting:
                break
            if time.monotonic() >= deadline:
                ids = ", ".join(sorted(waiting))
                raise LmmrecError(
                    f"batch {ids} is still running after --batch-wait {options.max_wait:g}s",
                    hint="rerun the same command later to collect it; nothing is submitted twice "
                    f"(ids kept in {state.path})",
                )
            await asyncio.sleep(options.poll_interval)

    outcomes, still = answer_from_cache(asker, requests)
    asker.cache_hits -= len(outcomes)  # the second cache pass is collection, not a hit
    asker.cache_hits += len(hits)
    # One outcome per request, in order (entities with identical prompts share a key).
    by_request = {id(o.request): o for o in outcomes}
    for request in still:
        reason = errors.get(request.key(settings), "no answer in the batch output")
        by_request[id(request)] = Outcome(request, None, reason=reason)
    return [by_request[id(r)] for r in requests]
