"""RLMRec's released Amazon-book split (../shared/data/rlmrec_splits/amazon), through the CLI.

The expected numbers are those of the split's SOURCE.md; skipped when the shared data is absent.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from typer.testing import CliRunner

from lmmrec_cli.cli import app
from lmmrec_cli.data.dataset import PreparedDataset
from lmmrec_cli.workspace import Workspace

SPLIT = SHARED_DATA / "rlmrec_splits" / "amazon"
MAPPERS = SHARED_DATA / "rlmrec_id_mappers"

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.skipif(
        not (SPLIT / "trn_mat.pkl").is_file() or not (MAPPERS / "amazon_user.json").is_file(),
        reason=f"shared data not available: {SPLIT}, {MAPPERS}",
    ),
]


def test_amazon_split_imports_with_published_counts_and_original_ids(tmp_path: Path) -> None:
    runner = CliRunner()
    ws = str(tmp_path / "ws")
    # The mapper directory holds amazon/yelp/steam pairs; the split directory's name picks amazon.
    args = [
        "prepare",
        "--format",
        "rlmrec",
        str(SPLIT),
        "--mapper",
        str(MAPPERS),
        "--dataset",
        "rlmrec-amazon",
        "-w",
        ws,
    ]
    first = runner.invoke(app, [*args, "--json"])
    assert first.exit_code == 0, first.output
    data = json.loads(first.output)
    counts = data["counts"]
    assert data["reused"] is False and data["derived"] == []
    assert (counts["users"], counts["items"]) == (11_000, 9_332)
    assert counts["interactions"] == {"train": 120_464, "valid": 40_290, "test": 40_106}
    assert counts["users_with_test"] == 9_860
    assert counts["users_without_train"] == 0 and counts["items_without_train"] == 0
    assert counts["original_ids"] == {"user": "reviewerID", "item": "asin"}

    dataset = PreparedDataset.open(Workspace(ws), "rlmrec-amazon")
    users, items = dataset.users(), dataset.items()
    assert users.user_id.iloc[0] == "A2PDSDPBAO255U" and items.item_id.iloc[0] == "0373730489"
    assert users.user_id.is_unique and items.item_id.is_unique
    interactions = dataset.interactions
    train = interactions.matrix("train")
    assert train.nnz == 120_464 and train.shape == (11_000, 9_332)
    # No pair in two splits: the three matrices add up without overlap.
    total = train + interactions.matrix("valid") + interactions.matrix("test")
    assert total.nnz == 200_860 and np.all(total.data == 1)

    again = runner.invoke(app, [*args, "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["reused"] is True
    assert json.loads(again.output)["version"] == data["version"]


def test_mapper_directory_matches_a_renamed_split_by_its_shape(tmp_path: Path) -> None:
    # A user's copy of the release named after the data set, not after the mapper prefix.
    split = tmp_path / "amazon-book"
    shutil.copytree(SPLIT, split)
    result = CliRunner().invoke(
        app,
        ["prepare", "--format", "rlmrec", str(split), "--mapper", str(MAPPERS),
         "--dataset", "amazon-book", "-w", str(tmp_path / "ws"), "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["counts"]["original_ids"] == {"user": "reviewerID", "item": "asin"}
    users = PreparedDataset.open(Workspace(tmp_path / "ws"), "amazon-book").users()
    assert users.user_id.iloc[0] == "A2PDSDPBAO255U"
