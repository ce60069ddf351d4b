"""Speed of the LLM layer against the fake OpenAI server (tests/fake_openai.py).

1. Throughput: N chat calls at concurrency C, the server answering each after 200 ms; the
   ideal is C / 0.2 calls per second. Runs the real path: ChatClient (AsyncOpenAI over HTTP),
   Asker (validation), answers stored in a fresh disk cache. The clock starts once the client
   is built: importing openai (about a second, once per process) is start-up, reported as
   client_startup_s, and share_of_ideal_incl_startup counts it in as well.
2. Fully cached rerun of ~10,000 entities: `lmmrec motivate` as a subprocess on a demo
   dataset whose answers are all in the cache (prefilled through the same request keys a
   real run uses), pointed at an unreachable server so any call would show as a failure.
3. `embed --backend tfidf` over 50,000 texts (the encoder alone, and the command on the
   10k-entity motivations from step 2).

Usage: python benchmarks/bench_llm.py [--calls 2000] [--concurrency 32] [--latency 0.2]
       [--workdir /tmp/lmmrec-bench] [--skip-cached] [--skip-embed]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lmmrec_cli.console import SILENT  # noqa: E402
from lmmrec_cli.llm.ask import Asker, EntityRequest, store_answer  # noqa: E402
from lmmrec_cli.llm.cache import AnswerCache  # noqa: E402
from lmmrec_cli.llm.client import ChatClient, ChatSettings  # noqa: E402
from lmmrec_cli.llm.prompts import PromptSet  # noqa: E402
from lmmrec_cli.llm.runner import answer_all  # noqa: E402
from lmmrec_cli.llm.schema import Answer  # noqa: E402

LMMREC = [sys.executable, "-m", "lmmrec_cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_openai.py"), "--port", str(port), "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    url = process.stdout.readline().strip()  # printed once listening
    return process, url


def throughput(url: str, calls: int, concurrency: int, latency: float) -> dict:
    prompts = PromptSet.load()
    system = prompts.render("system")
    requests = [
        EntityRequest(
            "item", n, f"bench-{n}",
            (("system", system), ("user", f"Title: bench item {n}\n" + "review text " * 120)),
            "bench",
        )
        for n in range(calls)
    ]
    os.environ.setdefault("BENCH_KEY", "sk-bench-000000000000")
    settings = ChatSettings(
        model="bench", base_url=url, api_key_env="BENCH_KEY", concurrency=concurrency, max_retries=0
    )

    cpu_used = [0.0]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp, AnswerCache(Path(tmp) / "cache") as cache:

        async def run() -> tuple[float, float, int, int, Counter]:
            chat = ChatClient(settings)
            asker = Asker(chat, cache, prompts)
            # Building the client imports openai (about a second, once per process): start-up,
            # reported apart from the calls, whose rate is what the target is about.
            start = time.perf_counter()
            chat.openai  # noqa: B018
            startup = time.perf_counter() - start
            start = time.perf_counter()
            cpu_start = time.process_time()
            outcomes = await answer_all(asker, requests, SILENT, "bench")
            elapsed = time.perf_counter() - start
            cpu_used[0] = time.process_time() - cpu_start
            await chat.aclose()
            reasons = Counter(o.reason for o in outcomes if o.answer is None)
            answered = sum(o.answer is not None for o in outcomes)
            return startup, elapsed, answered, chat.stats.requests, reasons

        startup, elapsed, answered, made, reasons = asyncio.run(run())
    ideal = concurrency / latency
    rate = made / elapsed
    return {
        "calls": made, "answered": answered, "concurrency": concurrency, "latency_s": latency,
        "seconds": round(elapsed, 2), "calls_per_s": round(rate, 1), "ideal_per_s": ideal,
        "share_of_ideal": round(rate / ideal, 3), "failures": dict(reasons),
        "client_startup_s": round(startup, 2),
        "share_of_ideal_incl_startup": round(made / (elapsed + startup) / ideal, 3),
        # What the client itself costs: on an idle core it could sustain 1000/ms_per_call.
        "client_cpu_ms_per_call": round(1000 * cpu_used[0] / max(made, 1), 2),
        "load_average_before": round(load_before, 2), "cpu_cores": os.cpu_count(),
    }


def prefill(workdir: Path, users: int, items: int) -> None:
    """A demo dataset and every answer a run would ask for, stored under the real keys."""
    from lmmrec_cli.data.dataset import PreparedDataset
    from lmmrec_cli.llm.entities import PromptOptions, item_requests, user_requests
    from lmmrec_cli.motivations import Motivation
    from lmmrec_cli.workspace import Workspace

    if not (workdir / "datasets" / "demo").exists():
        subprocess.run(
            [*LMMREC, "prepare", "--dataset", "demo", "--demo-users", str(users), "--demo-items", str(items),
             "-w", str(workdir), "-q"],
            check=True,
        )
    ws = Workspace(workdir)
    dataset = PreparedDataset.open(ws, "demo")
    prompts = PromptSet.load()
    options = PromptOptions()
    settings = ChatSettings()  # the command's defaults: gpt-4o-mini, temperature 0, 800 tokens

    def answer(request: EntityRequest) -> Answer:
        return Answer([f"quality of {request.entity_id}", "good value"], ["slow service"],
                      f"Motivations of {request.entity_id}: people like its quality and value.", "bench")

    with AnswerCache.for_workspace(ws) as cache:
        known = {}
        for request in item_requests(dataset, prompts, options):
            key = request.key(settings)
            if cache.get(key) is None:
                store_answer(cache, key, answer(request), model="bench", via="prefill", usage={})
            a = answer(request)
            known[request.index] = Motivation(request.index, request.entity_id, a.active, a.passive, a.summary)
        for request in user_requests(dataset, prompts, options, known):
            key = request.key(settings)
            if cache.get(key) is None:
                store_answer(cache, key, answer(request), model="bench", via="prefill", usage={})


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cached_rerun(workdir: Path) -> dict:
    env = dict(os.environ, BENCH_KEY="sk-bench-000000000000")
    command = [*LMMREC, "motivate", "--dataset", "demo", "-w", str(workdir), "--base-url", "http://127.0.0.1:9/v1",
               "--api-key-env", "BENCH_KEY", "--json", "-q", "--name", f"rerun-{int(time.time())}"]
    start, cpu = time.perf_counter(), child_cpu()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed, cpu = time.perf_counter() - start, child_cpu() - cpu
    if result.returncode != 0:
        raise SystemExit(f"cached rerun failed: {result.stderr.strip()}")
    out = json.loads(result.stdout)
    return {
        "entities": out["counts"]["items"] + out["counts"]["users"], "calls": out["llm"]["calls"],
        "cache_hits": out["llm"]["cache_hits"], "seconds_incl_startup": round(elapsed, 2),
        "cpu_seconds": round(cpu, 2), "load_average_before": round(os.getloadavg()[0], 2),
        "name": out["motivations"],
    }


def embed_bench(workdir: Path, motivations_name: str | None, n_texts: int) -> dict:
    from lmmrec_cli.data.demo import ASPECTS
    from lmmrec_cli.llm.backends_embed import EncoderStats, TfidfEncoder

    rng = random.Random(0)
    phrases = [p for a in ASPECTS for p in (a.name, *a.praise, *a.complaint)]
    texts = [
        f"Seeks {rng.choice(phrases)}, {rng.choice(phrases)} and {rng.choice(phrases)}. "
        f"Avoids {rng.choice(phrases)}. " + " ".join(rng.choice(phrases) for _ in range(8))
        for _ in range(n_texts)
    ]
    start, cpu = time.perf_counter(), time.process_time()
    vectors = TfidfEncoder(256, EncoderStats()).encode(texts, SILENT)
    encoder_s, cpu = time.perf_counter() - start, time.process_time() - cpu
    out = {"texts": n_texts, "dim": int(vectors.shape[1]), "encoder_seconds": round(encoder_s, 2),
           "encoder_cpu_seconds": round(cpu, 2), "load_average_before": round(os.getloadavg()[0], 2)}
    if motivations_name:
        start, cpu = time.perf_counter(), child_cpu()
        result = subprocess.run(
            [*LMMREC, "embed", "--motivations", motivations_name, "-w", str(workdir), "--json", "-q",
             "--name", f"bench-{int(time.time())}"],
            capture_output=True, text=True,
        )
        if result.returncode == 0:
            counts = json.loads(result.stdout)["counts"]
            out["command_entities"] = counts["users"] + counts["items"]
            out["command_seconds_incl_startup"] = round(time.perf_counter() - start, 2)
            out["command_cpu_seconds"] = round(child_cpu() - cpu, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "lmmrec-bench")
    parser.add_argument("--demo-users", type=int, default=8500)
    parser.add_argument("--demo-items", type=int, default=1600)
    parser.add_argument("--embed-texts", type=int, default=50_000)
    parser.add_argument("--skip-cached", action="store_true")
    parser.add_argument("--skip-embed", action="store_true")
    args = parser.parse_args()

    results: dict = {}
    process, url = start_server(args.latency)
    try:
        results["throughput"] = throughput(url, args.calls, args.concurrency, args.latency)
        print(json.dumps({"throughput": results["throughput"]}), flush=True)
    finally:
        process.terminate()
        process.wait()
    rerun_name = None
    if not args.skip_cached:
        prefill(args.workdir, args.demo_users, args.demo_items)
        results["cached_rerun"] = cached_rerun(args.workdir)
        rerun_name = results["cached_rerun"]["name"]
        print(json.dumps({"cached_rerun": results["cached_rerun"]}), flush=True)
    if not args.skip_embed:
        results["embed_tfidf"] = embed_bench(args.workdir, rerun_name, args.embed_texts)
        print(json.dumps({"embed_tfidf": results["embed_tfidf"]}), flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
