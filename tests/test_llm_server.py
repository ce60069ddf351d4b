"""`motivate` and `embed` against a server that behaves like llama.cpp's: one answer at a
time, slow answers, an HTTP 500 refusal of ``json_schema``, per-token embeddings; a server
that is not there; what the records say."""

# ruff: noqa: F811  (pytest fixtures imported from tests.llm_fixtures are redefined as arguments)
from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time

import pytest

from lmmrec_cli.data.dataset import PreparedDataset
from lmmrec_cli.llm.cache import AnswerCache
from lmmrec_cli.llm.client import CallError, ChatClient, ChatSettings
from lmmrec_cli.llm.limits import AdaptiveLimit
from lmmrec_cli.redact import redact_argv
from lmmrec_cli.workspace import Workspace
from tests.fake_openai import FakeOpenAI, messages_sha
from tests.llm_fixtures import API_KEY, KEY_ENV, cli, demo_template, ws_path  # noqa: F401
from tests.test_motivate import N_ITEMS, N_USERS, motivate_args, motivate_process, run_json


@pytest.fixture
def llama():
    with FakeOpenAI.llama_cpp(api_key=API_KEY) as fake:
        yield fake


def entity_of(body: dict) -> str:
    """The entity a request belongs to: a repair repeats its first two messages."""
    return messages_sha(body["messages"][:2])


def one_line_error(result) -> str:
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) <= 2, result.output  # the error and its hint
    return result.output


def test_llama_cpp_500_refusal_downgrades_once_without_retries(ws_path, llama, cli):
    out = run_json(cli, *motivate_args(ws_path, llama, "--concurrency", "1"))
    assert out["counts"]["failures"] == 0
    refusals = [r for r in llama.records() if r.status == 500]
    assert len(refusals) == 1  # one refusal, then none
    assert out["llm"]["response_format"] == "json_object_schema"
    assert out["llm"]["retries"] == 0
    # llama.cpp's schema shape is used from then on
    later = [r.body["response_format"] for r in llama.records() if r.status == 200]
    assert all(f["type"] == "json_object" and "schema" in f for f in later)
    assert llama.chat_calls() == N_ITEMS + N_USERS + 1


def test_a_one_at_a_time_server_gets_no_abandoned_or_repeated_request(ws_path, llama, cli):
    """16 in flight × 0.1 s per answer exceeds --timeout 1.5 s: without adapting, queued
    requests time out and are sent again (the server drops them unanswered). Adapting keeps
    about five in flight (answers slower than timeout/3 halve the limit): a second of slack
    for a loaded machine."""
    llama.state.latency = 0.1
    result = cli(*motivate_args(ws_path, llama, "--concurrency", "16", "--timeout", "1.5"))
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert "exceeds --timeout 1.5s" in " ".join(result.output.split())  # said once
    assert result.output.count("exceeds --timeout") == 1
    assert out["counts"]["failures"] == 0
    assert llama.abandoned() == 0 and out["llm"]["retries"] == 0
    assert llama.chat_calls() == N_ITEMS + N_USERS + 1
    assert out["llm"]["in_flight"]["decreases"] >= 1
    assert out["llm"]["in_flight"]["lowest"] < 16


def test_adaptive_limit_slow_start_and_halving():
    limit = AdaptiveLimit(16, timeout=30.0)
    assert int(limit.limit) == 2
    now = time.monotonic()
    for _ in range(20):
        limit.answered(1.0, now)  # fast: grows to the maximum
    assert int(limit.limit) == 16
    limit.answered(20.0, time.monotonic())  # slower than timeout/3: halve
    assert int(limit.limit) == 8
    limit.answered(20.0, now)  # sent before the cut: says nothing new
    assert int(limit.limit) == 8
    limit.timed_out(time.monotonic())
    assert int(limit.limit) == 4 and limit.decreases == 2


def test_answers_are_kept_as_they_arrive_across_a_kill(ws_path):
    """kill -9 mid-phase, then rerun: no entity whose prompt the server answered before the
    kill is asked again, except the few still in flight (their repair had not come back)."""
    titles = PreparedDataset.open(Workspace(ws_path), "demo").items()["title"].tolist()
    concurrency = 2
    with FakeOpenAI.llama_cpp(api_key=API_KEY, latency=0.25) as server:
        for title in titles[:8]:  # these items' first answers need a repair
            server.add_fault("invalid_json", match=f"Title: {title}\n", times=1)
        command, env = motivate_process(
            ws_path, server, "--concurrency", str(concurrency), "--timeout", "30"
        )
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            answered = [r for r in server.records() if r.status == 200]
            if len(answered) >= 12:
                break
            time.sleep(0.01)
        time.sleep(0.1)
        killed_at = time.time()
        process.send_signal(signal.SIGKILL)
        process.wait()
        first = [r for r in server.records() if r.status == 200]
        assert 12 <= len(first) < N_ITEMS
        # Entities whose valid final answer left the server half a second before the kill
        # (the client stores an answer within milliseconds; the slack is for a loaded machine).
        done = {entity_of(r.body) for r in first if r.fault is None and r.time < killed_at - 0.5}
        assert len(done) >= 3
        touched = {entity_of(r.body) for r in first}  # the server computed something for it
        server.state.latency = 0.0
        before = len(server.records())
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        rerun = {entity_of(r.body) for r in server.records()[before:] if r.body}
        assert not rerun & done  # zero repeated prompts of answered entities
        assert len(rerun & touched) <= concurrency  # only those in flight at the kill


def test_systematic_invalid_answers_stop_before_the_users(ws_path, cli):
    with FakeOpenAI(api_key=API_KEY) as server:
        server.add_fault("invalid_json", times=10_000)
        result = cli(*motivate_args(ws_path, server, "--concurrency", "2"))
        output = one_line_error(result)
        assert "stopped early" in output and "--max-tokens" in output
        bodies = [json.dumps(r.body) for r in server.records()]
        assert not any("TRAINING REVIEWS OF THIS ITEM" not in b for b in bodies)  # no user asked
        assert len(bodies) <= 2 * (8 + 2)  # the first eight entities and those in flight


def test_every_sampled_item_failing_stops_before_the_users(ws_path, cli):
    with FakeOpenAI(api_key=API_KEY) as server:
        server.add_fault("500", times=10_000)
        result = cli(*motivate_args(ws_path, server, "--sample", "3", "--max-retries", "0"))
        output = one_line_error(result)
        assert "HTTP 500" in output
        assert server.chat_calls() == 3


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_dead_server_fails_fast_naming_the_url_and_cause(ws_path, cli):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    started = time.monotonic()
    result = cli(
        "motivate", "--dataset", "demo", "-w", ws_path, "--base-url", url, "-q", "--max-retries", "6"
    )
    output = one_line_error(result)
    assert url in output and "connection" in output.lower() and "--base-url" in output
    assert time.monotonic() - started < 60  # not 6 retries × every entity


def test_a_refused_connection_spends_no_retry():
    settings = ChatSettings(base_url=f"http://127.0.0.1:{_closed_port()}/v1", max_retries=6)

    async def run() -> ChatClient:
        chat = ChatClient(settings)
        try:
            with pytest.raises(CallError) as caught:
                async with chat.slot():
                    await chat.complete([{"role": "user", "content": "hi"}])
        finally:
            await chat.aclose()
        assert caught.value.kind == "connection"
        return chat

    chat = asyncio.run(run())
    assert chat.stats.retries == 0 and chat.stats.http_attempts == 0


def test_per_token_embeddings_are_refused_and_nothing_is_cached(ws_path, llama, cli):
    run_json(cli, "motivate", "--dataset", "demo", "-w", ws_path, "-b", "extractive", "--json", "-q")
    with AnswerCache.for_workspace(Workspace(ws_path)) as cache:
        stored = len(cache)
    result = cli(
        "embed", "--motivations", "demo", "-w", ws_path, "--backend", "openai",
        "--base-url", llama.url, "--api-key-env", KEY_ENV, "-q",
    )
    output = one_line_error(result)
    assert "one vector per token" in output and "--pooling" in output
    with AnswerCache.for_workspace(Workspace(ws_path)) as cache:
        assert len(cache) == stored
    assert not list((ws_path / "embeddings").glob("demo/*/manifest.json"))
    llama.state.pooling = True  # the server restarted with a pooling mode: now it works
    out = run_json(
        cli, "embed", "--motivations", "demo", "-w", ws_path, "--backend", "openai",
        "--base-url", llama.url, "--api-key-env", KEY_ENV, "--json", "-q",
    )
    assert out["counts"]["dim"] == 64


def test_redaction_masks_secrets_not_settings():
    argv = [
        "--max-tokens", "800", "--api-key-env", "MY_KEY", "--tpm", "1000",
        "--api-key", "hunter2hunter2", "--token=abc123456", "--client-secret", "s3cr3tvalue",
        "--base-url", "https://user:sk-abcdefghijk@host/v1",
    ]
    out = redact_argv(argv)
    assert out[:6] == ["--max-tokens", "800", "--api-key-env", "MY_KEY", "--tpm", "1000"]
    assert out[6:11] == ["--api-key", "***", "--token=***", "--client-secret", "***"]
    assert "sk-abc" not in out[-1] and "***" in out[-1]


def test_the_manifest_records_max_tokens_and_a_rerun_reports_no_calls(ws_path, cli, monkeypatch):
    import lmmrec_cli.workspace as workspace

    with FakeOpenAI(api_key=API_KEY) as server:
        args = motivate_args(ws_path, server, "--max-tokens", "700")
        monkeypatch.setattr(workspace, "_invocation", ["lmmrec", *map(str, args)])
        out = run_json(cli, *args)
        manifest = json.loads((ws_path / "motivations" / "demo" / out["version"] / "manifest.json").read_text())
        assert "--max-tokens 700" in manifest["command"]
        assert out["llm"]["calls"] > 0
        again = run_json(cli, *args)
        assert again["reused"] and again["llm"]["calls"] == 0
        table = cli(*[a for a in args if a != "--json"])
        assert "0 calls this run" in table.output


def test_sample_is_its_own_version_and_embed_refuses_mostly_missing_text(ws_path, cli):
    with FakeOpenAI(api_key=API_KEY) as server:
        out = run_json(cli, *motivate_args(ws_path, server, "--sample", "4"))
        assert out["counts"]["items"] == 4 and 1 <= out["counts"]["users"] <= 4
        assert server.chat_calls() == out["counts"]["items"] + out["counts"]["users"]
    refused = cli("embed", "--motivations", "demo", "-w", ws_path, "-q")
    output = one_line_error(refused)
    assert "--allow-missing-text" in output
    ok = run_json(
        cli, "embed", "--motivations", "demo", "-w", ws_path, "--allow-missing-text", "--json", "-q"
    )
    share = ok["counts"]["missing_text_share"]
    assert share > 0.5
    status = json.loads(cli("status", "-w", ws_path, "--json").stdout)
    assert any(a["counts"].get("missing_text_share") == share for a in status["artifacts"])
    trained = cli(
        "train", "-d", "demo", "-m", "lightgcn", "--plugin", "lmmrec", "--embeddings", "demo",
        "--epochs", "1", "--dim", "8", "--device", "cpu", "-w", ws_path, "-q",
    )
    assert trained.exit_code == 0, trained.output
    assert "have no motivation text" in trained.output  # train says it too


def test_embed_on_a_failed_motivate_names_the_command(ws_path, cli):
    (ws_path / "motivations" / "demo").mkdir(parents=True)
    output = one_line_error(cli("embed", "--motivations", "demo", "-w", ws_path, "-q"))
    assert "lmmrec motivate" in output


def test_the_dry_run_counts_repairs_and_retries(ws_path, cli):
    out = run_json(cli, "motivate", "--dataset", "demo", "-w", ws_path, "--dry-run", "--json",
                   "--max-retries", "2")
    assert out["calls_max"] == 2 * out["calls"]
    assert out["http_attempts_max"] == 2 * out["calls"] * 3
    assert out["tokens_in_max"] > 2 * out["tokens_in"]


def test_status_cleans_leftovers_of_dead_builds_and_shows_live_ones(ws_path, cli):
    from filelock import FileLock

    parent = ws_path / "motivations" / "demo"
    for version in ("dead0001", "live0001"):
        (parent / ".staging" / version).mkdir(parents=True)
        (parent / ".staging" / version / "items.jsonl").write_text("{}\n")
    (parent / ".locks").mkdir()
    (parent / ".locks" / "dead0001.lock").touch()  # what a kill -9 leaves: no holder
    (parent / ".locks" / "gone0001.lock").touch()  # a lock file without staging
    runs = ws_path / "runs" / "r" / ".staging" / "run00001"  # resumable: kept
    runs.mkdir(parents=True)
    held = FileLock(str(parent / ".locks" / "live0001.lock"))
    held.acquire()
    try:
        out = json.loads(cli("status", "-w", ws_path, "--json").stdout)
    finally:
        held.release()
    cleaned = {p.split("/ws/", 1)[1] for p in out["cleaned"]}
    # (also the lock files finished builds leave: nobody holds them)
    assert all("/.locks/" in p or "/.staging/" in p for p in cleaned)
    assert {p for p in cleaned if p.startswith("motivations/")} == {
        "motivations/demo/.staging/dead0001",
        "motivations/demo/.locks/dead0001.lock",
        "motivations/demo/.locks/gone0001.lock",
    }
    assert (parent / ".staging" / "live0001").is_dir() and runs.is_dir()
    assert {u["version"] for u in out["unfinished"]} == {"live0001", "run00001"}
