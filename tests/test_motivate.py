"""`lmmrec motivate` end to end against the fake OpenAI server (real client, real HTTP)."""

# ruff: noqa: F811  (pytest fixtures imported from tests.llm_fixtures are redefined as arguments)
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from lmmrec_cli.data.dataset import PreparedDataset
from lmmrec_cli.llm.cache import AnswerCache
from lmmrec_cli.motivations import read_motivations
from lmmrec_cli.workspace import Workspace
from tests.fake_openai import FakeOpenAI
from tests.llm_fixtures import API_KEY, KEY_ENV, cli, demo_template, server, ws_path  # noqa: F401

N_ITEMS, N_USERS = 30, 60


def motivate_args(ws: Path, server: FakeOpenAI, *extra: str) -> list[str]:
    return [
        "motivate",
        "--dataset",
        "demo",
        "-w",
        str(ws),
        "--base-url",
        server.url,
        "--api-key-env",
        KEY_ENV,
        "--json",
        "-q",
        "--timeout",
        "2",
        "--max-retries",
        "3",
        *extra,
    ]


def motivate_process(ws: Path, server: FakeOpenAI, *extra: str) -> tuple[list[str], dict]:
    """The command line and environment of ``lmmrec motivate`` as a separate process."""
    env = dict(os.environ, **{KEY_ENV: API_KEY})
    return [sys.executable, "-m", "lmmrec_cli", *motivate_args(ws, server, *extra)], env


def run_json(cli, *args: str) -> dict:
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def stored_answers(ws: Path) -> int:
    with AnswerCache.for_workspace(Workspace(ws)) as cache:
        return len(cache)


def all_bytes_free_of(root: Path, secret: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_every_entity_is_answered_and_a_rerun_makes_no_call(ws_path, server, cli):
    out = run_json(cli, *motivate_args(ws_path, server))
    assert out["counts"] == {
        "items": N_ITEMS,
        "users": N_USERS,
        "failures": 0,
        "item_failures": 0,
        "user_failures": 0,
    }
    llm = out["llm"]
    assert llm["calls"] == server.chat_calls() == N_ITEMS + N_USERS
    assert llm["tokens_in"] > 0 and llm["tokens_out"] > 0 and llm["cache_hits"] == 0
    ref = Workspace(ws_path).resolve("motivations", "demo")
    manifest = ref.manifest()
    assert manifest["llm"]["templates"]["item"] and manifest["source"] == "llm:gpt-4o-mini"
    items = read_motivations(ref, "item")
    assert [m.index for m in items] == list(range(N_ITEMS)) and all(m.summary for m in items)

    calls = server.chat_calls()
    again = run_json(cli, *motivate_args(ws_path, server))
    assert again["reused"] and server.chat_calls() == calls
    # A new artifact with the same requests is answered from the cache alone.
    other = run_json(cli, *motivate_args(ws_path, server, "--name", "copy"))
    assert not other["reused"] and other["llm"]["cache_hits"] == N_ITEMS + N_USERS
    assert other["llm"]["calls"] == 0 and server.chat_calls() == calls
    assert all_bytes_free_of(ws_path, API_KEY.encode()) == []


def test_faults_are_retried_or_repaired(ws_path, server, cli):
    items = PreparedDataset.open(Workspace(ws_path), "demo").items()
    titles = items["title"].tolist()
    server.state.hang_seconds = 3.0
    server.add_fault("429", match=f"Title: {titles[0]}\n")
    server.add_fault("500", match=f"Title: {titles[1]}\n")
    server.add_fault("hang", match=f"Title: {titles[2]}\n")
    server.add_fault("invalid_json", match=f"Title: {titles[3]}\n")
    server.add_fault("missing_field", match=f"Title: {titles[4]}\n")
    server.add_fault("empty", match=f"Title: {titles[5]}\n")
    out = run_json(cli, *motivate_args(ws_path, server, "--timeout", "0.5", "--max-retries", "2"))
    assert out["counts"]["failures"] == 0 and out["counts"]["items"] == N_ITEMS
    llm = out["llm"]
    assert llm["repairs"] == 3  # invalid JSON, missing field, empty answer: one follow-up each
    assert llm["calls"] == N_ITEMS + N_USERS + 3
    # The client's own retries (429, 500, hang) are HTTP attempts, not extra calls.
    assert llm["http_attempts"] >= llm["calls"] + 2
    statuses = Counter(r.fault for r in server.records() if r.fault)
    assert statuses == {
        "429": 1,
        "500": 1,
        "hang": 1,
        "invalid_json": 1,
        "missing_field": 1,
        "empty": 1,
    }


def test_persistent_failures_fail_the_run_and_a_rerun_resumes(ws_path, server, cli):
    items = PreparedDataset.open(Workspace(ws_path), "demo").items()
    bad_title = items["title"].iloc[7]
    server.add_fault("invalid_json", match=f"Title: {bad_title}\n", times=2)
    result = cli(*motivate_args(ws_path, server))
    assert result.exit_code != 0
    assert "1 of 90 entities have no answer" in result.output
    report = next((ws_path / "cache" / "llm" / "failures").glob("*.jsonl"))
    failure = json.loads(report.read_text())
    assert (
        failure["kind"] == "item"
        and failure["index"] == 7
        and "invalid answer twice" in failure["reason"]
    )
    assert Workspace(ws_path).versions("motivations", "demo") == []  # no partial artifact
    first_run = set(server.answered_shas())

    before = server.chat_calls()
    out = run_json(cli, *motivate_args(ws_path, server))
    assert out["counts"]["failures"] == 0
    second_run = [r.messages_sha for r in server.records()[before:]]
    # Only the failed item and the users whose prompt it feeds are asked again.
    assert not first_run & set(second_run)
    assert 1 <= len(second_run) < 1 + N_USERS


def test_a_committed_run_lists_failures_and_retry_failed_asks_only_for_them(ws_path, server, cli):
    titles = PreparedDataset.open(Workspace(ws_path), "demo").items()["title"].tolist()
    for title in titles[:2]:  # two items answer badly twice: original and follow-up
        server.add_fault("invalid_json", match=f"Title: {title}\n", times=2)
    out = run_json(cli, *motivate_args(ws_path, server, "--max-failure-rate", "0.1"))
    assert out["counts"]["failures"] == 2 and out["counts"]["items"] == N_ITEMS - 2
    failures = [
        json.loads(line) for line in (Path(out["path"]) / "failures.jsonl").read_text().splitlines()
    ]
    assert {f["kind"] for f in failures} == {"item"} and all(f["reason"] for f in failures)
    again = run_json(cli, *motivate_args(ws_path, server, "--max-failure-rate", "0.1"))
    assert again["reused"] and "retry-failed" in again["notice"]
    before = server.chat_calls()
    retried = run_json(
        cli, *motivate_args(ws_path, server, "--max-failure-rate", "0.1", "--retry-failed")
    )
    assert retried["version"] != out["version"] and retried["counts"]["failures"] == 0
    asked = server.records()[before:]
    assert sum("TRAINING REVIEWS OF THIS ITEM" in json.dumps(r.body) for r in asked) == 2


@pytest.mark.parametrize(
    "schema, json_object, expected", [(False, True, "json_object_schema"), (False, False, "text")]
)
def test_refused_response_format_falls_back_once(
    ws_path, server, cli, schema, json_object, expected
):
    server.state.supports_json_schema = schema
    server.state.supports_json_object = json_object
    out = run_json(cli, *motivate_args(ws_path, server, "--concurrency", "4"))
    assert out["counts"]["failures"] == 0
    assert out["llm"]["response_format"] == expected and out["llm"]["format_fallbacks"]
    refusals = [r for r in server.records() if r.status == 400]
    assert 1 <= len(refusals) <= 2 * 4  # at most the requests already in flight


def test_a_wrong_key_stops_with_one_line_and_no_secret(ws_path, server, cli, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-wrongwrongwrong123")
    result = cli(*motivate_args(ws_path, server))
    assert result.exit_code != 0
    assert "refused the credentials" in result.output and "sk-wrong" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_without_any_llm_configured_the_command_says_what_to_do(ws_path, cli, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = cli("motivate", "--dataset", "demo", "-w", str(ws_path))
    assert result.exit_code == 2 and "--backend extractive" in result.output


def test_dry_run_counts_and_prices_without_calling(ws_path, server, cli):
    out = run_json(
        cli,
        *motivate_args(ws_path, server, "--dry-run", "--price-in", "0.15", "--price-out", "0.6"),
    )
    assert server.chat_calls() == 0
    assert out["calls"] == N_ITEMS + N_USERS and out["cached"] == 0 and out["users_estimated"]
    assert out["cost"] == pytest.approx((out["tokens_in"] * 0.15 + out["tokens_out"] * 0.6) / 1e6)
    run_json(cli, *motivate_args(ws_path, server))
    cached = run_json(cli, *motivate_args(ws_path, server, "--dry-run"))
    assert cached["calls"] == 0 and cached["cached"] == N_ITEMS + N_USERS and cached["cost"] is None


def test_user_prompts_contain_training_reviews_only(ws_path, server, cli):
    run_json(cli, *motivate_args(ws_path, server))
    prompts = [r.body["messages"][-1]["content"] for r in server.records()]
    user_prompts = [p for p in prompts if "ITEMS THIS USER" in p]
    item_prompts = [p for p in prompts if "TRAINING REVIEWS OF THIS ITEM" in p]
    assert len(user_prompts) == N_USERS and len(item_prompts) == N_ITEMS
    markers = Counter(m for p in prompts for m in re.findall(r"\[R\d+-(\w+)\]", p))
    assert markers["train"] > 0  # the check can fail: review text does reach the prompts
    assert markers["valid"] == 0 and markers["test"] == 0
    reviews = PreparedDataset.open(Workspace(ws_path), "demo").reviews()
    assert (reviews["split"] != "train").sum() > 0


def test_killed_mid_run_resumes_without_repeating_answered_calls(ws_path, tmp_path):
    concurrency = 4
    with FakeOpenAI(api_key=API_KEY, latency=0.05) as server:
        command, env = motivate_process(ws_path, server, "--concurrency", str(concurrency))
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while (
            len(server.answered_shas()) < 40
            and time.monotonic() < deadline
            and process.poll() is None
        ):
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        answered_before = set(server.answered_shas())
        assert 40 <= len(answered_before) < N_ITEMS + N_USERS
        stored_before = stored_answers(ws_path)
        before = server.chat_calls()
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        assert out["counts"]["failures"] == 0 and out["counts"]["users"] == N_USERS
        # Exactly: every call of the rerun stored a new answer, so none asked again for an
        # answer the killed run had stored (answers still on the wire were not stored).
        assert stored_before > 0
        assert stored_answers(ws_path) - stored_before == out["llm"]["calls"]
        repeated = {r.messages_sha for r in server.records()[before:]} & answered_before
        # At most the answers that were on the wire when the process died are paid twice.
        assert len(repeated) <= concurrency
        assert out["llm"]["cache_hits"] >= len(answered_before) - concurrency
    assert all_bytes_free_of(ws_path, API_KEY.encode()) == []


def test_extractive_backend_is_deterministic_and_labelled(ws_path, cli):
    first = run_json(
        cli,
        "motivate",
        "--dataset",
        "demo",
        "-w",
        str(ws_path),
        "--backend",
        "extractive",
        "--json",
    )
    second = run_json(
        cli,
        "motivate",
        "--dataset",
        "demo",
        "-w",
        str(ws_path),
        "--backend",
        "extractive",
        "--json",
        "--name",
        "again",
    )
    a, b = Path(first["path"]), Path(second["path"])
    assert (a / "items.jsonl").read_bytes() == (b / "items.jsonl").read_bytes()
    assert (a / "users.jsonl").read_bytes() == (b / "users.jsonl").read_bytes()
    ref = Workspace(ws_path).resolve("motivations", "demo")
    items, users = read_motivations(ref, "item"), read_motivations(ref, "user")
    assert len(items) == N_ITEMS and len(users) == N_USERS
    assert {m.source for m in items + users} == {"extractive"}
    assert all(m.active and m.summary for m in items)
    assert any(m.passive for m in users)
    text = " ".join(m.summary for m in items + users)
    # Validation/test reviews carry the words "valid"/"test" in their markers; training ones
    # "train": only the latter may surface (and are frequent enough to be dropped by max_df).
    assert not re.search(r"\b(valid|test)\b", text)
    frame = pd.read_json(a / "users.jsonl", lines=True)
    assert frame["user"].tolist() == list(range(N_USERS))


def test_batch_path_answers_into_the_same_cache(ws_path, server, cli):
    out = run_json(cli, *motivate_args(ws_path, server, "--batch", "--poll-interval", "0.01"))
    assert out["counts"]["failures"] == 0 and out["llm"]["backend"] == "openai-batch"
    assert out["llm"]["tokens_in"] > 0
    assert server.chat_calls() == 0  # nothing online
    assert len(server.records("/batches")) == 2  # items, then users
    batched = [r for r in server.state.records if r.path.startswith("batch:")]
    assert len(batched) == N_ITEMS + N_USERS
    state = json.loads((ws_path / "cache" / "llm" / "batches.json").read_text())["batches"]
    assert len(state) == 2 and all(b["collected"] for b in state.values())
    # The online path finds every batch answer in the cache.
    online = run_json(cli, *motivate_args(ws_path, server, "--name", "online"))
    assert online["llm"]["calls"] == 0 and online["llm"]["cache_hits"] == N_ITEMS + N_USERS
    assert all_bytes_free_of(ws_path, API_KEY.encode()) == []


def test_a_stopped_batch_is_resumed_not_resubmitted(ws_path, server, cli):
    server.state.batch_polls_until_done = 10**6  # never finishes while we wait
    result = cli(
        *motivate_args(ws_path, server, "--batch", "--poll-interval", "0.01", "--batch-wait", "0.1")
    )
    assert result.exit_code != 0 and "still running" in result.output
    assert len(server.records("/batches")) == 1
    state_file = ws_path / "cache" / "llm" / "batches.json"
    (upload_id,) = json.loads(state_file.read_text())["batches"]
    server.state.batch_polls_until_done = 0  # now it completes on the next poll
    out = run_json(cli, *motivate_args(ws_path, server, "--batch", "--poll-interval", "0.01"))
    assert out["counts"]["failures"] == 0
    creates = [r for r in server.state.records if r.path.endswith("/batches") and r.body]
    assert len(creates) == 2  # the items batch once (resumed), then the users batch
    assert json.loads(state_file.read_text())["batches"][upload_id]["collected"]


def test_batch_errors_and_bad_answers_are_recorded_failures(ws_path, server, cli):
    titles = PreparedDataset.open(Workspace(ws_path), "demo").items()["title"].tolist()
    server.add_fault("500", match=f"Title: {titles[0]}\n")
    server.add_fault("missing_field", match=f"Title: {titles[1]}\n")
    out = run_json(
        cli,
        *motivate_args(
            ws_path, server, "--batch", "--poll-interval", "0.01", "--max-failure-rate", "0.5"
        ),
    )
    failures = [
        json.loads(line) for line in (Path(out["path"]) / "failures.jsonl").read_text().splitlines()
    ]
    reasons = {f["index"]: f["reason"] for f in failures if f["kind"] == "item"}
    assert set(reasons) == {0, 1}
    assert "HTTP 500" in reasons[0] and "summary" in reasons[1]


def test_editing_a_template_re_asks_exactly_the_affected_calls(ws_path, server, cli, tmp_path):
    from lmmrec_cli.llm.prompts import DEFAULT_DIR

    result = cli("motivate", "--show-prompts")
    assert result.exit_code == 0 and Path(result.stdout.strip()) == DEFAULT_DIR
    run_json(cli, *motivate_args(ws_path, server))
    custom = tmp_path / "prompts"
    shutil.copytree(DEFAULT_DIR, custom)
    user = custom / "user.txt"
    user.write_text(user.read_text().replace("at most 100 words", "at most 60 words"))
    before = server.chat_calls()
    out = run_json(cli, *motivate_args(ws_path, server, "--prompts", str(custom)))
    assert out["llm"]["cache_hits"] == N_ITEMS and out["llm"]["calls"] == N_USERS
    assert server.chat_calls() - before == N_USERS
    assert out["llm"]["templates"]["user"] != out["llm"]["templates"]["system"]


def test_retry_after_is_honoured(ws_path, server, cli):
    # Without the header the client would back off 0.375-0.5 s; the server asks for 0.8 s.
    title = PreparedDataset.open(Workspace(ws_path), "demo").items()["title"].iloc[0]
    server.state.retry_after = "0.8"
    server.add_fault("429", match=f"Title: {title}\n")
    run_json(cli, *motivate_args(ws_path, server))
    hits = [r for r in server.records() if f"Title: {title}\\n" in json.dumps(r.body)]
    assert [r.status for r in hits] == [429, 200]
    assert hits[1].time - hits[0].time >= 0.75


def test_an_upload_whose_batch_was_never_recorded_is_reused_not_paid_twice(ws_path, server, cli):
    import openai

    server.state.refuse_batch_create = 1  # the run dies between upload and batch creation
    args = motivate_args(ws_path, server, "--batch", "--poll-interval", "0.01")
    result = cli(*args)
    assert result.exit_code != 0 and "could not submit the batch" in result.output
    uploads = [r for r in server.state.records if r.path.endswith("/files") and r.status == 200]
    assert len(uploads) == 1
    (upload_id,) = json.loads((ws_path / "cache" / "llm" / "batches.json").read_text())["batches"]
    # Another process created the batch on the server before dying: it must be adopted.
    client = openai.OpenAI(api_key=API_KEY, base_url=server.url)
    created = client.batches.create(
        input_file_id=upload_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    out = run_json(cli, *args)
    assert out["counts"]["failures"] == 0
    uploads = [r for r in server.state.records if r.path.endswith("/files") and r.status == 200]
    assert len(uploads) == 2  # the items upload once (reused), then the users upload
    assert len(server.state.batches) == 2  # the adopted items batch and the users batch
    state = json.loads((ws_path / "cache" / "llm" / "batches.json").read_text())["batches"]
    assert state[upload_id]["batch_id"] == created.id and state[upload_id]["collected"]


def test_a_refused_batch_creation_is_retried_from_the_same_upload(ws_path, server, cli):
    server.state.refuse_batch_create = 1
    args = motivate_args(ws_path, server, "--batch", "--poll-interval", "0.01")
    assert cli(*args).exit_code != 0
    out = run_json(cli, *args)
    assert out["counts"]["failures"] == 0
    uploads = [r for r in server.state.records if r.path.endswith("/files") and r.status == 200]
    assert len(uploads) == 2 and len(server.state.batches) == 2


def test_calls_that_fail_for_good_are_recorded_and_no_entity_is_dropped(ws_path, server, cli):
    titles = PreparedDataset.open(Workspace(ws_path), "demo").items()["title"].tolist()
    server.state.hang_seconds = 2.0
    # Each fault outlasts the client's retries (--max-retries 1: two attempts per call).
    server.add_fault("500", match=f"Title: {titles[0]}\n", times=2)
    server.add_fault("hang", match=f"Title: {titles[1]}\n", times=2)
    server.add_fault("429", match=f"Title: {titles[2]}\n", times=2)
    args = ("--timeout", "0.5", "--max-retries", "1", "--max-failure-rate", "0.1")
    out = run_json(cli, *motivate_args(ws_path, server, *args))
    assert out["counts"]["failures"] == 3 and out["counts"]["users"] == N_USERS
    failures = [
        json.loads(line) for line in (Path(out["path"]) / "failures.jsonl").read_text().splitlines()
    ]
    reasons = {(f["kind"], f["index"]): f["reason"] for f in failures}
    assert set(reasons) == {("item", 0), ("item", 1), ("item", 2)}
    assert "HTTP 500" in reasons[("item", 0)] and "timed out" in reasons[("item", 1)]
    assert "HTTP 429" in reasons[("item", 2)]
    # Every entity ends with exactly one of: an answer, a recorded failure.
    ref = Workspace(ws_path).resolve("motivations", "demo")
    answered = {(kind, m.index) for kind in ("item", "user") for m in read_motivations(ref, kind)}
    everything = {("item", i) for i in range(N_ITEMS)} | {("user", u) for u in range(N_USERS)}
    assert answered | set(reasons) == everything and not answered & set(reasons)
    assert all_bytes_free_of(ws_path, API_KEY.encode()) == []
