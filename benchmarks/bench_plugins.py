"""Time per training step of a base model alone and with each plugin (issue 5 "Cost").

Generated data of Amazon-book's shape (RLMRec Table 5: 11,000 users, 9,332 items; ~120k
training interactions, long-tailed item popularity) with random unit-norm 1536-d text vectors
(ada-002's width), batch 4096 unless ``--batch``, the base model (``--model``, LightGCN by
default) with its default settings. A step is exactly the
trainer's: ``input_offset → propagate(training=True) → model.loss | plugin.loss → backward →
Adam``. In each round every plugin's steps run right after as many base steps, and the ratio
reported is the median of these paired ratios (with their range), so load from other processes
on a shared machine hits both sides of a ratio alike. Plugin construction (the RQ k-means of
UIST / AutoGraph) is timed once.

The row "lmmrec (alignment untiled ...)" runs LMMRec with the ``[3, B, B]`` similarity
arrays built whole (``alignment.TILE_ELEMENTS`` raised to ``3·B²``) next to the tiled default,
in the same run. The process's peak RSS (and on CUDA its peak GPU memory) is printed last.

Run::

    python benchmarks/bench_plugins.py --batch 512 --steps 4 --rounds 3 --threads 1
    python benchmarks/bench_plugins.py --batch 4096 --steps 2 --rounds 3 --threads 1 --only lmmrec
    python benchmarks/bench_plugins.py --device cuda --only lmmrec    # CUDA: timings synchronise
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from lmmrec_cli.models.base import BaseModel, NoPlugin, Plugin
from lmmrec_cli.models.graph import Graph, NegativeSampler, epoch_batches
from lmmrec_cli.models.registry import MODELS
from lmmrec_cli.plugins import alignment
from lmmrec_cli.plugins.lmmrec import LMMRecConfig, LMMRecPlugin
from lmmrec_cli.plugins.registry import PLUGINS
from lmmrec_cli.plugins.rlmrec_con import RLMRecConConfig


def amazon_book_like(n_users: int, n_items: int, n_interactions: int, seed: int) -> Graph:
    """Users with a geometric-ish number of items, items drawn with Zipf-like popularity."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    users = rng.integers(0, n_users, n_interactions)
    users[:n_users] = np.arange(n_users)  # every user has at least one interaction
    items = rng.choice(n_items, n_interactions, p=popularity)
    return Graph(n_users, n_items, users, items)


def unit_rows(n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, dim, generator=generator), dim=1)


def generated_workload(n_users: int, n_items: int, n_interactions: int, text_dim: int, batch: int,
                       device: torch.device) -> tuple[Graph, torch.Tensor, torch.Tensor, list]:
    """The graph, unit-norm user and item text vectors and one epoch's batches, all seeded."""
    graph = amazon_book_like(n_users, n_items, n_interactions, seed=0)
    generator = torch.Generator().manual_seed(0)
    user_text = unit_rows(n_users, text_dim, generator)
    item_text = unit_rows(n_items, text_dim, generator)
    batches = epoch_batches(graph.to(device), NegativeSampler(graph), batch,
                            torch.Generator().manual_seed(0), device)
    return graph, user_text, item_text, batches


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA kernels, so a timing covers the work and not just its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_runner(model: BaseModel, plugin: Plugin, batches: list,
                clock: Callable[[], float] = time.perf_counter) -> Callable[[int], float]:
    """A function timing ``k`` consecutive trainer steps, returning seconds per step."""
    device = next(model.parameters()).device
    params = list(model.parameters()) + [p for p in plugin.parameters() if p.requires_grad]
    adam = torch.optim.Adam(params, lr=1e-3)
    position = [0]

    def run(k: int) -> float:
        synchronize(device)
        start = clock()
        for _ in range(k):
            batch = batches[position[0] % len(batches)]
            position[0] += 1
            plugin.on_step_begin(position[0], len(batches), 0)
            offset = plugin.input_offset()
            emb = model.propagate(training=True, ego_offset=offset)
            terms = model.loss(batch, emb) | plugin.loss(batch, emb, model)
            adam.zero_grad(set_to_none=True)
            sum(terms.values()).backward()
            adam.step()
        synchronize(device)
        return (clock() - start) / k

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=11_000)
    parser.add_argument("--items", type=int, default=9_332)
    parser.add_argument("--interactions", type=int, default=120_000)
    parser.add_argument("--text-dim", type=int, default=1536)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=5, help="steps per timing round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="lightgcn", choices=sorted(MODELS), help="base model")
    parser.add_argument("--clock", choices=("wall", "process"), default="wall",
                        help="wall: elapsed time (what an epoch costs); process: this process's CPU time, "
                             "which leaves out time a shared machine's other tenants take")
    parser.add_argument("--only", default="", help="comma-separated plugin names to time (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    graph, user_text, item_text, batches = generated_workload(
        args.users, args.items, args.interactions, args.text_dim, args.batch, device)
    print(f"graph: {graph.n_users} users, {graph.n_items} items, {graph.n_edges // 2} "
          f"interactions; text {args.text_dim}-d; batch {args.batch}; {len(batches)} steps/epoch; "
          f"device {device}, {torch.get_num_threads()} threads, {args.clock} clock")

    base_label = f"{args.model} (base)"
    configs: dict[str, Callable[[BaseModel], Plugin]] = {base_label: lambda m: NoPlugin()}
    for name, cls in PLUGINS.items():
        configs[name] = lambda m, cls=cls: cls(m, user_text, item_text)
    configs["rlmrec-con (batch users)"] = lambda m: PLUGINS["rlmrec-con"](
        m, user_text, item_text, RLMRecConConfig(user_negatives="batch"))
    configs["lmmrec"] = lambda m: LMMRecPlugin(m, user_text, item_text, LMMRecConfig())
    configs["lmmrec (text_dim 0: Eq. 3 on full vectors)"] = lambda m: LMMRecPlugin(
        m, user_text, item_text, LMMRecConfig(text_dim=0))
    configs["lmmrec w/o ICM"] = lambda m: LMMRecPlugin(m, user_text, item_text, LMMRecConfig(use_icm=False))
    configs["lmmrec (teacher_refresh_steps 1: exact)"] = lambda m: LMMRecPlugin(
        m, user_text, item_text, LMMRecConfig(teacher_refresh_steps=1))
    configs["lmmrec (teacher_refresh_steps 8)"] = lambda m: LMMRecPlugin(
        m, user_text, item_text, LMMRecConfig(teacher_refresh_steps=8))
    tile_budgets: dict[str, int] = {}
    materialised = "lmmrec (alignment untiled: 3×B×B arrays whole)"
    configs[materialised] = configs["lmmrec"]
    tile_budgets[materialised] = 3 * args.batch * args.batch
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        configs = {k: v for k, v in configs.items() if k == base_label or k.split(" ")[0] in wanted or k in wanted}

    runners: dict[str, Callable[[int], float]] = {}
    for label, build in configs.items():
        model_cls = MODELS[args.model]
        model = model_cls(args.users, args.items, graph, model_cls.Config()).to(device)
        start = time.perf_counter()
        plugin = build(model).to(device)
        built = time.perf_counter() - start
        clock = time.perf_counter if args.clock == "wall" else time.process_time
        runners[label] = step_runner(model, plugin, batches, clock)
        if label in tile_budgets:
            runners[label] = with_tile_budget(runners[label], device, tile_budgets[label])
        runners[label](1)  # warm-up (allocations, first-call overheads)
        print(f"  built {label}: {built:.2f} s")

    # Paired timing: each plugin's k steps right after k base steps, so both see the same load
    # (a shared machine's load swings the base by several times over minutes); the reported ratio
    # is the median of the paired ratios.
    times: dict[str, list[float]] = {label: [] for label in runners}
    ratios: dict[str, list[float]] = {label: [] for label in runners}
    for _ in range(args.rounds):
        for label, run in runners.items():
            if label == base_label:
                continue
            base_time = runners[base_label](args.steps)
            plugin_time = run(args.steps)
            times[base_label].append(base_time)
            times[label].append(plugin_time)
            ratios[label].append(plugin_time / base_time)
    ratios[base_label] = [1.0]
    print(f"\n{'configuration':<48}{'s/step':>10}{'× base':>9}{'ratio range':>16}"
          f"{'s/epoch (est.)':>16}")
    for label, values in times.items():
        median = statistics.median(values)
        spread = f"{min(ratios[label]):.2f}-{max(ratios[label]):.2f}"
        print(f"{label:<48}{median:>10.3f}{statistics.median(ratios[label]):>9.2f}{spread:>16}"
              f"{median * len(batches):>16.1f}")
    peak = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (all rows, one process)"
    if device.type == "cuda":
        peak += f"; peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"
    print(peak)


def with_tile_budget(run: Callable[[int], float], device: torch.device, elements: int) -> Callable[[int], float]:
    """``run`` with the alignment's tile budget on ``device`` set to ``elements`` while it runs."""
    key = device.type if device.type in alignment.TILE_ELEMENTS else "cpu"

    def timed(k: int) -> float:
        saved = alignment.TILE_ELEMENTS[key]
        alignment.TILE_ELEMENTS[key] = elements
        try:
            return run(k)
        finally:
            alignment.TILE_ELEMENTS[key] = saved

    return timed

if __name__ == "__main__":
    main()
