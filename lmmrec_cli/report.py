"""``lmmrec report``: finished runs → grouped statistics and the paper's table layouts.

Runs are grouped by everything that decides a result except the seed (dataset version, model and
its settings, plugin and its settings, trainer settings). Per group: mean ± sample std over seeds
of each test metric, the seeds, the mean training time. Significance is that of
``lmmrec evaluate --compare`` (:func:`lmmrec_cli.metrics.paired_test`: two-sided paired t-test and
Wilcoxon over users) between per-user metrics averaged over the seeds both groups share, as
``lmmrec ablate`` does; with one shared seed it is exactly ``evaluate --compare`` of the two runs.

Layouts (plain data here; :mod:`lmmrec_cli.report_render` writes them, :mod:`lmmrec_cli.report_plots`
draws them):

* **runs**: one row per (dataset, model, method);
* **Table I**: a block per base model, the base and each plugin as rows, datasets × R@5 R@10 N@5
  N@10 as columns, ``*`` where the plugin beats its base with p < 0.05, and an "Improv." row:
  LMMRec relative to the best rival plugin (the base when no rival plugin was run);
* **Table II** (when runs are LMMRec ablation variants): variants vs the full LMMRec;
* **noise** (when data sets are ``perturb`` versions): metric per noise ratio, one row per method,
  the clean data set as ratio 0.
"""

from __future__ import annotations

import fnmatch
import json
import statistics
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from lmmrec_cli.catalog import FULL, MODELS, PLUGINS, VARIANTS, report_order
from lmmrec_cli.config import TrainConfig
from lmmrec_cli.errors import UsageError
from lmmrec_cli.evaluation import mean_over_seeds
from lmmrec_cli.metrics import PairedTest, RankingResult, paired_test
from lmmrec_cli.runs import CONFIG_FILE, LOG_FILE, PER_USER_TEST_FILE, stored_test_result
from lmmrec_cli.workspace import ArtifactRef, Workspace, canonical_json

TABLE1_METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
TABLE2_METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
PLUGIN_TITLES = {e.name: e.title for e in PLUGINS if e.name != "none"}
MODEL_TITLES = {e.name: e.title for e in MODELS}
_GLOB_CHARS = set("*?[")


def short_metric(name: str) -> str:
    """``recall@10`` → ``R@10``."""
    return name.replace("recall", "R").replace("ndcg", "N")


# -- runs ------------------------------------------------------------------------------------


@dataclass
class RunInfo:
    """One finished run, read from its directory."""

    ref: ArtifactRef
    config: dict[str, Any]
    manifest: dict[str, Any]
    dataset_manifest: dict[str, Any]

    @property
    def seed(self) -> int:
        return int(self.config["train"]["seed"])

    @property
    def dataset(self) -> str:
        return self.config["dataset"]["name"]

    @property
    def dataset_version(self) -> str:
        return self.config["dataset"]["version"]

    @property
    def noise_ratio(self) -> float | None:
        noise = self.dataset_manifest.get("noise")
        return float(noise["ratio"]) if noise else None

    @property
    def clean_dataset(self) -> str:
        """The data set a noisy copy was made from (itself when clean)."""
        if self.noise_ratio is None:
            return self.dataset
        parents = self.dataset_manifest.get("parents") or [{}]
        return parents[0].get("name", self.dataset)

    @property
    def model(self) -> str:
        return self.config["model"]

    @property
    def plugin(self) -> str:
        return self.config["plugin"]["name"]

    @property
    def variant(self) -> str | None:
        """The LMMRec ablation variant (``w/o MCS`` ...), None for anything else."""
        if self.plugin != "lmmrec":
            return None
        settings = self.config["plugin"]["settings"].get("config", {})
        off = [name for name, flags in VARIANTS.items() if flags
               and all(str(settings.get(k)).lower() == v for k, v in flags.items())]
        return " ".join(off) if off else None

    @property
    def seconds(self) -> float:
        return float(self.manifest.get("duration_s") or 0.0)

    @property
    def epochs(self) -> int:
        return int(self.manifest.get("counts", {}).get("epochs") or 0)

    def group_key(self) -> str:
        ignored = ("seed", *TrainConfig.NON_RESULT_FIELDS)  # what differs between seeds of one setting
        train = {k: v for k, v in self.config["train"].items() if k not in ignored}
        return canonical_json([self.config["dataset"], self.model, self.config["model_config"],
                               self.config["plugin"], train, self.config.get("device_type")])

    @cached_property
    def result(self) -> RankingResult:
        return stored_test_result(self.ref)

    def log(self) -> list[dict[str, Any]]:
        path = self.ref.path / LOG_FILE
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_run(ws: Workspace, ref: ArtifactRef, dataset_manifests: dict[tuple[str, str], dict]) -> RunInfo:
    """``dataset_manifests`` caches each dataset version's manifest across the runs read."""
    for needed in (CONFIG_FILE, PER_USER_TEST_FILE):
        if not (ref.path / needed).is_file():
            raise UsageError(f"{ref.label} has no {needed}; it is not a finished training run")
    config = json.loads((ref.path / CONFIG_FILE).read_text(encoding="utf-8"))
    parent = (config["dataset"]["name"], config["dataset"]["version"])
    if parent not in dataset_manifests:
        data_ref = ws.find("datasets", *parent)
        dataset_manifests[parent] = data_ref.manifest() if data_ref else {}
    return RunInfo(ref, config, ref.manifest(), dataset_manifests[parent])


def collect_runs(ws: Workspace, references: list[str]) -> list[RunInfo]:
    """Runs named by NAME, NAME@VERSION, a run directory, or a glob over run names (``demo-*``,
    each name's latest version). Duplicates are read once; order is kept."""
    if not references:
        raise UsageError("name at least one run", hint="e.g. lmmrec report 'demo-*'")
    refs: list[ArtifactRef] = []
    for reference in references:
        name = reference.partition("@")[0]
        if _GLOB_CHARS & set(name):
            matched = [n for n in ws.names("runs") if fnmatch.fnmatchcase(n, name)]
            if not matched:
                raise UsageError(f"no run name matches {reference!r} in workspace {ws.root}",
                                 hint=f"runs: {', '.join(ws.names('runs')) or 'none yet'}")
            refs += [r for r in (ws.latest("runs", n) for n in matched) if r is not None]
        else:
            refs.append(ws.resolve("runs", reference))
    seen: set[tuple[str, str]] = set()
    unique = []
    for ref in refs:
        if (ref.name, ref.version) not in seen:
            seen.add((ref.name, ref.version))
            unique.append(ref)
    dataset_manifests: dict[tuple[str, str], dict] = {}
    return [_read_run(ws, ref, dataset_manifests) for ref in unique]


# -- groups ----------------------------------------------------------------------------------


@dataclass
class Stat:
    values: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


@dataclass
class Group:
    """Runs that differ only in their seed (one run per seed)."""

    runs: list[RunInfo]
    label: str = ""
    base_tests: dict[str, PairedTest] = field(default_factory=dict)
    base_label: str | None = None
    base_seeds: list[int] = field(default_factory=list)
    _results_over: dict[tuple[int, ...], RankingResult] = field(default_factory=dict, repr=False)

    @property
    def first(self) -> RunInfo:
        return self.runs[0]

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    @property
    def method(self) -> str:
        """``none``, a plugin name, or ``lmmrec w/o MCS`` for an ablation variant."""
        variant = self.first.variant
        return f"{self.first.plugin} {variant}" if variant else self.first.plugin

    @property
    def metric_names(self) -> list[str]:
        return self.first.result.names()

    def stat(self, metric: str) -> Stat:
        return Stat([float(r.result.metric(metric).mean()) for r in self.runs])

    @property
    def seconds(self) -> Stat:
        return Stat([r.seconds for r in self.runs])

    @property
    def epochs(self) -> Stat:
        return Stat([float(r.epochs) for r in self.runs])

    def result_over(self, seeds: list[int]) -> RankingResult:
        """Per-user metrics averaged over ``seeds`` (the run itself for one seed); each seed set
        is averaged once, however many groups are compared against this one."""
        key = tuple(seeds)
        if key not in self._results_over:
            chosen = [r.result for r in self.runs if r.seed in seeds]
            self._results_over[key] = chosen[0] if len(chosen) == 1 else mean_over_seeds(chosen)
        return self._results_over[key]


def group_runs(runs: list[RunInfo]) -> list[Group]:
    by_key: dict[str, list[RunInfo]] = {}
    for run in runs:
        members = by_key.setdefault(run.group_key(), [])
        if run.seed not in {m.seed for m in members}:  # same settings, same seed: the same result
            members.append(run)
    groups = [Group(sorted(members, key=lambda r: r.seed)) for members in by_key.values()]
    for group in groups:
        group.label = group.method
    # two groups with the same method on the same data and model differ in some setting: name them
    seen: dict[tuple, list[Group]] = {}
    for group in groups:
        seen.setdefault(_slot(group), []).append(group)
    for clash in seen.values():
        if len(clash) > 1:
            for group in clash:
                stem = group.first.ref.name.rsplit("-s", 1)[0]
                group.label = f"{group.method} [{stem}@{group.first.ref.version[:6]}]"
    groups.sort(key=lambda g: (g.first.clean_dataset, g.first.noise_ratio or 0.0, g.first.model,
                               report_order(g.first.plugin), g.first.variant or "", g.label))
    return groups


def _slot(group: Group) -> tuple:
    return (group.first.dataset, group.first.dataset_version, group.first.model, group.method)


def compare(reference: Group, other: Group) -> tuple[list[int], dict[str, PairedTest]]:
    """Paired tests of ``other`` vs ``reference`` over the seeds both have (none → empty)."""
    shared = sorted(set(reference.seeds) & set(other.seeds))
    if not shared:
        return [], {}
    a, b = reference.result_over(shared), other.result_over(shared)
    if len(a.users) != len(b.users):
        return [], {}
    return shared, {m: paired_test(a, b, m) for m in a.names() if m in b.names()}


def _same_data_and_model(a: Group, b: Group) -> bool:
    return (a.first.dataset, a.first.dataset_version, a.first.model) == \
           (b.first.dataset, b.first.dataset_version, b.first.model)


def attach_base_tests(groups: list[Group], baseline: str = "none") -> None:
    """Each group vs the ``baseline`` plugin on the same dataset version and model."""
    for group in groups:
        if group.first.plugin == baseline and group.first.variant is None:
            continue
        candidates = [g for g in groups if g is not group and _same_data_and_model(g, group)
                      and g.first.plugin == baseline and g.first.variant is None]
        best = max(candidates, key=lambda g: len(set(g.seeds) & set(group.seeds)), default=None)
        if best is None:
            continue
        seeds, tests = compare(best, group)
        if tests:
            group.base_tests, group.base_label, group.base_seeds = tests, best.label, seeds


# -- layouts ---------------------------------------------------------------------------------


def mark(significant: bool, lower: bool) -> str:
    """``*``: significantly higher than the reference (p < 0.05, the paper's mark); ``†``:
    significantly lower (the test is two-sided)."""
    if not significant:
        return ""
    return "†" if lower else "*"


@dataclass
class Cell:
    mean: float
    std: float = 0.0
    n: int = 1
    significant: bool = False
    p_t: float | None = None
    p_wilcoxon: float | None = None
    lower: bool = False  # below the reference it was tested against

    def text(self, with_std: bool = True) -> str:
        star = mark(self.significant, self.lower)
        spread = f" ± {self.std:.4f}" if with_std and self.n > 1 else ""
        return f"{self.mean:.4f}{spread}{star}"


def group_cell(group: Group, metric: str, tests: dict[str, PairedTest] | None = None) -> Cell:
    stat = group.stat(metric)
    test = (tests if tests is not None else group.base_tests).get(metric)
    return Cell(stat.mean, stat.std, len(stat.values), bool(test and test.significant),
                test.t_pvalue if test else None, test.wilcoxon_pvalue if test else None,
                bool(test and test.mean_b < test.mean_a))


@dataclass
class Layout:
    """A table for people (``headers`` + text ``rows``) and for machines (``records``)."""

    key: str
    title: str
    headers: list[str]
    rows: list[list[str]]
    records: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


def runs_layout(groups: list[Group]) -> Layout:
    metrics = _common_metrics(groups)
    headers = ["dataset", "model", "method", "seeds",
               *[short_metric(m) for m in metrics], "s/run", "epochs"]
    rows, records = [], []
    for group in groups:
        cells = {m: group_cell(group, m) for m in metrics}
        rows.append([group.first.dataset, group.first.model, group.label,
                     str(len(group.runs)), *[cells[m].text() for m in metrics],
                     f"{group.seconds.mean:.1f}", f"{group.epochs.mean:.0f}"])
        record: dict[str, Any] = {
            "dataset": group.first.dataset, "dataset_version": group.first.dataset_version,
            "noise_ratio": group.first.noise_ratio, "model": group.first.model,
            "plugin": group.first.plugin, "variant": group.first.variant, "method": group.label,
            "n_seeds": len(group.runs), "seeds": " ".join(map(str, group.seeds)),
            "runs": " ".join(f"{r.ref.name}@{r.ref.version}" for r in group.runs),
            "time_s_mean": group.seconds.mean, "epochs_mean": group.epochs.mean,
            "vs": group.base_label or "", "vs_seeds": " ".join(map(str, group.base_seeds)),
        }
        for m in metrics:
            c = cells[m]
            record.update({f"{m}_mean": c.mean, f"{m}_std": c.std, f"{m}_p_t": c.p_t,
                           f"{m}_p_wilcoxon": c.p_wilcoxon, f"{m}_significant": c.significant})
        records.append(record)
    notes = ["mean ± sample std over seeds; * / † = higher / lower than the base model with p < 0.05 "
             "in the paired t-test over users (per-user metrics averaged over the seeds both share), "
             "the test of `lmmrec evaluate --compare`."]
    return Layout("runs", "runs: mean ± std over seeds", headers, rows, records, notes)


def _common_metrics(groups: list[Group]) -> list[str]:
    names = groups[0].metric_names
    return [m for m in names if all(m in g.metric_names for g in groups)]


def _plugin_title(plugin: str) -> str:
    return PLUGIN_TITLES.get(plugin, plugin)


def table1_layout(groups: list[Group]) -> Layout | None:
    main = [g for g in groups if g.first.noise_ratio is None and g.first.variant is None]
    metrics = [m for m in TABLE1_METRICS if main and m in _common_metrics(main)]
    if len({g.label for g in main}) < 2 or not metrics:  # one method alone is no comparison
        return None
    datasets = list(dict.fromkeys(g.first.dataset for g in main))
    models = list(dict.fromkeys(g.first.model for g in main))
    headers = ["method", *[f"{d} {short_metric(m)}" for d in datasets for m in metrics]]
    rows: list[list[str]] = []
    records: list[dict[str, Any]] = []
    for model in models:
        labels = list(dict.fromkeys(g.label for g in main if g.first.model == model))
        for label in labels:
            row = []
            for dataset in datasets:
                group = _find(main, dataset, model, label)
                for metric in metrics:
                    if group is None:
                        row.append("—")
                        continue
                    cell = group_cell(group, metric)
                    row.append(cell.text(with_std=False))
                    records.append({"model": model, "method": label, "dataset": dataset, "metric": metric,
                                    "mean": cell.mean, "std": cell.std, "n_seeds": cell.n,
                                    "p_t_vs_base": cell.p_t, "significant": cell.significant})
            title = MODEL_TITLES.get(model, model) if label == "none" else f"+{_plugin_title(label)}"
            rows.append([title, *row])
        improvement = _improvement_row(main, datasets, model, metrics, records)
        if improvement is not None:
            rows.append(["Improv.", *improvement])
    notes = ["* / † = higher / lower than the base model, paired t-test over users p < 0.05; "
             "Improv. = LMMRec relative to the best rival plugin per column (the base when no rival "
             "ran), marked the same way for LMMRec vs that rival. Means over seeds; std in runs.csv."]
    return Layout("table1", "Table I layout", headers, rows, records, notes)


def _find(groups: list[Group], dataset: str, model: str, label: str) -> Group | None:
    return next((g for g in groups if g.first.dataset == dataset and g.first.model == model
                 and g.label == label), None)


def _improvement_row(main: list[Group], datasets: list[str], model: str, metrics: list[str],
                     records: list[dict[str, Any]]) -> list[str] | None:
    cells: list[str] = []
    found = False
    for dataset in datasets:
        block = [g for g in main if g.first.dataset == dataset and g.first.model == model]
        ours = next((g for g in block if g.label == "lmmrec"), None)
        rivals = [g for g in block if g.first.plugin not in ("none", "lmmrec")] or \
                 [g for g in block if g.first.plugin == "none"]
        tests_against: dict[int, dict[str, PairedTest]] = {}  # one compare per best rival
        for metric in metrics:
            if ours is None or not rivals:
                cells.append("—")
                continue
            found = True
            best = max(rivals, key=lambda g: g.stat(metric).mean)
            mine, theirs = ours.stat(metric).mean, best.stat(metric).mean
            relative = mine / theirs - 1 if theirs else float("nan")
            if id(best) not in tests_against:
                tests_against[id(best)] = compare(best, ours)[1]
            test = tests_against[id(best)].get(metric)
            cells.append(f"{relative:+.2%}{mark(bool(test and test.significant), relative < 0)}")
            records.append({"model": model, "method": "Improv.", "dataset": dataset, "metric": metric,
                            "mean": relative, "std": None, "n_seeds": len(ours.runs),
                            "p_t_vs_base": test.t_pvalue if test else None,
                            "significant": bool(test and test.significant), "best_rival": best.label})
    return cells if found else None


def ablation_layout(groups: list[Group]) -> Layout | None:
    variants = [g for g in groups if g.first.variant is not None]
    if not variants:
        return None
    metrics = [m for m in TABLE2_METRICS if m in _common_metrics(groups)]
    headers = ["dataset", "model", "variant", *[short_metric(m) for m in metrics]]
    rows, records = [], []
    order = {name: i for i, name in enumerate(VARIANTS)}
    blocks = list(dict.fromkeys((g.first.dataset, g.first.dataset_version, g.first.model) for g in variants))
    for dataset, version, model in blocks:
        members = [g for g in groups if (g.first.dataset, g.first.dataset_version, g.first.model)
                   == (dataset, version, model) and g.first.plugin == "lmmrec"]
        full = next((g for g in members if g.first.variant is None), None)
        members.sort(key=lambda g: order.get(g.first.variant or FULL, len(order)))
        for group in members:
            name = group.first.variant or FULL
            tests = compare(full, group)[1] if full is not None and group is not full else {}
            cells = [group_cell(group, m, tests) for m in metrics]
            rows.append([dataset, model, name, *[c.text() for c in cells]])
            for metric, cell in zip(metrics, cells, strict=True):
                records.append({"dataset": dataset, "model": model, "variant": name, "metric": metric,
                                "mean": cell.mean, "std": cell.std, "n_seeds": cell.n,
                                "p_t_vs_full": cell.p_t, "significant": cell.significant})
    notes = ["Table II layout: * / † = higher / lower than the full LMMRec, paired t-test over "
             "users p < 0.05 (per-user metrics averaged over shared seeds), as `lmmrec ablate`."]
    return Layout("table2", "ablation (Table II layout)", headers, rows, records, notes)


def noise_metrics(groups: list[Group]) -> list[str]:
    """The metrics of the noise curve: Recall and NDCG at the largest cut-off all runs have."""
    common = _common_metrics(groups)
    ks = sorted({int(m.partition("@")[2]) for m in common})
    return [f"recall@{ks[-1]}", f"ndcg@{ks[-1]}"] if ks else []


def noise_series(groups: list[Group]) -> dict[tuple[str, str, str], list[tuple[float, Group]]]:
    """(clean dataset, model, method) → [(ratio, group)] sorted by ratio, clean data as 0."""
    series: dict[tuple[str, str, str], list[tuple[float, Group]]] = {}
    for group in groups:
        if group.first.variant is not None:
            continue
        key = (group.first.clean_dataset, group.first.model, group.label)
        series.setdefault(key, []).append((group.first.noise_ratio or 0.0, group))
    return {k: sorted(v, key=lambda item: item[0]) for k, v in series.items()
            if any(ratio > 0 for ratio, _ in v)}


def noise_layout(groups: list[Group]) -> Layout | None:
    series = noise_series(groups)
    if not series:
        return None
    metrics = noise_metrics(groups)
    ratios = sorted({ratio for points in series.values() for ratio, _ in points})
    headers = ["dataset", "model", "method", "metric", *[f"{r:.0%}" for r in ratios]]
    rows, records = [], []
    for (dataset, model, label), points in series.items():
        by_ratio = dict(points)
        clean = by_ratio.get(0.0)
        for metric in metrics:
            cells = []
            for ratio in ratios:
                group = by_ratio.get(ratio)
                if group is None:
                    cells.append("—")
                    continue
                stat = group.stat(metric)
                drop = stat.mean / clean.stat(metric).mean - 1 if clean and ratio and clean.stat(metric).mean else None
                cells.append(f"{stat.mean:.4f}" + (f" ({drop:+.1%})" if drop is not None else ""))
                records.append({"dataset": dataset, "model": model, "method": label, "ratio": ratio,
                                "metric": metric, "mean": stat.mean, "std": stat.std,
                                "n_seeds": len(stat.values), "change_vs_clean": drop})
            rows.append([dataset, model, label, short_metric(metric), *cells])
    notes = ["Noise robustness (Fig. 2): means over seeds; in brackets the change vs the clean "
             "data set (0%). Noisy copies from `lmmrec perturb`; ratio from their manifests."]
    return Layout("noise", "noise robustness", headers, rows, records, notes)


def tuning_layout(groups: list[Group]) -> Layout | None:
    """Per tuned method (`lmmrec tune --best-seeds`): its study's budget and the tuned values,
    so a reader sees that every compared method had the same search."""
    headers = ["dataset", "model", "method", "study", "trials", "pruned", "pruning from epoch", "failed",
               "trial time (s)", "best valid", "tuned values"]
    rows, records = [], []
    for group in groups:
        tuned = group.first.manifest.get("tuned")
        if not tuned:
            continue
        budget = tuned.get("budget", {})
        values = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in sorted(tuned.get("params", {}).items()))
        row = [group.first.dataset, group.first.model, group.method, tuned.get("study", ""),
               str(budget.get("complete", 0) + budget.get("pruned", 0) + budget.get("fail", 0)),
               str(budget.get("pruned", 0)), _pruning_start(tuned), str(budget.get("fail", 0)),
               f"{budget.get('trial_seconds', 0):.0f}", f"{tuned.get('valid', float('nan')):.4f}", values]
        rows.append(row)
        records.append({"dataset": group.first.dataset, "model": group.first.model, "method": group.method,
                        **{k: v for k, v in tuned.items()}})
    if not rows:
        return None
    notes = ["Hyperparameters searched on validation only (`lmmrec tune`, Optuna TPE, median pruning); "
             "trials = complete + pruned + failed; no trial was pruned before the epoch shown (by default "
             "the first at which early stopping could end the run); the seeded runs above retrain the "
             "best trial's values."]
    return Layout("tuning", "tuning budget and tuned values", headers, rows, records, notes)


def _pruning_start(tuned: dict) -> str:
    pruning = tuned.get("pruning")
    if "pruning" in tuned and pruning is None:
        return "off"
    if not pruning:  # studies from before the warm-up was recorded: pruned from the first validation
        return "?"
    return str(pruning.get("warmup_epochs", "?"))


@dataclass
class Report:
    runs: list[RunInfo]
    groups: list[Group]
    layouts: list[Layout]


def build_report(ws: Workspace, references: list[str], baseline: str = "none") -> Report:
    runs = collect_runs(ws, references)
    groups = group_runs(runs)
    attach_base_tests(groups, baseline)
    layouts = [runs_layout(groups)]
    for make in (table1_layout, ablation_layout, noise_layout, tuning_layout):
        layout = make(groups)
        if layout is not None:
            layouts.append(layout)
    return Report(runs, groups, layouts)
