"""``lmmrec ablate``: the LMMRec plugin and its four ablations on one base model (Table II).

Each variant switches off one part (docs/method.md §1.9) and is trained with the same seeds and
settings as the full plugin; per-user test metrics are averaged over seeds and each variant is
compared with the full model by paired tests over users.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmmrec_cli.catalog import FULL, SLUGS, VARIANTS
from lmmrec_cli.config import TrainConfig
from lmmrec_cli.console import SILENT, Progress
from lmmrec_cli.workspace import ArtifactRef, Workspace

if TYPE_CHECKING:
    from lmmrec_cli.metrics import PairedTest, RankingResult

# Training and metrics (torch, scipy.stats) are imported where they run: the CLI imports this
# module, and no other command should pay for torch at start-up.


@dataclass
class AblationRow:
    variant: str
    runs: list[ArtifactRef]
    result: RankingResult  # per-user metrics averaged over seeds
    tests: dict[str, PairedTest]  # vs the full model (empty for the full model)

    def as_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "runs": [r.label for r in self.runs],
            "metrics": self.result.summary(),
            "vs_full": {m: dataclasses.asdict(t) for m, t in self.tests.items()},
        }


def run_ablation(
    workspace: Workspace,
    *,
    dataset: str,
    model: str,
    model_settings: Any,
    config: TrainConfig,
    seeds: list[int],
    embeddings: str,
    plugin_overrides: dict[str, str],
    variants: list[str] | None = None,
    progress: Progress = SILENT,
) -> list[AblationRow]:
    from lmmrec_cli.evaluation import mean_over_seeds
    from lmmrec_cli.metrics import paired_test
    from lmmrec_cli.plugin_setup import plugin_spec
    from lmmrec_cli.runs import stored_test_result
    from lmmrec_cli.train import train

    chosen = variants or list(VARIANTS)
    if FULL not in chosen:
        chosen = [FULL, *chosen]
    rows: list[AblationRow] = []
    for variant in chosen:
        overrides = {**plugin_overrides, **VARIANTS[variant]}
        spec = plugin_spec(workspace, "lmmrec", embeddings=embeddings, overrides=overrides)
        runs, results = [], []
        for seed in seeds:
            progress.note(f"{variant}: seed {seed}")
            outcome = train(
                workspace,
                dataset=dataset,
                model=model,
                model_settings=model_settings,
                config=dataclasses.replace(config, seed=seed),
                plugin=spec,
                name=f"{dataset.partition('@')[0]}-{model}-lmmrec-{SLUGS[variant]}-s{seed}",
                progress=progress,
            )
            runs.append(outcome.ref)
            results.append(stored_test_result(outcome.ref))
        rows.append(AblationRow(variant, runs, mean_over_seeds(results), {}))
    full = rows[0].result
    for row in rows[1:]:
        row.tests = {name: paired_test(full, row.result, name) for name in full.names()}
    return rows
