"""Speed and memory of the trainer and the evaluator (a script, not a test).

    python benchmarks/bench_train.py                 # everything, CPU, prints a report
    python benchmarks/bench_train.py --quick         # fewer epochs and a smaller big case

On generated data of Amazon-book's shape (11,000 users, 9,332 items, ~120k training
interactions, power-law degrees) it measures, in the same process and run:

* seconds per epoch of the lmmrec trainer's LightGCN epoch (``train._Trainer._epoch``: sampling
  with rejection, edge dropout keep 0.8, 3 layers, BPR + reg, Adam) at batch 512 and 4096,
  against a minimal reference loop (plain PyTorch: CSR ``torch.sparse.mm`` with autograd, BPR,
  Adam, uniform negatives without rejection), with and without edge dropout;
* seconds per full-ranking evaluation of all test users (``evaluation.evaluate_split``) against a
  single chunked matmul + train mask + ``torch.topk`` pass;
* peak resident memory (``ru_maxrss``) and minor page faults of each phase, each phase in its
  own subprocess so the peaks do not mix; the glibc allocator settings in force are printed;
* peak memory of the chunked evaluator on a generated 1,000,000-user × 100,000-item case
  (random embeddings, sparse random training mask).

Ratios are what to read: the machine is shared and absolute seconds are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmmrec_cli.config import TrainConfig  # noqa: E402
from lmmrec_cli.console import Task  # noqa: E402
from lmmrec_cli.data.dataset import (  # noqa: E402
    INTERACTIONS_FILE,
    INTERACTIONS_SCHEMA,
    ITEMS_FILE,
    ITEMS_SCHEMA,
    USERS_FILE,
    USERS_SCHEMA,
    PreparedDataset,
    write_table,
)
from lmmrec_cli.evaluation import evaluate_split  # noqa: E402
from lmmrec_cli.metrics import full_ranking  # noqa: E402
from lmmrec_cli.models.base import NoPlugin  # noqa: E402
from lmmrec_cli.models.lightgcn import LightGCNConfig  # noqa: E402
from lmmrec_cli.plugin_setup import NO_PLUGIN  # noqa: E402
from lmmrec_cli.train import _Trainer  # noqa: E402
from lmmrec_cli.workspace import Workspace  # noqa: E402

MALLOC_VARS = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
               "MALLOC_TOP_PAD_", "LD_PRELOAD")


def usage() -> dict[str, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"maxrss_mib": r.ru_maxrss / 1024, "minflt": r.ru_minflt}


# -- data ----------------------------------------------------------------------------------


def power_law_pairs(n_users: int, n_items: int, n_pairs: int, seed: int,
                    alpha_users: float = 0.8, alpha_items: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs with Zipf-like degrees; every user and item appears."""
    rng = np.random.default_rng(seed)
    pu = 1.0 / np.arange(1, n_users + 1) ** alpha_users
    pi = 1.0 / np.arange(1, n_items + 1) ** alpha_items
    pu, pi = rng.permutation(pu / pu.sum()), rng.permutation(pi / pi.sum())
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < n_pairs:
        need = int((n_pairs - len(keys)) * 1.2) + 1000
        u = rng.choice(n_users, need, p=pu)
        i = rng.choice(n_items, need, p=pi)
        keys = np.unique(np.concatenate([keys, u.astype(np.int64) * n_items + i]))
    keys = rng.permutation(keys)[:n_pairs]
    return keys // n_items, keys % n_items


def amazon_shape_dataset(root: Path, seed: int = 0) -> PreparedDataset:
    """11,000 × 9,332, 120,464 train / 40,290 valid / 40,106 test (RLMRec's Amazon-book counts)."""
    n_users, n_items = 11_000, 9_332
    n_train, n_valid, n_test = 120_464, 40_290, 40_106
    users, items = power_law_pairs(n_users, n_items, n_train + n_valid + n_test, seed)
    split = np.array(["train"] * n_train + ["valid"] * n_valid + ["test"] * n_test, dtype=object)
    # every user and item gets a training interaction (as in the real split)
    rng = np.random.default_rng(seed + 1)
    train_mask = split == "train"
    for nodes, size in ((users, n_users), (items, n_items)):
        missing = np.setdiff1d(np.arange(size), nodes[train_mask])
        for node in missing:
            candidates = np.flatnonzero(nodes == node)
            if len(candidates):
                split[rng.choice(candidates)] = "train"
            train_mask = split == "train"
    ws = Workspace(root)
    build = ws.build("datasets", "amazon-shape", key={"bench": seed})
    with build:
        if not build.reused:
            order = np.lexsort((items, users))
            table = pa.table({
                "user": pa.array(users[order].astype(np.int32)),
                "item": pa.array(items[order].astype(np.int32)),
                "split": pa.array(split[order].tolist(), pa.string()),
                "rating": pa.nulls(len(users), pa.float32()),
                "timestamp": pa.nulls(len(users), pa.int64()),
            }, schema=INTERACTIONS_SCHEMA)
            write_table(table, build.dir / INTERACTIONS_FILE)
            write_table(pa.table({"user": pa.array(np.arange(n_users, dtype=np.int32)),
                                  "user_id": pa.array([str(u) for u in range(n_users)])},
                                 schema=USERS_SCHEMA), build.dir / USERS_FILE)
            write_table(pa.table({"item": pa.array(np.arange(n_items, dtype=np.int32)),
                                  "item_id": pa.array([str(i) for i in range(n_items)]),
                                  "title": pa.array([""] * n_items), "text": pa.array([""] * n_items)},
                                 schema=ITEMS_SCHEMA), build.dir / ITEMS_FILE)
    return PreparedDataset(build.ref)


# -- the reference loop --------------------------------------------------------------------


def reference_epoch(adj: torch.Tensor, emb: torch.nn.Parameter, optimizer: torch.optim.Optimizer,
                    train_u: torch.Tensor, train_i: torch.Tensor, n_users: int, n_items: int,
                    batch_size: int, keep_rate: float, layers: int = 3) -> None:
    """A plain PyTorch LightGCN epoch: CSR ``torch.sparse.mm`` (autograd), BPR, Adam.

    Edge dropout, when on, zeroes values on the fixed CSR structure (no rescaling)."""
    device = emb.device
    order = torch.randperm(train_u.numel(), device=device)
    users, pos = train_u[order], train_i[order]
    neg = torch.randint(n_items, users.shape, device=device)
    crow, col, values = adj.crow_indices(), adj.col_indices(), adj.values()
    for s in range(0, users.numel(), batch_size):
        u, p, n = users[s:s + batch_size], pos[s:s + batch_size], neg[s:s + batch_size]
        a = adj
        if keep_rate < 1.0:
            a = torch.sparse_csr_tensor(crow, col, values * (torch.rand(values.shape, device=device) < keep_rate),
                                        adj.shape)
        x, total = emb, emb
        for _ in range(layers):
            x = torch.sparse.mm(a, x)
            total = total + x
        eu, ei = total[:n_users], total[n_users:]
        uu, pp, nn_ = eu[u], ei[p], ei[n]
        loss = torch.nn.functional.softplus((uu * nn_).sum(-1) - (uu * pp).sum(-1)).mean()
        loss = loss + 1e-6 * emb.square().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def reference_adjacency(data: PreparedDataset) -> torch.Tensor:
    r = data.interactions.matrix("train")
    n_users, n_items = r.shape
    a = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    deg = np.asarray(a.sum(1)).ravel()
    d = sp.diags(np.where(deg > 0, deg, 1) ** -0.5)
    a = (d @ a @ d).tocsr()
    a.sort_indices()
    return torch.sparse_csr_tensor(torch.from_numpy(a.indptr.astype(np.int64)),
                                   torch.from_numpy(a.indices.astype(np.int64)),
                                   torch.from_numpy(a.data.astype(np.float32)), a.shape)


# -- phases (each runs in its own process) ---------------------------------------------------


CPU_TIMES: dict[str, float] = {}


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA kernels, so a timing covers the work and not just its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, repeats: int, label: str = "", device: torch.device = torch.device("cpu")) -> float:
    """Median wall seconds of ``repeats`` calls after one warm-up call; the median process CPU
    seconds go to ``CPU_TIMES[label]`` (steadier than wall time on a shared machine)."""
    fn()
    synchronize(device)
    walls, cpus = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    if label:
        CPU_TIMES[label] = float(np.median(cpus))
    return float(np.median(walls))


def gpu_peak(device: torch.device) -> dict:
    """Peak CUDA memory allocated by this process's tensors (empty on a CPU)."""
    if device.type != "cuda":
        return {}
    return {"gpu_peak_mib": torch.cuda.max_memory_allocated(device) / 2**20}


def phase_train(args: argparse.Namespace) -> dict:
    data = amazon_shape_dataset(Path(args.workdir))
    device = torch.device(args.device)
    out: dict = {"phase": "train"}
    for batch in (512, 4096):
        config = TrainConfig(batch_size=batch, device=args.device, seed=0)
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = _Trainer(data, "lightgcn", LightGCNConfig(), config, NO_PLUGIN,
                               device, Path(run_dir), None, [])  # type: ignore[arg-type]
            epoch = iter(range(10**6))
            before = usage()
            out[f"trainer_b{batch}_s"] = timed(
                lambda t=trainer, e=epoch: t._epoch(next(e), Task(None, None)),
                args.repeats, f"trainer_b{batch}", device)
            out[f"trainer_b{batch}_minflt_per_epoch"] = (usage()["minflt"] - before["minflt"]) / (args.repeats + 1)
        graph = trainer.graph
        adj = reference_adjacency(data).to(device)
        torch.manual_seed(0)
        for keep in (0.8, 1.0):
            emb = torch.nn.Parameter(torch.nn.init.xavier_uniform_(torch.empty(graph.n_nodes, 32, device=device)))
            optimizer = torch.optim.Adam([emb], lr=3e-3)
            before = usage()
            out[f"reference_b{batch}_keep{keep}_s"] = timed(
                lambda e=emb, o=optimizer, k=keep, a=adj, g=graph, b=batch: reference_epoch(
                    a, e, o, g.train_users, g.train_items, g.n_users, g.n_items, b, k),
                args.repeats, f"reference_b{batch}_keep{keep}", device)
            minflt = usage()["minflt"] - before["minflt"]
            out[f"reference_b{batch}_keep{keep}_minflt_per_epoch"] = minflt / (args.repeats + 1)
    out["cpu"] = dict(CPU_TIMES)
    out.update(usage())
    out.update(gpu_peak(device))
    return out


def phase_eval(args: argparse.Namespace) -> dict:
    data = amazon_shape_dataset(Path(args.workdir))
    device = torch.device(args.device)
    config = TrainConfig(device=args.device)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = _Trainer(data, "lightgcn", LightGCNConfig(), config, NO_PLUGIN,
                           device, Path(run_dir), None, [])  # type: ignore[arg-type]
    model = trainer.model
    model.eval()
    inter = data.interactions
    train_csr, test_csr = inter.matrix("train"), inter.matrix("test")
    chunk = args.chunk

    def ours() -> None:
        evaluate_split(model, NoPlugin(), data, split="test", ks=(5, 10, 20), chunk_size=chunk,
                       device=device)

    def single_pass() -> None:
        with torch.no_grad():
            emb = model.final()
            users = np.flatnonzero(np.diff(test_csr.indptr) > 0)
            for s in range(0, len(users), chunk):
                c = users[s:s + chunk]
                scores = emb.users[torch.from_numpy(c).to(device)] @ emb.items.T
                sub = train_csr[c]
                rows = torch.from_numpy(np.repeat(np.arange(len(c)), np.diff(sub.indptr))).to(device)
                scores[rows, torch.from_numpy(sub.indices.astype(np.int64)).to(device)] = -float("inf")
                torch.topk(scores, 20, dim=1)[1].cpu()  # the ranking leaves the device, as the evaluator's does

    before = usage()
    out = {"phase": "eval", "evaluator_s": timed(ours, args.repeats, "evaluator", device),
           "evaluator_minflt": (usage()["minflt"] - before["minflt"]) / (args.repeats + 1)}
    out["single_pass_s"] = timed(single_pass, args.repeats, "single_pass", device)
    out["cpu"] = dict(CPU_TIMES)
    out["test_users"] = int((np.diff(test_csr.indptr) > 0).sum())
    out.update(usage())
    out.update(gpu_peak(device))
    return out


def phase_big(args: argparse.Namespace) -> dict:
    """Chunked evaluator on n_users × n_items with random embeddings and a sparse train mask."""
    n_users, n_items, d = args.big_users, args.big_items, 32
    rng = np.random.default_rng(0)
    start = usage()
    per_user = 10
    train = sp.csr_matrix((np.ones(n_users * per_user, dtype=np.float32),
                           rng.integers(0, n_items, n_users * per_user, dtype=np.int64).astype(np.int32),
                           np.arange(0, n_users * per_user + 1, per_user, dtype=np.int64)),
                          shape=(n_users, n_items))
    test_users = np.sort(rng.choice(n_users, args.big_test_users, replace=False))
    counts = np.zeros(n_users, dtype=np.int64)
    counts[test_users] = 2
    test = sp.csr_matrix((np.ones(counts.sum(), dtype=np.float32),
                          rng.integers(0, n_items, counts.sum()).astype(np.int32),
                          np.concatenate([[0], np.cumsum(counts)])), shape=(n_users, n_items))
    users_emb = torch.randn(n_users, d)
    items_emb = torch.randn(n_items, d)
    loaded = usage()
    began = time.perf_counter()
    result = full_ranking(lambda u: users_emb[u] @ items_emb.T, test, train, ks=(5, 10, 20),
                          chunk_size=args.chunk, device="cpu")
    seconds = time.perf_counter() - began
    return {"phase": "big", "users": n_users, "items": n_items, "evaluated_users": len(result.users),
            "train_nnz": int(train.nnz), "chunk": args.chunk, "seconds": seconds,
            "rss_before_data_mib": start["maxrss_mib"], "rss_after_data_mib": loaded["maxrss_mib"],
            **usage()}


# -- driver --------------------------------------------------------------------------------


def run_phase(phase: str, args: argparse.Namespace, env_extra: dict[str, str] | None = None) -> dict:
    env = {**os.environ, **(env_extra or {})}
    cmd = [sys.executable, __file__, "--phase", phase, "--workdir", args.workdir,
           "--repeats", str(args.repeats), "--chunk", str(args.chunk), "--threads", str(args.threads),
           "--big-users", str(args.big_users), "--big-items", str(args.big_items),
           "--big-test-users", str(args.big_test_users), "--device", args.device]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"phase {phase} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=["train", "eval", "big"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs / passes per measurement")
    parser.add_argument("--chunk", type=int, default=2048, help="evaluation chunk (users)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--big-users", type=int, default=1_000_000)
    parser.add_argument("--big-items", type=int, default=100_000)
    parser.add_argument("--big-test-users", type=int, default=50_000,
                        help="users with test items in the big case (all 1M users' data is loaded)")
    parser.add_argument("--device", default="cpu",
                        help="cpu or cuda[:N]: where the trainer, the reference loop and the evaluator run "
                             "(the big case stays on the CPU)")
    parser.add_argument("--quick", action="store_true", help="1 repeat, a 200k-user big case")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--malloc-compare", action="store_true",
                        help="repeat the train phase with glibc's mmap/trim thresholds raised")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.phase:
        args.workdir = args.workdir or tempfile.mkdtemp()
        result = {"train": phase_train, "eval": phase_eval, "big": phase_big}[args.phase](args)
        print(json.dumps(result))
        return
    if args.quick:
        args.repeats, args.big_users, args.big_test_users = 1, 200_000, 10_000
    owned = args.workdir is None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="lmmrec-bench-")
    print(f"torch {torch.__version__}, threads {args.threads}, cpu count {os.cpu_count()}, device {args.device}"
          + (f" ({torch.cuda.get_device_name(torch.device(args.device))})" if args.device.startswith("cuda") else ""))
    print("allocator: glibc malloc; " + ", ".join(f"{v}={os.environ.get(v, '(unset)')}" for v in MALLOC_VARS))
    train = run_phase("train", args)
    for batch in (512, 4096):
        t = train[f"trainer_b{batch}_s"]
        r8, r1 = train[f"reference_b{batch}_keep0.8_s"], train[f"reference_b{batch}_keep1.0_s"]
        cpu = train["cpu"]
        ct, c8, c1 = (cpu[f"trainer_b{batch}"], cpu[f"reference_b{batch}_keep0.8"],
                      cpu[f"reference_b{batch}_keep1.0"])
        print(f"LightGCN epoch, batch {batch:>4} (wall s | CPU s): trainer {t:.2f} | {ct:.2f}; "
              f"reference keep 0.8 {r8:.2f} | {c8:.2f} (ratio wall {t / r8:.2f}, CPU {ct / c8:.2f}); "
              f"reference no dropout {r1:.2f} | {c1:.2f} (ratio wall {t / r1:.2f}, CPU {ct / c1:.2f}); "
              f"minor faults/epoch trainer {train[f'trainer_b{batch}_minflt_per_epoch']:.0f}, "
              f"reference {train[f'reference_b{batch}_keep0.8_minflt_per_epoch']:.0f}")
    print(f"train phase peak RSS {train['maxrss_mib']:.0f} MiB"
          + (f", peak GPU memory {train['gpu_peak_mib']:.0f} MiB" if "gpu_peak_mib" in train else ""))
    if args.malloc_compare:
        tuned_env = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
                     "MALLOC_TOP_PAD_": str(256 << 20)}
        tuned = run_phase("train", args, tuned_env)
        for batch in (512, 4096):
            print(f"  with {tuned_env}: batch {batch} (wall s | CPU s): trainer "
                  f"{tuned[f'trainer_b{batch}_s']:.2f} | {tuned['cpu'][f'trainer_b{batch}']:.2f}, "
                  f"reference keep 0.8 {tuned[f'reference_b{batch}_keep0.8_s']:.2f} | "
                  f"{tuned['cpu'][f'reference_b{batch}_keep0.8']:.2f}; minor faults/epoch trainer "
                  f"{tuned[f'trainer_b{batch}_minflt_per_epoch']:.0f}")
    ev = run_phase("eval", args)
    ce, cs = ev["cpu"]["evaluator"], ev["cpu"]["single_pass"]
    print(f"full-ranking evaluation of {ev['test_users']:,} test users (chunk {args.chunk}), wall s | CPU s: "
          f"evaluator {ev['evaluator_s']:.2f} | {ce:.2f}; single matmul+mask+topk pass "
          f"{ev['single_pass_s']:.2f} | {cs:.2f} (ratio wall {ev['evaluator_s'] / ev['single_pass_s']:.2f}, "
          f"CPU {ce / cs:.2f}); peak RSS {ev['maxrss_mib']:.0f} MiB"
          + (f", peak GPU memory {ev['gpu_peak_mib']:.0f} MiB" if "gpu_peak_mib" in ev else ""))
    if not args.skip_big:
        big = run_phase("big", args)
        print(f"big case (wall) {big['users']:,} users × {big['items']:,} items, {big['train_nnz']:,} masked train "
              f"pairs, {big['evaluated_users']:,} evaluated users, chunk {big['chunk']}: "
              f"{big['seconds']:.1f} s, peak RSS {big['maxrss_mib'] / 1024:.2f} GiB "
              f"(after data {big['rss_after_data_mib'] / 1024:.2f} GiB)")
    if owned:
        import shutil

        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
