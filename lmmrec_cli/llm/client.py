"""Chat completions against OpenAI or any OpenAI-compatible server (vLLM, Ollama, llama.cpp).

The official ``openai`` client (AsyncOpenAI) does the HTTP work and its own retries: 408, 409,
429 and 5xx answers and timeouts are retried ``max_retries`` times, waiting what the server's
``Retry-After`` / ``retry-after-ms`` header says (up to two minutes), else exponential backoff.
On top of it this module adds what the client does not: bounded concurrency, requests/tokens
per minute limits, the structured-output fallback, and token accounting.

Structured output: the first call asks for ``response_format={"type": "json_schema", ...}``.
A server that refuses it (a 400/422 whose message names the response format) is asked again
with ``json_object``, then with no response_format at all (plain text, parsed robustly); the
fallback is remembered for the rest of the run so the refusal is paid for once.

The API key comes from an environment variable and lives only in the client object; it is
never part of a cache key, a manifest, a log line or an error message (``redact``).
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lmmrec_cli.errors import LmmrecError, UsageError
from lmmrec_cli.llm.limits import RateLimiter, estimate_tokens
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
FORMAT_MODES = ("json_schema", "json_object", "text")
_FORMAT_REFUSAL = re.compile(r"response_format|json_schema|json_object|structured|schema", re.I)


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
    """One request failed for good (after the client's retries); the message is redacted."""


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
    http_attempts: int = 0  # HTTP requests sent, the client's own retries included
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
        self._semaphore = asyncio.Semaphore(max(1, settings.concurrency))
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

    async def complete(self, messages: list[dict[str, str]]) -> ChatReply:
        """One answer, or :class:`CallError` / :class:`FatalCallError`."""
        import openai

        client = self.openai
        estimate = sum(estimate_tokens(m["content"]) for m in messages) + self.settings.max_tokens
        async with self._semaphore:
            await self._limiter.acquire(estimate)
            while True:
                mode = self._modes[0]
                body: dict[str, Any] = {"messages": messages, **self.settings.request_parameters()}
                response_format = self.response_format_for(mode)
                if response_format is not None:
                    body["response_format"] = response_format
                self.stats.requests += 1
                try:
                    # The client's generic POST (its documented way to call any endpoint; its
                    # retries, Retry-After handling, timeouts and typed errors all apply) with
                    # the body as the plain JSON it already is, and the reply as plain JSON
                    # (cast_to=object). chat.completions.create would walk the request through
                    # its TypedDict transform and build a pydantic ChatCompletion: 0.4-0.9 ms
                    # of CPU per call together, a sixth of the client's cost (bench_llm.md).
                    completion = await client.post(
                        "/chat/completions",
                        cast_to=object,
                        body={"model": self.settings.model, **body},
                    )
                except (openai.BadRequestError, openai.UnprocessableEntityError) as error:
                    if mode != "text" and _FORMAT_REFUSAL.search(str(error.message)):
                        if self._downgrade(mode, error):
                            continue
                    raise CallError(self.reason(error)) from None
                except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
                    raise FatalCallError(
                        f"the server refused the credentials ({self.reason(error)})",
                        hint=f"check the key in ${self.settings.api_key_env} and --base-url",
                    ) from None
                except openai.NotFoundError as error:
                    raise FatalCallError(
                        f"model {self.settings.model!r} or endpoint not found ({self.reason(error)})",
                        hint="check --model and --base-url (it usually ends in /v1)",
                    ) from None
                except openai.OpenAIError as error:
                    raise CallError(self.reason(error)) from None
                return self._reply(completion, mode)

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
