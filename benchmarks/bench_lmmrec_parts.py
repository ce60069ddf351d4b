"""Where an LMMRec training step's time goes, part by part, next to its base model's step.

Same generated Amazon-book-shaped data and text vectors as ``bench_plugins.py``. Each part is
timed on its own (median of ``--repeats`` runs, this process's CPU time by default so other
tenants of a shared machine do not count), forward and backward where the part has a
gradient:

* base step: the base model's training forward, its loss and backward (no optimiser);
* teacher propagation: the EMA teacher's clean forward (no gradient);
* EMA update of the teacher's parameters;
* student text encoder (Eq. 3) and prototypes (Eqs. 5–6, with the per-layer gathers);
* teacher text encoder and prototypes (no gradient);
* MCS + ICM (Eqs. 7–9) on the ``[3, B, B]`` similarity matrices, fused and in the plain
  autograd form, and ``exp`` against ``exp2`` of one such matrix (the fused form uses ``exp2``);
* the arithmetic floor of any exact MCS + ICM: one ``[3, B, d] × [3, d, B]`` product in
  cache-sized row tiles. An exact step needs at least four (the student's and the teacher's
  logits, the gradient towards each side of the student's) and the exponentials of two.

Run::

    python benchmarks/bench_lmmrec_parts.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from bench_plugins import generated_workload

from lmmrec_cli.models.base import Embeddings
from lmmrec_cli.models.registry import MODELS
from lmmrec_cli.plugins.alignment import alignment_losses, alignment_losses_autograd, ema_update
from lmmrec_cli.plugins.lmmrec import LMMRecConfig, LMMRecPlugin


def median_time(part: Callable[[], object], repeats: int, clock: Callable[[], float]) -> float:
    part()  # warm-up
    times = []
    for _ in range(repeats):
        start = clock()
        part()
        times.append(clock() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--text-dim", type=int, default=1536)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--model", default="lightgcn", choices=sorted(MODELS))
    parser.add_argument("--clock", choices=("process", "wall"), default="process")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    clock = time.process_time if args.clock == "process" else time.perf_counter
    graph, user_text, item_text, batches = generated_workload(11_000, 9_332, 120_000, args.text_dim, args.batch,
                                                              torch.device("cpu"))
    batch = batches[0]
    model_cls = MODELS[args.model]
    model = model_cls(graph.n_users, graph.n_items, graph, model_cls.Config())
    plugin = LMMRecPlugin(model, user_text, item_text, LMMRecConfig())
    item_rows = torch.cat([batch.pos, batch.neg])

    def base_step() -> None:
        emb = model.propagate(training=True)
        sum(model.loss(batch, emb).values()).backward()

    # Student parts run on detached copies of one training forward, so only their own
    # backward is timed.
    emb = model.propagate(training=True)
    student = Embeddings(emb.users.detach(), emb.items.detach(),
                         [layer.detach().requires_grad_() for layer in emb.layers], emb.readout,
                         emb.ego.detach() if emb.ego is not None else None)
    text_rows = torch.cat([plugin.user_text[batch.users], plugin.item_text[item_rows]])

    def student_text() -> None:
        plugin.text_encoder(text_rows).sum().backward()

    def student_prototypes() -> None:
        plugin.interaction.motivation(student, batch.users, item_rows, plugin.n_users,
                                      per_layer=True, use_gcn=True).sum().backward()

    teacher = plugin.teacher_model.final()

    @torch.no_grad()
    def teacher_views() -> None:
        plugin.teacher_encoder(text_rows)
        plugin.teacher_interaction.motivation(teacher, batch.users, item_rows, plugin.n_users,
                                              per_layer=True, use_gcn=True)

    dim = student.layers[0].shape[1]
    generator = torch.Generator().manual_seed(1)
    views = [torch.randn(3, args.batch, dim, generator=generator) for _ in range(4)]
    text, interaction = (v.requires_grad_() for v in views[:2])

    def alignment(losses=alignment_losses) -> None:
        mcs, icm = losses(text, interaction, views[2], views[3], 0.2)
        (1e-2 * mcs + 6.7e-3 * icm).backward()

    logits = torch.randn(3, args.batch, args.batch, generator=generator) * 5  # |S| ≤ 1/ψ = 5
    tile = max(1, min(args.batch, 64))

    def one_product() -> None:
        for start in range(0, args.batch, tile):
            torch.bmm(views[0][:, start:start + tile].detach(), views[1].detach().transpose(1, 2))

    parts: dict[str, Callable[[], object]] = {
        f"{args.model} step (forward, loss, backward)": base_step,
        "teacher propagation (no grad)": lambda: plugin.teacher_model.final(),
        "EMA update": lambda: ema_update(plugin._teacher_parameters(), plugin._student_parameters(), 0.995),
        "student text encoder, fwd+bwd": student_text,
        "student prototypes + gathers, fwd+bwd": student_prototypes,
        "teacher text encoder + prototypes": teacher_views,
        "MCS + ICM on [3, B, B], fwd+bwd": alignment,
        "  the same, plain autograd form (reference)": lambda: alignment(alignment_losses_autograd),
        "  exp of one [3, B, B] array": lambda: torch.exp(logits),
        "  exp2 of one [3, B, B] array": lambda: torch.exp2(logits),
        "  one [3, B, d] x [3, d, B] product, row tiles": one_product,
    }
    print(f"{args.model}, batch {args.batch}, {args.threads} thread(s), {args.clock} clock, "
          f"median of {args.repeats}")
    base = None
    for label, part in parts.items():
        seconds = median_time(part, args.repeats, clock)
        base = base or seconds
        print(f"  {label:<44}{seconds * 1e3:8.2f} ms {seconds / base:7.2f} × base step")


if __name__ == "__main__":
    main()
