"""The Batch API path: half the price, answers within 24 hours.

Requests not in the cache are written as JSONL (``custom_id`` = the request's cache key),
uploaded (``files.create(purpose="batch")``), and submitted (``batches.create``). The upload
is recorded in ``cache/llm/batches.json`` before the batch is created (then the batch id),
with the keys it covers in ``cache/llm/batches/<file id>.keys``, so a run that is stopped
(by the user, a crash, or ``--batch-wait`` running out) is resumed by running the same
command again: an upload without a recorded batch is matched to its batch on the server
(``batches.list``) or submitted then, recorded batches are polled, finished ones are downloaded
(output and error files) and joined to their requests by custom id, and their answers land in
the same cache as online answers.
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
    """``batches.json``: every upload this workspace made (by input file id), its batch id
    once known, and whether its results were collected."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE
        self.lock = FileLock(str(directory / f"{STATE_FILE}.lock"))

    def load(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8")).get("batches", {})
        except (OSError, ValueError):
            return {}

    def update(self, upload_id: str, **fields: Any) -> None:
        with self.lock:
            batches = self.load()
            batches.setdefault(upload_id, {}).update(fields)
            atomic_write_json(self.path, {"batches": batches})

    def keys_path(self, upload_id: str) -> Path:
        return self.directory / "batches" / f"{upload_id}.keys"

    def keys(self, upload_id: str) -> set[str]:
        try:
            return set(self.keys_path(upload_id).read_text(encoding="utf-8").split())
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


async def _upload(
    asker: Asker, state: BatchState, pending: list[tuple[str, EntityRequest]], label: str
) -> str:
    """Upload the requests and record the upload before any batch exists, so a run killed
    between the upload and ``batches.create`` still finds its work on the next run."""
    client = asker.chat.openai
    payload = "".join(_request_line(asker, r, k) + "\n" for k, r in pending).encode("utf-8")
    try:
        uploaded = await client.files.create(
            file=(f"lmmrec-{label}.jsonl", io.BytesIO(payload)), purpose="batch"
        )
    except Exception as error:  # noqa: BLE001 - reported as one redacted line
        raise LmmrecError(f"could not upload the batch input: {asker.chat.reason(error)}") from None
    atomic_write_text(state.keys_path(uploaded.id), "\n".join(k for k, _ in pending) + "\n")
    state.update(
        uploaded.id,
        label=label,
        requests=len(pending),
        status="uploaded",
        created_at=time.time(),
        collected=False,
    )
    asker.chat.stats.requests += len(pending)
    return uploaded.id


async def _batch_for(
    asker: Asker, state: BatchState, upload_id: str, record: dict[str, Any]
) -> str:
    """The batch that runs an upload: recorded, found on the server (created by a run that
    died before recording it), or created now."""
    client = asker.chat.openai
    if record.get("batch_id"):
        return str(record["batch_id"])
    try:
        async for batch in client.batches.list(limit=100):
            if batch.input_file_id == upload_id:
                state.update(upload_id, batch_id=batch.id, status=batch.status)
                return batch.id
        batch = await client.batches.create(
            input_file_id=upload_id, endpoint=ENDPOINT, completion_window="24h"
        )
    except Exception as error:  # noqa: BLE001
        raise LmmrecError(
            f"could not submit the batch: {asker.chat.reason(error)}",
            hint=f"rerun the same command: the uploaded input {upload_id} is kept and reused",
        ) from None
    state.update(upload_id, batch_id=batch.id, status=batch.status)
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
    state = BatchState(directory)
    hits, misses = answer_from_cache(asker, requests)
    if not misses:
        return hits
    keyed = dict(misses)  # requests with one key have identical prompts: any one will do
    missing = set(keyed)
    errors: dict[str, str] = {}
    client = asker.chat.openai
    waiting: dict[str, tuple[str, set[str]]] = {}  # batch id -> (upload id, its keys)

    # Resume: every upload not yet collected either answers some of our requests or is
    # still running for them; only requests no upload covers are uploaded now.
    uploads = [
        (upload_id, record, state.keys(upload_id))
        for upload_id, record in state.load().items()
        if not record.get("collected")
    ]
    uploads = [(u, r, keys) for u, r, keys in uploads if missing & keys]
    uncovered = missing - set().union(*(keys for _, _, keys in uploads))
    if uncovered:
        pending = [(k, keyed[k]) for k in sorted(uncovered)]
        upload_id = await _upload(asker, state, pending, label)
        uploads.append((upload_id, {}, {k for k, _ in pending}))
    for upload_id, record, keys in uploads:
        waiting[await _batch_for(asker, state, upload_id, record)] = (upload_id, keys)

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
                upload_id, keys = waiting[batch_id]
                state.update(upload_id, status=batch.status)
                if batch.status not in FINISHED:
                    continue
                await _collect(asker, batch, errors)
                if batch.status != "completed":
                    for key in keys:
                        errors.setdefault(key, f"batch {batch_id} {batch.status}")
                state.update(upload_id, collected=True, collected_at=time.time())
                done = waiting.pop(batch_id)[1] & missing
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

    outcomes, still = answer_from_cache(asker, [request for _, request in misses])
    asker.cache_hits -= len(outcomes)  # the second cache pass is collection, not a hit
    # One outcome per request, in order (entities with identical prompts share a key).
    by_request = {id(o.request): o for o in [*hits, *outcomes]}
    for key, request in still:
        reason = errors.get(key, "no answer in the batch output")
        by_request[id(request)] = Outcome(request, None, reason=reason)
    return [by_request[id(r)] for r in requests]
