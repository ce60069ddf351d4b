"""``lmmrec prepare --format rlmrec DIR``: a released RLMRec split → workspace artifacts.

Writes up to three artifacts, all named after the dataset:

- ``datasets/<name>``: the split exactly as released (no filtering, no re-splitting); users and
  items keep RLMRec's indices, with the raw ids from ``--mapper`` files or the indices as strings.
  The release has no ratings, timestamps or reviews; with ``--reviews`` / ``--meta`` the raw
  dumps' review texts (tagged with each interaction's split) and item texts are joined on by the
  mapper's ids (:mod:`lmmrec_cli.data.rlmrec_text`), while ``interactions.parquet`` and
  ``users.parquet`` stay byte-identical to the plain import;
- ``motivations/<name>`` (when ``usr_prf.pkl`` / ``itm_prf.pkl`` exist): each LLM profile as a
  :class:`~lmmrec_cli.motivations.Motivation` with ``summary`` = profile, ``reasoning`` = reasoning,
  ``source`` = ``imported:rlmrec``; a missing profile is listed in ``failures.jsonl``;
- ``embeddings/<name>`` (when ``usr_emb_np.pkl`` / ``itm_emb_np.pkl`` exist): the text vectors, rows
  aligned with the dataset's indices; all-zero rows are marked missing.

Versions hash the input files (and the parent versions), so re-running is a no-op that loads no
pickle. When something must be built, every file is loaded and checked first, so a bad profile or
vector file fails the import before any artifact is committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lmmrec_cli.console import SILENT, Progress
from lmmrec_cli.data.badlines import BadLines
from lmmrec_cli.data.dataset import (
    INTERACTIONS_FILE,
    INTERACTIONS_SCHEMA,
    ITEMS_FILE,
    ITEMS_SCHEMA,
    REVIEWS_FILE,
    REVIEWS_SCHEMA,
    SPLITS,
    USERS_FILE,
    USERS_SCHEMA,
    write_table,
)
from lmmrec_cli.data.rlmrec_mapper import resolve_mappers
from lmmrec_cli.data.rlmrec_source import (
    PROFILE_FILES,
    RlmrecData,
    RlmrecFiles,
    find_files,
    load,
    split_shape,
)
from lmmrec_cli.data.rlmrec_text import JOIN_VERSION, JoinedText, TextSources, join_text
from lmmrec_cli.embeddings import TextVectors, write_vectors
from lmmrec_cli.motivations import FAILURES_FILE, Motivation, write_motivations
from lmmrec_cli.motivations import ITEMS_FILE as MOTIVATION_ITEMS_FILE
from lmmrec_cli.motivations import USERS_FILE as MOTIVATION_USERS_FILE
from lmmrec_cli.workspace import ArtifactBuild, ArtifactRef, Workspace, atomic_write_text

FORMAT_NAME = "rlmrec"
SOURCE = "imported:rlmrec"
# Bump when the importer writes different content from the same files (changes every version).
IMPORTER_VERSION = 1


@dataclass
class RlmrecImport:
    dataset: ArtifactRef
    motivations: ArtifactRef | None
    embeddings: ArtifactRef | None
    reused: bool  # every artifact existed already
    counts: dict[str, Any]  # the dataset's counts, plus "motivations" / "embeddings" when built


def import_rlmrec(
    workspace: Workspace,
    directory: Path,
    *,
    name: str,
    mapper_paths: list[Path],
    text: TextSources = TextSources((), ()),
    bad_lines: BadLines | None = None,
    progress: Progress = SILENT,
) -> RlmrecImport:
    mappers = resolve_mappers(mapper_paths, Path(directory), lambda: split_shape(directory))
    files = find_files(directory, mappers)
    dataset_build = _dataset_build(workspace, files, name, text)
    motivations_build = _motivations_build(workspace, files, name, dataset_build.ref)
    embeddings_build = _embeddings_build(
        workspace,
        files,
        name,
        [dataset_build.ref] + ([motivations_build.ref] if motivations_build else []),
    )
    builds = [b for b in (dataset_build, motivations_build, embeddings_build) if b is not None]

    loaded: list[RlmrecData] = []

    def data() -> RlmrecData:
        if not loaded:
            progress.note(f"loading {files.directory} (restricted unpickler) ...")
            loaded.append(load(files))
        return loaded[0]

    if not all(workspace.find(b.kind, b.name, b.version) for b in builds):
        data()  # check every file before the first artifact is committed

    def write_dataset(d: RlmrecData) -> dict[str, Any]:
        joined = join_text(d, text, bad_lines or BadLines("skip"), progress) if text else None
        return _write_dataset(d, files, dataset_build, joined)

    counts = dict(_run(dataset_build, write_dataset, data))
    if motivations_build is not None:
        counts["motivations"] = _run(
            motivations_build, lambda d: _write_motivations(d, files, motivations_build), data
        )
    if embeddings_build is not None:
        counts["embeddings"] = _run(
            embeddings_build, lambda d: _write_embeddings(d, embeddings_build), data
        )
    return RlmrecImport(
        dataset=dataset_build.ref,
        motivations=motivations_build.ref if motivations_build else None,
        embeddings=embeddings_build.ref if embeddings_build else None,
        reused=all(b.reused for b in builds),
        counts=counts,
    )


def _run(
    build: ArtifactBuild,
    write: Callable[[RlmrecData], dict[str, Any]],
    data: Callable[[], RlmrecData],
) -> dict[str, Any]:
    with build:
        if build.reused:
            return dict(build.ref.manifest()["counts"])
        build.counts.update(write(data()))
    return dict(build.counts)


# -- the three builds: what determines each version ------------------------------------------


def _dataset_build(
    workspace: Workspace, files: RlmrecFiles, name: str, text: TextSources
) -> ArtifactBuild:
    inputs = [workspace.fingerprint(path, f"split:{split}") for split, path in files.splits.items()]
    inputs += [
        workspace.fingerprint(path, f"mapper:{side}")
        for side, path in sorted(files.mappers.items())
    ]
    original_ids = {
        side: files.mappers[side].name if side in files.mappers else None
        for side in ("user", "item")
    }
    key: dict[str, Any] = {"format": FORMAT_NAME, "importer": IMPORTER_VERSION}
    settings: dict[str, Any] = {
        "format": FORMAT_NAME,
        "importer": IMPORTER_VERSION,
        "split": "as released",
        "original_ids": original_ids,
    }
    if text:
        # Without dumps the key is the plain import's, so existing versions are found again.
        key["text_join"] = settings["text_join"] = JOIN_VERSION
        for role, paths in text.files().items():
            inputs += [workspace.fingerprint(path, role) for path in paths]
    return workspace.build("datasets", name, key=key, settings=settings, inputs=inputs)


def _motivations_build(
    workspace: Workspace, files: RlmrecFiles, name: str, dataset: ArtifactRef
) -> ArtifactBuild | None:
    if not files.profiles:
        return None
    inputs = [
        workspace.fingerprint(path, f"profiles:{side}")
        for side, path in sorted(files.profiles.items())
    ]
    return workspace.build(
        "motivations",
        name,
        key={"source": SOURCE, "importer": IMPORTER_VERSION},
        settings={
            "source": SOURCE,
            "importer": IMPORTER_VERSION,
            "fields": {"summary": "profile", "reasoning": "reasoning"},
        },
        parents=[dataset],
        inputs=inputs,
    )


def _embeddings_build(
    workspace: Workspace, files: RlmrecFiles, name: str, parents: list[ArtifactRef]
) -> ArtifactBuild | None:
    if not files.embeddings:
        return None
    inputs = [
        workspace.fingerprint(path, f"vectors:{side}")
        for side, path in sorted(files.embeddings.items())
    ]
    return workspace.build(
        "embeddings",
        name,
        key={"source": SOURCE, "importer": IMPORTER_VERSION},
        # RLMRec's release does not record its embedding model or normalisation; nothing is guessed.
        settings={
            "backend": SOURCE,
            "model": None,
            "normalised": None,
            "fields": "profile",
            "importer": IMPORTER_VERSION,
        },
        parents=parents,
        inputs=inputs,
    )


# -- writers -----------------------------------------------------------------------------------


def _write_dataset(
    data: RlmrecData, files: RlmrecFiles, build: ArtifactBuild, text: JoinedText | None
) -> dict[str, Any]:
    users = np.concatenate([data.splits[s].users for s in SPLITS])
    items = np.concatenate([data.splits[s].items for s in SPLITS])
    codes = np.concatenate(
        [np.full(len(data.splits[s].users), k, dtype=np.int8) for k, s in enumerate(SPLITS)]
    )
    order = np.lexsort((items, users))  # rows sorted by (user, item), as every dataset is
    n = len(order)
    interactions = pa.table(
        {
            "user": pa.array(users[order].astype(np.int32)),
            "item": pa.array(items[order].astype(np.int32)),
            "split": pa.array(np.asarray(SPLITS, dtype=object)[codes[order]], type=pa.string()),
            # Matrix values are presence flags, not ratings; the release has no times.
            "rating": pa.nulls(n, pa.float32()),
            "timestamp": pa.nulls(n, pa.int64()),
        },
        schema=INTERACTIONS_SCHEMA,
    )
    write_table(interactions, build.dir / INTERACTIONS_FILE)
    write_table(
        pa.table(
            {"user": pa.array(np.arange(data.n_users, dtype=np.int32)), "user_id": data.user_ids},
            schema=USERS_SCHEMA,
        ),
        build.dir / USERS_FILE,
    )
    empty = [""] * data.n_items
    write_table(
        pa.table(
            {
                "item": pa.array(np.arange(data.n_items, dtype=np.int32)),
                "item_id": data.item_ids,
                "title": text.titles if text else empty,
                "text": text.texts if text else empty,
            },
            schema=ITEMS_SCHEMA,
        ),
        build.dir / ITEMS_FILE,
    )
    write_table(text.reviews if text else REVIEWS_SCHEMA.empty_table(), build.dir / REVIEWS_FILE)
    split_counts = {s: int(len(data.splits[s].users)) for s in SPLITS}
    build.extra["source"] = {"format": FORMAT_NAME, "directory": str(files.directory.resolve())}
    counts = {
        "users": data.n_users,
        "items": data.n_items,
        "interactions": split_counts,
        "density": sum(split_counts.values()) / (data.n_users * data.n_items),
        "original_ids": {side: m.id_field for side, m in data.mappers.items()},
        **data.checks(),
    }
    if text:
        counts["text"] = text.counts
    return counts


def _write_motivations(
    data: RlmrecData, files: RlmrecFiles, build: ArtifactBuild
) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    failures: list[dict[str, Any]] = []
    sides = {
        "user": (data.user_ids, MOTIVATION_USERS_FILE),
        "item": (data.item_ids, MOTIVATION_ITEMS_FILE),
    }
    for side, (ids, filename) in sides.items():
        profiles = data.profiles.get(side, {})
        reason = (
            f"no profile in {PROFILE_FILES[side]}"
            if side in files.profiles
            else f"no {PROFILE_FILES[side]} in the source"
        )
        motivations = []
        for index, entity_id in enumerate(ids):
            if index in profiles:
                profile, reasoning = profiles[index]
                motivations.append(
                    Motivation(
                        index, entity_id, summary=profile, reasoning=reasoning, source=SOURCE
                    )
                )
            else:
                failures.append({"kind": side, "index": index, "id": entity_id, "reason": reason})
        counts[f"{side}s"] = write_motivations(build.dir / filename, side, motivations)
        counts[f"{side}s_missing"] = len(ids) - counts[f"{side}s"]
    lines = [json.dumps(f, ensure_ascii=False, sort_keys=True) for f in failures]
    atomic_write_text(build.dir / FAILURES_FILE, "".join(line + "\n" for line in lines))
    return counts


def _write_embeddings(data: RlmrecData, build: ArtifactBuild) -> dict[str, Any]:
    users, items = data.vectors["user"], data.vectors["item"]
    vectors = TextVectors(users, items, ~users.any(axis=1), ~items.any(axis=1))
    write_vectors(build.dir, vectors)
    return {
        "users": int(users.shape[0]),
        "items": int(items.shape[0]),
        "dim": vectors.dim,
        "users_missing": int(vectors.users_missing.sum()),
        "items_missing": int(vectors.items_missing.sum()),
        "source_dtype": str(users.dtype),
    }
