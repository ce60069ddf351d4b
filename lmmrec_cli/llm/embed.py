"""``lmmrec embed``: motivation texts → vectors aligned with the dataset's user and item ids.

Backends (``backends_embed.py`` holds the encoders):

``tfidf``                  TF-IDF + truncated SVD over all texts of the run: offline,
                           deterministic, always available (the default).
``openai``                 the embeddings endpoint (default text-embedding-3-large, the paper's),
                           ``--dimensions`` to shorten; batched and cached per text.
``sentence-transformers``  a local model path or an installed model package, fully offline;
                           an optional extra (imported only when chosen); cached per text.

Row ``u`` of ``users.npy`` is user index ``u`` of the dataset (likewise items). An entity with
no motivation (a recorded failure) or an empty text gets a zero row and ``True`` in the
``*_missing.npy`` mask, so nothing is silently shifted or dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lmmrec_cli.console import SILENT, Progress
from lmmrec_cli.data.dataset import PreparedDataset
from lmmrec_cli.embeddings import REFUSE_MISSING, WARN_MISSING, TextVectors, write_vectors
from lmmrec_cli.errors import UsageError
from lmmrec_cli.llm.backends_embed import (
    BACKENDS,
    TFIDF_DIM,
    EmbedSettings,
    EncoderStats,
    default_model,
    make_encoder,
)
from lmmrec_cli.motivations import read_motivations
from lmmrec_cli.workspace import ArtifactRef, Workspace

FIELDS = ("summary", "all")

__all__ = ["EmbedSettings", "EmbedResult", "embed"]


@dataclass
class EmbedResult:
    ref: ArtifactRef
    reused: bool
    counts: dict[str, Any]
    stats: dict[str, Any]


def _dataset_of(ws: Workspace, motivations: ArtifactRef) -> PreparedDataset:
    for parent in motivations.manifest().get("parents", []):
        if parent.get("kind") == "datasets":
            found = ws.find("datasets", parent["name"], parent["version"])
            if found is None:
                raise UsageError(
                    f"{motivations.label} was built from datasets/{parent['name']}@{parent['version']}, "
                    "which is no longer in the workspace",
                    hint="re-run `lmmrec prepare` for it, or motivate the current dataset version",
                )
            return PreparedDataset(found)
    raise UsageError(f"{motivations.label} names no dataset as its parent; cannot align ids")


def _texts(ref: ArtifactRef, kind: str, count: int, fields: str) -> list[str]:
    texts = [""] * count
    for motivation in read_motivations(ref, kind):
        if 0 <= motivation.index < count:
            texts[motivation.index] = motivation.text(fields).strip()
    return texts


def _l2_normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def embed(
    ws: Workspace,
    motivations_reference: str,
    name: str | None,
    settings: EmbedSettings,
    progress: Progress = SILENT,
) -> EmbedResult:
    if settings.backend not in BACKENDS:
        raise UsageError(f"--backend {settings.backend!r}: use one of {', '.join(BACKENDS)}")
    if settings.fields not in FIELDS:
        raise UsageError(f"--fields {settings.fields!r}: use summary or all")
    if settings.model is None:  # key on the concrete model, not on "the default"
        settings = replace(settings, model=default_model(settings.backend))
    if settings.backend == "tfidf" and settings.dimensions is None:
        settings = replace(settings, dimensions=TFIDF_DIM)
    motivations = _resolve_motivations(ws, motivations_reference)
    dataset = _dataset_of(ws, motivations)
    name = name or motivations.name
    key = {**settings.key(), "motivations": motivations.version}
    manifest_settings = {**key, "motivations": motivations.label, "dataset": dataset.ref.label}
    build = ws.build(
        "embeddings", name, key=key, settings=manifest_settings, parents=[motivations, dataset.ref]
    )
    with build:
        if build.reused:
            # Nothing was computed this run: the recorded statistics are the building run's.
            return EmbedResult(build.ref, True, build.ref.manifest().get("counts", {}), {})
        n_users, n_items = dataset.n_users, dataset.n_items
        item_texts = _texts(motivations, "item", n_items, settings.fields)
        user_texts = _texts(motivations, "user", n_users, settings.fields)
        all_texts = item_texts + user_texts
        present = [i for i, t in enumerate(all_texts) if t]
        if not present:
            raise UsageError(f"{motivations.label} has no text to embed")
        share = 1 - len(present) / len(all_texts)
        _check_missing_text(motivations.label, len(all_texts) - len(present), share, settings)
        stats = EncoderStats()
        encoder = make_encoder(ws, settings, stats)
        vectors = encoder.encode([all_texts[i] for i in present], progress)
        matrix = np.zeros((len(all_texts), vectors.shape[1]), dtype=np.float32)
        matrix[present] = vectors
        if settings.normalize:
            matrix = _l2_normalise(matrix)
        missing = np.ones(len(all_texts), dtype=bool)
        missing[present] = False
        write_vectors(
            build.dir,
            TextVectors(
                users=matrix[n_items:],
                items=matrix[:n_items],
                users_missing=missing[n_items:],
                items_missing=missing[:n_items],
            ),
        )
        build.counts.update(
            users=n_users,
            items=n_items,
            dim=int(matrix.shape[1]),
            users_missing=int(missing[n_items:].sum()),
            items_missing=int(missing[:n_items].sum()),
            missing_text_share=round(share, 4),
        )
        build.extra["embed"] = {**stats.as_dict(), "model": encoder.model_name}
    return EmbedResult(build.ref, False, dict(build.counts), build.extra["embed"])


def _resolve_motivations(ws: Workspace, reference: str) -> ArtifactRef:
    name = reference.partition("@")[0]
    if (
        "@" not in reference
        and name in ws.names("motivations")
        and ws.latest("motivations", name) is None
    ):
        raise UsageError(
            f"motivations/{name} has no complete version yet (a motivate run failed or is running)",
            hint=f"finish it first: rerun `lmmrec motivate` with the same options (answers so "
            f"far are cached), e.g. lmmrec motivate --dataset {name}",
        )
    return ws.resolve("motivations", reference)


def _check_missing_text(label: str, missing: int, share: float, settings: EmbedSettings) -> None:
    if share > REFUSE_MISSING and not settings.allow_missing_text:
        raise UsageError(
            f"{label}: {missing} of the rows ({share:.0%}) have no motivation text; their "
            "vectors would be zeros",
            hint="motivate the whole dataset (a --sample run covers a few entities only), or "
            "add --allow-missing-text to embed anyway (rows are marked missing)",
        )
    if share > WARN_MISSING:
        from lmmrec_cli.console import stderr

        stderr.print(
            f"[yellow]warning:[/] {label}: {missing} rows ({share:.0%}) have no motivation text; "
            "they get zero vectors marked missing"
        )
