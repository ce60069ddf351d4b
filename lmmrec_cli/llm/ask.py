"""One entity's question: look in the cache, else ask, validate, repair once, store.

A request is described by :class:`EntityRequest`; its cache key hashes the model, the
messages, the answer-shaping parameters and the template hash. A valid answer is written to
the cache the moment it arrives (before any other bookkeeping), so a killed run loses at most
the answers that were still in flight. Invalid answers are not cached: a rerun asks again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from lmmrec_cli.llm.cache import AnswerCache, request_key
from lmmrec_cli.llm.client import CallError, ChatClient, ChatSettings
from lmmrec_cli.llm.prompts import PromptSet
from lmmrec_cli.llm.schema import Answer, AnswerError, parse_answer, validate_answer

# Bumped when the answer format or its validation changes meaning.
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class EntityRequest:
    kind: str  # "item" | "user"
    index: int
    entity_id: str
    messages: tuple[tuple[str, str], ...]  # (role, content)
    template_hash: str

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def canonical(self, settings: ChatSettings) -> dict[str, Any]:
        """Everything that determines the answer, and nothing secret."""
        return {
            "endpoint": "chat.completions",
            "model": settings.model,
            "messages": self.message_dicts(),
            "parameters": settings.request_parameters(),
            "template": self.template_hash,
            "schema": SCHEMA_VERSION,
        }

    def key(self, settings: ChatSettings) -> str:
        return request_key(self.canonical(settings))


@dataclass
class Outcome:
    request: EntityRequest
    answer: Answer | None
    reason: str = ""
    cached: bool = False
    model: str = ""
    kind: str = ""  # the failure's cause, shared by failures of one cause (CallError.kind)


def cached_answer(cache: AnswerCache, key: str) -> tuple[Answer, str] | None:
    stored = cache.get(key)
    if stored is None:
        return None
    try:
        return validate_answer(stored["answer"]), str(stored.get("model", ""))
    except (AnswerError, KeyError):
        return None  # an entry written by an incompatible version: ask again


def store_answer(
    cache: AnswerCache, key: str, answer: Answer, *, model: str, via: str, usage: dict[str, int]
) -> None:
    cache.set(
        key,
        {
            "answer": answer.to_json(),
            "model": model,
            "via": via,
            "usage": usage,
            "stored_at": time.time(),
        },
    )


def _explain(error: AnswerError, finish_reason: str | None) -> AnswerError:
    if finish_reason == "length":  # the JSON was cut off, not malformed
        return AnswerError(f"{error} (the answer was cut off at the token limit: raise --max-tokens)")
    return error


class Asker:
    """Answers entity requests through the cache and a chat client."""

    def __init__(self, chat: ChatClient, cache: AnswerCache, prompts: PromptSet) -> None:
        self.chat = chat
        self.cache = cache
        self.prompts = prompts
        self.cache_hits = 0
        self.repairs = 0

    async def fetch(self, request: EntityRequest, key: str) -> Outcome:
        """Ask the model without looking in the cache first (the caller did, under ``key``)."""
        messages = request.message_dicts()
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        try:
            reply = await self.chat.complete(messages)
            usage["prompt_tokens"] += reply.prompt_tokens
            usage["completion_tokens"] += reply.completion_tokens
            try:
                answer = parse_answer(reply.content)
            except AnswerError as error:
                first_error = _explain(error, reply.finish_reason)
                # Feed the problem back once; a second bad answer is a recorded failure.
                self.repairs += 1
                repair = self.prompts.render("repair", error=str(first_error))
                follow_up = messages + [
                    {"role": "assistant", "content": reply.content or "(empty)"},
                    {"role": "user", "content": repair},
                ]
                reply = await self.chat.complete(follow_up)
                usage["prompt_tokens"] += reply.prompt_tokens
                usage["completion_tokens"] += reply.completion_tokens
                try:
                    answer = parse_answer(reply.content)
                except AnswerError as error:
                    second_error = _explain(error, reply.finish_reason)
                    return Outcome(
                        request,
                        None,
                        reason=f"invalid answer twice: {first_error}; then {second_error}",
                        kind="invalid answer",
                    )
        except CallError as error:
            return Outcome(request, None, reason=str(error), kind=error.kind)
        store_answer(self.cache, key, answer, model=reply.model, via="online", usage=usage)
        return Outcome(request, answer, model=reply.model)
