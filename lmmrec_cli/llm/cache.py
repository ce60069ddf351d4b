"""The disk cache of paid answers (chat completions and embeddings).

``diskcache`` (SQLite + files) is safe across threads and processes and commits each ``set``
before it returns, so an answer stored the moment it arrives survives a crash or a kill.
``eviction_policy="none"`` with no size limit: a paid answer is never evicted.

Keys are the SHA-256 of the canonical request: model, messages, parameters and the template
hash — never the API key, never the base URL (which may carry credentials), never anything
that only affects transport (timeouts, response_format fallbacks). The same request sent to
another OpenAI-compatible server therefore hits the same entry; use a different ``--model``
name to keep two servers' answers apart.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import diskcache

from lmmrec_cli.workspace import Workspace, canonical_json

CACHE_SUBDIR = "llm"


def request_key(request: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a request description."""
    return hashlib.sha256(canonical_json(request).encode("utf-8")).hexdigest()


def cache_dir(workspace: Workspace) -> Path:
    return workspace.cache_dir / CACHE_SUBDIR


class AnswerCache:
    """Maps request keys to stored answers (plain JSON-able dicts)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        # size_limit is irrelevant with eviction "none" but set high so no cull is attempted.
        self._cache = diskcache.Cache(
            str(self.directory), eviction_policy="none", size_limit=2**62, statistics=False
        )

    @classmethod
    def for_workspace(cls, workspace: Workspace) -> AnswerCache:
        return cls(cache_dir(workspace))

    def get(self, key: str) -> dict[str, Any] | None:
        value = self._cache.get(key, default=None)
        return value if isinstance(value, dict) else None

    def __contains__(self, key: str) -> bool:
        return key in self._cache

    def set(self, key: str, value: dict[str, Any]) -> None:
        self._cache.set(key, value)

    def close(self) -> None:
        self._cache.close()

    def __enter__(self) -> AnswerCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._cache)
