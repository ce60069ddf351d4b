"""PNG plots of a report (matplotlib, headless Agg backend, imported only when plots are drawn).

* ``curves-<dataset>-<model>.png``: training loss and the validation selection metric per epoch
  (``log.jsonl``), one colour per method, one line per seed;
* ``bars-<dataset>.png``: test metrics per model and method, mean with the std over seeds;
* ``noise-<dataset>-<model>.png``: metric vs noise ratio, one line per method (Fig. 2).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lmmrec_cli.config import TrainConfig
from lmmrec_cli.report import (
    TABLE1_METRICS,
    Group,
    Report,
    noise_metrics,
    noise_series,
    short_metric,
)
from lmmrec_cli.workspace import atomic_output


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def write_png(figure: Any, path: Path) -> None:
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _colours(plt: Any, labels: list[str]) -> dict[str, Any]:
    cycle = plt.get_cmap("tab10")
    return {label: cycle(i % 10) for i, label in enumerate(labels)}


def draw_all(report: Report, folder: Path) -> list[str]:
    """Draw every plot the report's runs allow into ``folder/plots``; return relative paths."""
    plt = _pyplot()
    out = folder / "plots"
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    labels = list(dict.fromkeys(g.label for g in report.groups))
    colours = _colours(plt, labels)
    try:
        written += _curves(plt, report.groups, out, colours)
        written += _bars(plt, report.groups, out, colours)
        written += _noise(plt, report.groups, out, colours)
    finally:
        plt.close("all")
    return [f"plots/{name}" for name in written]


def _curves(plt: Any, groups: list[Group], out: Path, colours: dict[str, Any]) -> list[str]:
    written = []
    blocks = list(dict.fromkeys((g.first.dataset, g.first.model) for g in groups))
    for dataset, model in blocks:
        members = [g for g in groups if (g.first.dataset, g.first.model) == (dataset, model)]
        figure, (loss_ax, valid_ax) = plt.subplots(1, 2, figsize=(11, 4))
        select = members[0].first.config["train"].get("select_metric", TrainConfig.select_metric)
        for group in members:
            for index, run in enumerate(group.runs):
                log = run.log()
                label = group.label if index == 0 else None
                epochs = [e["epoch"] for e in log]
                loss_ax.plot(epochs, [e["loss"].get("total", 0.0) for e in log], color=colours[group.label],
                             alpha=0.8, linewidth=1, label=label)
                valid = [(e["epoch"], e["valid"][select]) for e in log if select in e.get("valid", {})]
                if valid:
                    valid_ax.plot(*zip(*valid, strict=True), marker="o", markersize=3, color=colours[group.label],
                                  alpha=0.8, linewidth=1, label=label)
        loss_ax.set(title=f"{dataset} / {model}: training loss", xlabel="epoch", ylabel="loss (sum of terms)")
        if all(y > 0 for line in loss_ax.get_lines() for y in line.get_ydata()):
            loss_ax.set_yscale("log")  # plugin terms are often 10-100x the BPR loss
        valid_ax.set(title=f"validation {short_metric(select)}", xlabel="epoch", ylabel=short_metric(select))
        valid_ax.legend(fontsize=8)
        written.append(_save(plt, figure, out, f"curves-{_slug(dataset)}-{_slug(model)}.png"))
    return written


def _save(plt: Any, figure: Any, out: Path, name: str) -> str:
    """Write ``figure`` to ``out/name`` atomically, free it, and return the name."""
    write_png(figure, out / name)
    plt.close(figure)
    return name


def _bars(plt: Any, groups: list[Group], out: Path, colours: dict[str, Any]) -> list[str]:
    written = []
    for dataset in dict.fromkeys(g.first.dataset for g in groups):
        members = [g for g in groups if g.first.dataset == dataset]
        metrics = [m for m in TABLE1_METRICS if all(m in g.metric_names for g in members)]
        if not metrics:
            continue
        models = list(dict.fromkeys(g.first.model for g in members))
        labels = list(dict.fromkeys(g.label for g in members))
        figure, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.6), squeeze=False)
        width = 0.8 / max(len(labels), 1)
        for ax, metric in zip(axes[0], metrics, strict=True):
            for position, label in enumerate(labels):
                xs, heights, errors = [], [], []
                for index, model in enumerate(models):
                    group = next((g for g in members if g.first.model == model and g.label == label), None)
                    if group is None:
                        continue
                    stat = group.stat(metric)
                    xs.append(index + (position - (len(labels) - 1) / 2) * width)
                    heights.append(stat.mean)
                    errors.append(stat.std)
                ax.bar(xs, heights, width, yerr=errors, color=colours[label], label=label, capsize=2)
            ax.set_xticks(range(len(models)), models)
            ax.set_title(short_metric(metric))
        axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))  # beside the bars, not over them
        figure.suptitle(f"{dataset}: test metrics (mean ± std over seeds)")
        figure.tight_layout()
        written.append(_save(plt, figure, out, f"bars-{_slug(dataset)}.png"))
    return written


def _noise(plt: Any, groups: list[Group], out: Path, colours: dict[str, Any]) -> list[str]:
    series = noise_series(groups)
    metrics = noise_metrics(groups)
    written = []
    for dataset, model in dict.fromkeys((k[0], k[1]) for k in series):
        figure, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
        for ax, metric in zip(axes[0], metrics, strict=True):
            for (d, m, label), points in series.items():
                if (d, m) != (dataset, model):
                    continue
                ratios = [r * 100 for r, _ in points]
                stats = [g.stat(metric) for _, g in points]
                ax.errorbar(ratios, [s.mean for s in stats], yerr=[s.std for s in stats], marker="o",
                            color=colours[label], label=label, capsize=2)
            ax.set(xlabel="noise ratio (% of training interactions)", ylabel=short_metric(metric),
                   title=f"{dataset} / {model}: {short_metric(metric)} under noise")
        axes[0][-1].legend(fontsize=8)
        written.append(_save(plt, figure, out, f"noise-{_slug(dataset)}-{_slug(model)}.png"))
    return written
