"""Chat completions against OpenAI or any OpenAI-compatible server (vLLM, Ollama, llama.cpp).

The official ``openai`` client (AsyncOpenAI) does the HTTP work. This module adds what the
client does not: retries that tell causes apart (408, 409, 429, 5xx and timeouts are retried
``max_retries`` times, waiting what ``Retry-After`` / ``retry-after-ms`` says, up to two
minutes, else exponential backoff; a refused connection is not retried against a server never
reached, and a refused response format is not retried at all), requests in flight adapted to
the server's latency (``limits.AdaptiveLimit``), requests/tokens per minute limits, the
structured-output fallback, and token accounting.

Structured output: the first call asks for ``response_format={"type": "json_schema", ...}``
(OpenAI, vLLM). A server that refuses it — 400/422 from most, HTTP 500 from llama.cpp, told
apart by the message naming the response format — is asked at once, without spending a
retry, in llama.cpp's shape ``{"type": "json_object", "schema": ...}``, then with plain
``json_object``, then with no response_format (plain text, parsed robustly); the fallback is
remembered for the rest of the run so each refusal is paid for once.

The API key comes from an environment variable and lives only in the client object; it is
never part of a cache key, a manifest, a log line or an error message (``redact``).
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lmmrec_cli.errors import LmmrecError, UsageError
from lmmrec_cli.llm.limits import AdaptiveLimit, RateLimiter, estimate_tokens
from lmmrec_cli.llm.schema import JSON_SCHEMA, SCHEMA_NAME
from lmmrec_cli.redact import redact_text

if TYPE_CHECKING:
    import openai

# ``openai`` is imported where it is used, not here: importing it costs about a second, which
# every lmmrec command (and a fully cached rerun, which never calls) would otherwise pay.

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
# Local servers (vLLM, Ollama, llama.cpp) accept any bearer token; the client insists on one.
LOCAL_PLACEHOLDER_KEY = "no-key-needed"
# json_object_schema is llama.cpp's shape of schema-constrained decoding:
# {"type": "json_object", "schema": {...}} (it refuses "json_schema" with an HTTP 500).
FORMAT_MODES = ("json_schema", "json_object_schema", "json_object", "text")
_FORMAT_REFUSAL = re.compile(r"response_format|json_schema|json_object|structured|schema", re.I)
_RETRY_STATUS = (408, 409, 429)
_MAX_RETRY_WAIT = 120.0


def _is_format_refusal(error: openai.APIStatusError) -> bool:
    """A refusal of the response format, whatever the status: OpenAI and vLLM answer 400 or
    422, llama.cpp's server HTTP 500 ("Input should be 'text' or 'json_object'")."""
    if error.status_code not in (400, 422) and error.status_code < 500:
        return False
    return bool(_FORMAT_REFUSAL.search(str(error.message)))


def _retryable(status: int) -> bool:
    return status in _RETRY_STATUS or status >= 500


def _retry_delay(response: Any, attempt: int) -> float:
    """The server's Retry-After (retry-after-ms, seconds or an HTTP date), else exponential
    backoff with jitter: 0.5 s, 1 s, 2 s ... capped at 8 s (the openai client's schedule)."""
    headers = getattr(response, "headers", None) or {}
    try:
        if headers.get("retry-after-ms"):
            return min(float(headers["retry-after-ms"]) / 1000, _MAX_RETRY_WAIT)
        value = headers.get("retry-after")
        if value:
            try:
                return min(max(float(value), 0.0), _MAX_RETRY_WAIT)
            except ValueError:
                when = email.utils.parsedate_to_datetime(value).timestamp()
                return min(max(when - time.time(), 0.0), _MAX_RETRY_WAIT)
    except (TypeError, ValueError, OverflowError):
        pass
    return min(0.5 * 2 ** (attempt - 1), 8.0) * (1 - 0.25 * random.random())


class _Slot:
    def __init__(self, limit: AdaptiveLimit) -> None:
        self.limit = limit

    async def __aenter__(self) -> None:
        await self.limit.acquire()

    async def __aexit__(self, *exc: object) -> None:
        await self.limit.release()


@dataclass(frozen=True)
class ChatSettings:
    """How to reach the model and how hard to push it. Only ``request_parameters`` shape the
    answer (and the cache key); the rest is transport."""

    model: str = DEFAULT_MODEL
    base_url: str | None = None
    api_key_env: str = DEFAULT_KEY_ENV
    concurrency: int = 16
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_retries: int = 6
    timeout: float = 120.0
    temperature: float = 0.0
    max_tokens: int = 800
    seed: int | None = None
    response_format: str = "auto"  # auto (json_schema → json_object → text) or one mode

    def request_parameters(self) -> dict[str, Any]:
        params: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.seed is not None:
            params["seed"] = self.seed
        return params

    def describe(self) -> dict[str, Any]:
        """Settings fit for a manifest: the base URL without credentials, no key."""
        return {
            "model": self.model,
            "base_url": redact_text(self.base_url) if self.base_url else None,
            "api_key_env": self.api_key_env,
            "concurrency": self.concurrency,
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "max_retries": self.max_retries,
            "timeout": self.timeout,
            "response_format": self.response_format,
            **self.request_parameters(),
        }


def resolve_api_key(api_key_env: str, base_url: str | None) -> str:
    key = os.environ.get(api_key_env, "").strip()
    if key:
        return key
    if base_url:
        return LOCAL_PLACEHOLDER_KEY
    raise UsageError(
        f"no API key: environment variable {api_key_env} is not set",
        hint=f"export {api_key_env}=..., name another variable with --api-key-env, give "
        "--base-url for a local server, or use --backend extractive (no LLM)",
    )


def has_credentials(api_key_env: str, base_url: str | None) -> bool:
    return bool(base_url) or bool(os.environ.get(api_key_env, "").strip())


class CallError(Exception):
    """One request failed for good (after the retries); the message is redacted. ``kind``
    groups the reasons (connection, timeout, HTTP 500, ...) so that a failure every entity
    shares is seen as one cause."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind


class FatalCallError(LmmrecError):
    """A failure no other request can escape (bad key, unknown model): stop the run."""


@dataclass
class ChatReply:
    content: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    format: str
    finish_reason: str | None = None


@dataclass
class CallStats:
    requests: int = 0  # chat completions asked for (a repair counts as one more)
    http_attempts: int = 0  # HTTP requests answered, retries and refusals included
    retries: int = 0  # 429/5xx/timeouts sent again
    connection_failures: int = 0
    answered: int = 0
    latency_total: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    format_fallbacks: list[str] = field(default_factory=list)


def error_reason(error: BaseException, secret: str | None = None) -> str:
    """One redacted line saying why a request failed."""
    import openai

    if isinstance(error, openai.APITimeoutError):
        text = "timed out (after the client's retries)"
    elif isinstance(error, openai.APIStatusError):
        text = f"HTTP {error.status_code}: {error.message}"
    elif isinstance(error, openai.APIConnectionError):
        cause = error.__cause__
        text = f"connection failed: {cause or error}"
    else:
        text = f"{type(error).__name__}: {error}"
    text = " ".join(text.split())[:300]
    if secret and secret != LOCAL_PLACEHOLDER_KEY:
        text = text.replace(secret, "***")
    return redact_text(text)


def make_openai_client(
    settings: ChatSettings, api_key: str, stats: CallStats | None = None
) -> openai.AsyncOpenAI:
    import httpx2
    import openai

    async def count_attempt(response: httpx2.Response) -> None:
        if stats is not None:
            stats.http_attempts += 1

    # Keep-alive for at least one connection per concurrent request, so every request after
    # the first wave reuses a connection (the client's default keeps 100 and would reconnect
    # beyond that; a new TCP connection per call costs CPU on both ends).
    slots = max(1, settings.concurrency)
    http_client = openai.DefaultAsyncHttpxClient(
        timeout=httpx2.Timeout(settings.timeout, connect=min(settings.timeout, 10.0)),
        limits=httpx2.Limits(
            max_connections=max(1000, slots), max_keepalive_connections=max(100, slots)
        ),
        event_hooks={"response": [count_attempt]},
    )
    return openai.AsyncOpenAI(
        api_key=api_key,
        base_url=settings.base_url,
        max_retries=settings.max_retries,
        timeout=settings.timeout,
        http_client=http_client,
    )


def _count(value: Any) -> int:
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError):
        return 0


class ChatClient:
    """Sends chat completions within the concurrency and rate limits."""

    def __init__(self, settings: ChatSettings, client: openai.AsyncOpenAI | None = None) -> None:
        self.settings = settings
        self.stats = CallStats()
        self._api_key = resolve_api_key(settings.api_key_env, settings.base_url)
        self._client = client  # made on first use: a fully cached run never needs one
        self.limit = AdaptiveLimit(settings.concurrency, settings.timeout)
        self.warn: Callable[[str], None] | None = None  # where the queueing warning goes
        self._warned = False
        self._format_settled: asyncio.Event | None = None  # made inside the event loop
        self._probing = False
        self._limiter = RateLimiter(settings.requests_per_minute, settings.tokens_per_minute)
        if settings.response_format == "auto":
            self._modes = list(FORMAT_MODES)
        elif settings.response_format in FORMAT_MODES:
            self._modes = [settings.response_format]
        else:
            raise UsageError(
                f"--response-format {settings.response_format!r}: use auto, "
                + ", ".join(FORMAT_MODES)
            )

    @property
    def openai(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = make_openai_client(self.settings, self._api_key, self.stats)
        return self._client

    @property
    def format_mode(self) -> str:
        return self._modes[0]

    def reason(self, error: BaseException) -> str:
        return error_reason(error, self._api_key)

    def response_format_for(self, mode: str) -> dict[str, Any] | None:
        if mode == "json_schema":
            return {
                "type": "json_schema",
                "json_schema": {"name": SCHEMA_NAME, "schema": JSON_SCHEMA, "strict": True},
            }
        if mode == "json_object_schema":
            return {"type": "json_object", "schema": JSON_SCHEMA}
        if mode == "json_object":
            return {"type": "json_object"}
        return None

    def _downgrade(self, refused: str, error: Any) -> bool:
        """Drop a refused response format for the rest of the run; False if none is left."""
        if self._modes[0] == refused and len(self._modes) > 1:
            self._modes.pop(0)
            self.stats.format_fallbacks.append(
                f"{refused} -> {self._modes[0]}: {self.reason(error)}"
            )
        return self._modes[0] != refused

    def slot(self) -> _Slot:
        """``async with chat.slot():`` holds one of the in-flight places for an entity's whole
        ask → repair, so an entity that started finishes before new ones start."""
        return _Slot(self.limit)

    async def complete(self, messages: list[dict[str, str]]) -> ChatReply:
        """One answer, or :class:`CallError` / :class:`FatalCallError`. Call it inside
        :meth:`slot`; this method spends the rate limits and the retries."""

        client = self.openai
        estimate = sum(estimate_tokens(m["content"]) for m in messages) + self.settings.max_tokens
        await self._limiter.acquire(estimate)
        self.stats.requests += 1
        # Until one request has shown which response format the server takes, the others
        # wait: a refusing server then refuses once, not once per request in flight.
        probe = False
        if self._format_settled is None:
            self._format_settled = asyncio.Event()
            if len(self._modes) == 1:
                self._format_settled.set()
        if not self._format_settled.is_set():
            if self._probing:
                await self._format_settled.wait()
            else:
                self._probing = probe = True
        try:
            return await self._complete(client, messages)
        finally:
            if probe:
                self._format_settled.set()

    async def _complete(self, client: openai.AsyncOpenAI, messages: list[dict[str, str]]) -> ChatReply:
        import openai

        retries = 0
        reconnected = False
        while True:
            mode = self._modes[0]
            body: dict[str, Any] = {"messages": messages, **self.settings.request_parameters()}
            response_format = self.response_format_for(mode)
            if response_format is not None:
                body["response_format"] = response_format
            started = time.monotonic()
            try:
                # The client's generic POST (its documented way to call any endpoint; its
                # timeouts and typed errors apply) with the body as the plain JSON it already
                # is, and the reply as plain JSON (cast_to=object): chat.completions.create
                # would walk the request through its TypedDict transform and build a pydantic
                # ChatCompletion, a sixth of the client's cost (bench_llm.md). Retries are
                # ours (max_retries=0 here): a refused response format must not spend them,
                # and a connection refusal is not a rate limit.
                completion = await client.post(
                    "/chat/completions",
                    cast_to=object,
                    body={"model": self.settings.model, **body},
                    options={"max_retries": 0},
                )
            except openai.APITimeoutError as error:
                self.limit.timed_out(started)
                self._warn_queueing()
                if retries < self.settings.max_retries:
                    retries += 1
                    self.stats.retries += 1
                    continue
                raise CallError(
                    f"timed out after {self.settings.timeout:g}s "
                    f"({retries + 1} attempts)",
                    kind="timeout",
                ) from error
            except openai.APIConnectionError as error:
                self.stats.connection_failures += 1
                # A server that answered before may have dropped a keep-alive connection: one
                # quick second try. A server never reached is not retried: a refused
                # connection is no rate limit, and the run stops on it (runner.py).
                if not reconnected and self.stats.answered:
                    reconnected = True
                    await asyncio.sleep(0.2)
                    continue
                raise CallError(self.reason(error), kind="connection") from None
            except openai.APIStatusError as error:
                if mode != "text" and _is_format_refusal(error):
                    # 400/422 from OpenAI and vLLM, HTTP 500 from llama.cpp: recognised by its
                    # message, downgraded at once, never retried in the refused shape.
                    if self._downgrade(mode, error):
                        continue
                    raise CallError(self.reason(error), kind="response format") from None
                status = error.status_code
                if status in (401, 403):
                    raise FatalCallError(
                        f"the server refused the credentials ({self.reason(error)})",
                        hint=f"check the key in ${self.settings.api_key_env} and --base-url",
                    ) from None
                if status == 404:
                    raise FatalCallError(
                        f"model {self.settings.model!r} or endpoint not found ({self.reason(error)})",
                        hint="check --model and --base-url (it usually ends in /v1)",
                    ) from None
                if _retryable(status) and retries < self.settings.max_retries:
                    retries += 1
                    self.stats.retries += 1
                    await asyncio.sleep(_retry_delay(error.response, retries))
                    continue
                raise CallError(self.reason(error), kind=f"HTTP {status}") from None
            except openai.OpenAIError as error:
                raise CallError(self.reason(error)) from None
            latency = time.monotonic() - started
            self.stats.latency_total += latency
            self.stats.answered += 1
            self.limit.answered(latency, started)
            self._warn_queueing()
            return self._reply(completion, mode)

    def _warn_queueing(self) -> None:
        """Say once when --concurrency answers in a row would not fit in --timeout."""
        latency = self.limit.min_latency
        if self._warned or self.warn is None or latency is None:
            return
        if self.settings.concurrency * latency > self.settings.timeout:
            self._warned = True
            self.warn(
                f"--concurrency {self.settings.concurrency} × {latency:.1f}s per answer exceeds "
                f"--timeout {self.settings.timeout:g}s: a server that answers one request at a "
                "time would let queued requests time out and be sent again; lmmrec keeps fewer "
                "in flight (now "
                f"{int(self.limit.limit)}). For a local server set --concurrency to its parallel "
                "slots (llama.cpp --parallel, OLLAMA_NUM_PARALLEL) and --timeout above "
                "slots × seconds per answer"
            )

    def _reply(self, completion: Any, mode: str) -> ChatReply:
        """The parts of a chat.completion JSON object lmmrec uses; anything missing or of the
        wrong type (a non-conforming server) reads as empty, and validation reports it."""
        data = completion if isinstance(completion, dict) else {}
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        prompt_tokens = _count(usage.get("prompt_tokens"))
        completion_tokens = _count(usage.get("completion_tokens"))
        self.stats.tokens_in += prompt_tokens
        self.stats.tokens_out += completion_tokens
        choices = data.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else {}
        choice = choice if isinstance(choice, dict) else {}
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        # A refusal (message.refusal, no content) is no answer; validation reports it.
        content = message.get("content")
        return ChatReply(
            content=content if isinstance(content, str) else "",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            model=str(data.get("model") or self.settings.model),
            format=mode,
            finish_reason=choice.get("finish_reason"),
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
