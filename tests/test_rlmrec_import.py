"""``lmmrec prepare --format rlmrec``: a small RLMRec-format directory written here, imported."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import interactions_frame
from typer.testing import CliRunner

from lmmrec_cli.cli import app
from lmmrec_cli.data import rlmrec
from lmmrec_cli.data.dataset import PreparedDataset
from lmmrec_cli.data.pipeline import PrepareSettings
from lmmrec_cli.data.prepare import DemoSpec, prepare
from lmmrec_cli.embeddings import read_vectors
from lmmrec_cli.errors import InputError, UsageError
from lmmrec_cli.motivations import read_motivations
from lmmrec_cli.workspace import Workspace

N_USERS, N_ITEMS = 5, 4
# User 4 has test items only; item 3 appears in validation only: both must be kept as they are.
SPLIT_PAIRS = {
    "train": [(0, 0), (0, 1), (1, 1), (2, 2), (3, 0), (3, 2)],
    "valid": [(0, 3), (1, 0)],
    "test": [(0, 2), (2, 1), (4, 0), (4, 1)],
}
FILES = {"train": "trn_mat.pkl", "valid": "val_mat.pkl", "test": "tst_mat.pkl"}
USER_IDS = ["AU0", "AU1", "AU2", "AU3", "AU4"]
ITEM_IDS = ["B00", "B01", "B02", "B03"]


def _matrix(pairs: list[tuple[int, int]], shape=(N_USERS, N_ITEMS)) -> sp.coo_matrix:
    rows, cols = zip(*pairs, strict=True)
    return sp.coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=shape)


def _dump(path: Path, obj) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=4))


def write_rlmrec_dir(root: Path, *, profiles: bool = True, vectors: bool = True) -> Path:
    directory = root / "books"
    directory.mkdir(parents=True)
    for split, pairs in SPLIT_PAIRS.items():
        _dump(directory / FILES[split], _matrix(pairs))
    if profiles:
        # User 4 has no profile: it must be listed as a failure, not dropped silently.
        _dump(
            directory / "usr_prf.pkl",
            {u: {"profile": f"user {u} likes X", "reasoning": f"why {u}"} for u in range(4)},
        )
        _dump(
            directory / "itm_prf.pkl",
            {np.int64(i): {"profile": f"item {i} offers Y", "reasoning": ""} for i in range(4)},
        )
    if vectors:
        users = np.arange(N_USERS * 3, dtype=np.float64).reshape(N_USERS, 3) + 1
        users[4] = 0.0  # a user without text
        _dump(directory / "usr_emb_np.pkl", users)
        _dump(
            directory / "itm_emb_np.pkl",
            -np.arange(N_ITEMS * 3, dtype=np.float64).reshape(N_ITEMS, 3) - 1,
        )
    return directory


def write_mappers(directory: Path, prefix: str = "books") -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    users = directory / f"{prefix}_user.json"
    items = directory / f"{prefix}_item.json"
    # Written out of index order: the index key decides, not the line number.
    users.write_text(
        "\n".join(
            json.dumps({"uid": u, "reviewerID": USER_IDS[u]}) for u in reversed(range(N_USERS))
        )
    )
    items.write_text("\n".join(json.dumps({"iid": i, "asin": ITEM_IDS[i]}) for i in range(N_ITEMS)))
    return users, items


def run_import(ws: Workspace, directory: Path, *, mappers=(), name="books", **overrides):
    kwargs = dict(
        paths=[directory],
        meta=[],
        format_name="rlmrec",
        name=name,
        settings=PrepareSettings(),
        min_rating_given=False,
        mappers=list(mappers),
    )
    kwargs.update(overrides)
    return prepare(ws, **kwargs)


def test_split_is_preserved_exactly_with_original_ids(tmp_path: Path) -> None:
    directory = write_rlmrec_dir(tmp_path)
    ws = Workspace(tmp_path / "ws")
    result = run_import(ws, directory, mappers=write_mappers(tmp_path / "mapper"))
    dataset = PreparedDataset(result.ref)
    frame = interactions_frame(dataset)
    for split, pairs in SPLIT_PAIRS.items():
        got = frame[frame.split == split]
        assert sorted(zip(got.user.tolist(), got.item.tolist(), strict=True)) == sorted(pairs)
    assert list(zip(frame.user, frame.item, strict=True)) == sorted(
        zip(frame.user, frame.item, strict=True)
    )
    assert frame.rating.isna().all() and frame.timestamp.isna().all()
    assert dataset.users().user_id.tolist() == USER_IDS
    assert dataset.items().item_id.tolist() == ITEM_IDS
    assert dataset.reviews().empty
    counts = result.counts
    assert counts["interactions"] == {"train": 6, "valid": 2, "test": 4}
    assert (counts["users"], counts["items"]) == (N_USERS, N_ITEMS)
    assert counts["users_without_train"] == 1 and counts["items_without_train"] == 1
    assert counts["users_with_test"] == 3 and counts["users_with_valid"] == 2
    assert counts["original_ids"] == {"user": "reviewerID", "item": "asin"}


def test_profiles_and_vectors_become_aligned_child_artifacts(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    result = run_import(ws, write_rlmrec_dir(tmp_path), mappers=write_mappers(tmp_path / "mapper"))
    motivations_ref, embeddings_ref = result.derived
    assert (motivations_ref.kind, embeddings_ref.kind) == ("motivations", "embeddings")
    dataset_parent = result.ref.as_parent()
    assert motivations_ref.manifest()["parents"] == [dataset_parent]
    assert dataset_parent in embeddings_ref.manifest()["parents"]

    users = read_motivations(motivations_ref, "user")
    assert [(m.index, m.entity_id) for m in users] == [(u, USER_IDS[u]) for u in range(4)]
    assert users[2].summary == "user 2 likes X" and users[2].reasoning == "why 2"
    assert {m.source for m in users} == {"imported:rlmrec"}
    items = read_motivations(motivations_ref, "item")
    assert [m.summary for m in items] == [f"item {i} offers Y" for i in range(4)]
    failures = [
        json.loads(line)
        for line in (motivations_ref.path / "failures.jsonl").read_text().splitlines()
    ]
    assert failures == [
        {"kind": "user", "index": 4, "id": "AU4", "reason": "no profile in usr_prf.pkl"}
    ]

    vectors = read_vectors(embeddings_ref, N_USERS, N_ITEMS)
    expected_users = np.arange(N_USERS * 3, dtype=np.float32).reshape(N_USERS, 3) + 1
    expected_users[4] = 0
    np.testing.assert_array_equal(vectors.users, expected_users)
    np.testing.assert_array_equal(vectors.items[1], [-4, -5, -6])
    assert vectors.users_missing.tolist() == [False, False, False, False, True]
    assert not vectors.items_missing.any()
    assert result.counts["embeddings"]["dim"] == 3


def test_cli_autodetects_the_directory_and_rerun_loads_nothing(tmp_path: Path, monkeypatch) -> None:
    directory = write_rlmrec_dir(tmp_path)
    write_mappers(tmp_path / "mapper")
    runner = CliRunner()
    ws = str(tmp_path / "ws")
    first = runner.invoke(
        app, ["prepare", str(directory), "--mapper", str(tmp_path / "mapper"), "-w", ws, "-q"]
    )
    assert first.exit_code == 0, first.output
    assert "imported datasets/books@" in first.output and "motivations/books@" in first.output
    assert "interactions: test" in first.output

    def no_loading(*args, **kwargs):
        raise AssertionError("a re-run must not load the pickles again")

    monkeypatch.setattr(rlmrec, "load", no_loading)
    again = runner.invoke(
        app,
        [
            "prepare",
            "--format",
            "rlmrec",
            str(directory),
            "--mapper",
            str(tmp_path / "mapper"),
            "-w",
            ws,
            "--json",
        ],
    )
    assert again.exit_code == 0, again.output
    data = json.loads(again.output)
    assert data["reused"] is True and data["format"] == "rlmrec"
    assert data["counts"]["interactions"] == {"train": 6, "valid": 2, "test": 4}
    assert len(data["derived"]) == 2
    assert len(Workspace(ws).versions("datasets", "books")) == 1


def test_without_mapper_ids_are_indices_and_absent_extras_make_no_artifacts(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    result = run_import(ws, write_rlmrec_dir(tmp_path, profiles=False, vectors=False))
    dataset = PreparedDataset(result.ref)
    assert dataset.users().user_id.tolist() == ["0", "1", "2", "3", "4"]
    assert dataset.items().item_id.tolist() == ["0", "1", "2", "3"]
    assert result.derived == [] and ws.names("motivations") == [] and ws.names("embeddings") == []


def test_other_matrix_layouts_duplicates_and_explicit_zeros(tmp_path: Path) -> None:
    directory = write_rlmrec_dir(tmp_path, profiles=False, vectors=False)
    train = _matrix(SPLIT_PAIRS["train"]).tocsr()
    _dump(directory / "trn_mat.pkl", train)
    # Validation as COO with a repeated pair and an explicit zero at a pair that is in no split.
    rows, cols, vals = [0, 1, 1, 3], [3, 0, 0, 3], [1.0, 1.0, 1.0, 0.0]
    _dump(directory / "val_mat.pkl", sp.coo_matrix((vals, (rows, cols)), shape=(N_USERS, N_ITEMS)))
    result = run_import(Workspace(tmp_path / "ws"), directory)
    assert result.counts["interactions"] == {"train": 6, "valid": 2, "test": 4}
    notes = result.counts["loading"]["valid"]
    assert notes == {"entries": 4, "explicit_zeros": 1, "duplicate_entries": 1, "values_not_one": 0}


def test_pair_in_two_splits_is_refused(tmp_path: Path) -> None:
    directory = write_rlmrec_dir(tmp_path, profiles=False, vectors=False)
    _dump(directory / "tst_mat.pkl", _matrix(SPLIT_PAIRS["test"] + [(1, 1)]))
    with pytest.raises(
        InputError,
        match=r"1 \(user, item\) pairs are also in trn_mat.pkl \(first: user 1, item 1\)",
    ):
        run_import(Workspace(tmp_path / "ws"), directory)


def test_shape_mismatch_is_refused(tmp_path: Path) -> None:
    directory = write_rlmrec_dir(tmp_path, profiles=False, vectors=False)
    _dump(directory / "val_mat.pkl", _matrix(SPLIT_PAIRS["valid"], shape=(N_USERS, N_ITEMS + 1)))
    with pytest.raises(
        InputError, match=r"differ in shape: trn_mat.pkl \[5, 4\], val_mat.pkl \[5, 5\]"
    ):
        run_import(Workspace(tmp_path / "ws"), directory)


def test_mapper_of_another_size_is_refused(tmp_path: Path) -> None:
    directory = write_rlmrec_dir(tmp_path, profiles=False, vectors=False)
    users, _ = write_mappers(tmp_path / "mapper")
    users.write_text(
        "\n".join(json.dumps({"uid": u, "reviewerID": f"U{u}"}) for u in range(N_USERS + 1))
    )
    with pytest.raises(InputError, match="maps 6 users, the split has 5"):
        run_import(Workspace(tmp_path / "ws"), directory, mappers=[users])


def test_mapper_directory_picks_the_pair_named_like_the_split(tmp_path: Path) -> None:
    directory = write_rlmrec_dir(tmp_path, profiles=False, vectors=False)
    write_mappers(tmp_path / "mapper", prefix="books")
    other_users, _ = write_mappers(tmp_path / "mapper", prefix="games")
    other_users.write_text(
        "\n".join(json.dumps({"uid": u, "username": f"G{u}"}) for u in range(N_USERS))
    )
    result = run_import(Workspace(tmp_path / "ws"), directory, mappers=[tmp_path / "mapper"])
    assert PreparedDataset(result.ref).users().user_id.tolist() == USER_IDS
    renamed = directory.rename(tmp_path / "unnamed")
    with pytest.raises(UsageError, match="several mapper pairs"):
        run_import(Workspace(tmp_path / "ws2"), renamed, mappers=[tmp_path / "mapper"])


def test_malicious_profile_file_is_refused_and_nothing_is_committed(tmp_path: Path) -> None:
    directory = write_rlmrec_dir(tmp_path)
    marker = tmp_path / "payload-ran"
    (directory / "itm_prf.pkl").write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(
        InputError, match="itm_prf.pkl: refused to load: the pickle calls os.system"
    ):
        run_import(ws, directory)
    assert not marker.exists()
    assert ws.names("datasets") == [] and ws.names("motivations") == []


def test_one_embedding_file_alone_is_refused(tmp_path: Path) -> None:
    directory = write_rlmrec_dir(tmp_path)
    os.remove(directory / "itm_emb_np.pkl")
    with pytest.raises(
        InputError, match="itm_emb_np.pkl: file not found, but usr_emb_np.pkl is present"
    ):
        run_import(Workspace(tmp_path / "ws"), directory)


def test_wrong_vector_rows_are_refused(tmp_path: Path) -> None:
    directory = write_rlmrec_dir(tmp_path)
    _dump(directory / "itm_emb_np.pkl", np.ones((N_ITEMS + 2, 3)))
    with pytest.raises(InputError, match=r"expected shape \[4, d\], found \[6, 3\]"):
        run_import(Workspace(tmp_path / "ws"), directory)


def test_filter_and_split_options_are_refused_for_a_released_split(tmp_path: Path) -> None:
    directory = write_rlmrec_dir(tmp_path, profiles=False, vectors=False)
    with pytest.raises(UsageError, match="keeps the released split exactly"):
        run_import(
            Workspace(tmp_path / "ws"),
            directory,
            settings=PrepareSettings(min_user_interactions=10),
        )
    runner = CliRunner()
    result = runner.invoke(
        app, ["prepare", str(directory), "--min-rating", "3", "-w", str(tmp_path / "ws")]
    )
    assert result.exit_code == 2 and "keeps the released split exactly" in result.output


def test_mapper_option_is_refused_for_other_formats(tmp_path: Path) -> None:
    users, _ = write_mappers(tmp_path / "mapper")
    with pytest.raises(UsageError, match="--mapper is for RLMRec splits only"):
        prepare(
            Workspace(tmp_path / "ws"),
            paths=[],
            meta=[],
            format_name=None,
            name="demo",
            settings=PrepareSettings(),
            min_rating_given=False,
            demo=DemoSpec(users=20, items=20),
            mappers=[users],
        )


def test_users_table_matches_pandas_expectation(tmp_path: Path) -> None:
    """Tables keep the shared schemas (int32 indices, string ids): readers need no special case."""
    result = run_import(
        Workspace(tmp_path / "ws"), write_rlmrec_dir(tmp_path, profiles=False, vectors=False)
    )
    users = pd.read_parquet(result.ref.path / "users.parquet")
    interactions = pd.read_parquet(result.ref.path / "interactions.parquet")
    assert str(users.user.dtype) == "int32" and str(interactions.item.dtype) == "int32"
    assert PreparedDataset(result.ref).interactions.matrix("train").nnz == 6
