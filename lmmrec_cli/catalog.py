"""The tables of base models and plugins: every fact about one of them that lives outside its
own file, in one row. Importing this module costs no torch.

A row names the class by ``"module:Class"`` and imports it only when asked (:meth:`load`), so the
CLI can list models and plugins in its help without paying for torch at start-up. The CLI lists,
the report's titles and order, the ablation variants and the test matrix all derive from these
tables: adding a plugin is its file plus one :class:`PluginEntry` row.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Entry:
    name: str
    """What users type (``--model NAME`` / ``--plugin NAME``)."""
    title: str
    """How tables and reports print it."""
    description: str
    """One line for ``lmmrec models`` / ``lmmrec plugins`` and the help texts."""
    target: str
    """``"module:Class"`` of the implementation, imported on first use."""
    tiny: dict[str, Any] = field(default_factory=dict)
    """Settings that make a tiny instance exercise every code path (the tests' matrix)."""

    def load(self) -> type:
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def config_class(self) -> type:
        return self.load().Config


@dataclass(frozen=True)
class ModelEntry(Entry):
    def train_defaults(self) -> dict[str, Any]:
        """The model's own trainer settings (``BaseModel.train_defaults``, e.g. WeightedGCL's
        paper lr/batch/epochs), which ``lmmrec train`` uses unless a flag says otherwise."""
        return dict(self.load().train_defaults)


@dataclass(frozen=True)
class PluginEntry(Entry):
    rival: bool = True
    """A published method compared with LMMRec (``none`` and ``lmmrec`` are not)."""


MODELS: tuple[ModelEntry, ...] = (
    ModelEntry("lightgcn", "LightGCN", "LightGCN (RLMRec variant by default: sum of layers, edge dropout 0.8)",
               "lmmrec_cli.models.lightgcn:LightGCN"),
    ModelEntry("mf", "MF", "matrix factorisation with BPR (sanity floor)", "lmmrec_cli.models.mf:MF"),
    ModelEntry("sgl", "SGL", "SGL-ED: edge-dropout views + InfoNCE (RLMRec settings)", "lmmrec_cli.models.sgl:SGL"),
    ModelEntry("simgcl", "SimGCL", "SimGCL: noise views + InfoNCE (RLMRec settings)",
               "lmmrec_cli.models.simgcl:SimGCL"),
    ModelEntry("weightedgcl", "WeightedGCL", "WeightedGCL: last-layer noise views, squeeze-excitation weights",
               "lmmrec_cli.models.weightedgcl:WeightedGCL"),
    ModelEntry("polycf", "PolyCF", "PolyCF-E: learnable polynomial graph filter (reconstruction, no official code)",
               "lmmrec_cli.models.polycf:PolyCF", tiny={"low_pass_rank": 4}),
)

PLUGINS: tuple[PluginEntry, ...] = (
    PluginEntry("none", "none", "the base model alone", "lmmrec_cli.models.base:NoPlugin", rival=False),
    PluginEntry("lmmrec", "LMMRec", "LMMRec: motivation prototypes, MCS contrast and ICM momentum distillation",
                "lmmrec_cli.plugins.lmmrec:LMMRecPlugin", rival=False),
    PluginEntry("rlmrec-con", "RLMRec-Con",
                "RLMRec-Con: InfoNCE alignment of final embeddings with MLP(text), RLMRec *_plus",
                "lmmrec_cli.plugins.rlmrec_con:RLMRecCon"),
    PluginEntry("uist", "UIST", "UIST: residual-quantised text tokens as input offsets + prefix-level score mixture",
                "lmmrec_cli.plugins.uist:UIST", tiny={"levels": 2, "codes": 4}),
    PluginEntry("once", "ONCE", "ONCE (DIRE-style): trainable projection of the frozen text added to the ID embeddings",
                "lmmrec_cli.plugins.once:ONCE"),
    PluginEntry("autograph", "AutoGraph", "AutoGraph: semantic code nodes + sampled co-members -> extra ego embedding",
                "lmmrec_cli.plugins.autograph:AutoGraph",
                tiny={"levels": 2, "user_codes": 4, "item_codes": 3, "degree": 3}),
)


@dataclass(frozen=True)
class Ablation:
    """One LMMRec variant of the paper's Table II: a part switched off by its settings."""

    name: str
    slug: str
    """Used in run names and ``ablate --variants``."""
    overrides: dict[str, str]
    """``--plugin-param`` values that switch the part off."""


FULL = "LMMRec"
ABLATIONS: tuple[Ablation, ...] = (
    Ablation(FULL, "full", {}),
    Ablation("w/o MCS", "no-mcs", {"use_mcs": "false"}),
    Ablation("w/o ICM", "no-icm", {"use_icm": "false"}),
    Ablation("w/o GCN", "no-gcn", {"use_gcn": "false"}),
    Ablation("w/o TM", "no-tm", {"use_text": "false"}),
)


def model_entry(name: str) -> ModelEntry | None:
    return next((e for e in MODELS if e.name == name), None)


def plugin_entry(name: str) -> PluginEntry | None:
    return next((e for e in PLUGINS if e.name == name), None)


def model_names() -> list[str]:
    return [e.name for e in MODELS]


def plugin_names() -> list[str]:
    return [e.name for e in PLUGINS]


def report_order(plugin: str) -> int:
    """Rows of a model's block: the base alone first, the rivals in table order, LMMRec last."""
    names = [e.name for e in PLUGINS if e.name not in ("none", "lmmrec")]
    if plugin == "none":
        return 0
    if plugin == "lmmrec":
        return len(names) + 1
    return names.index(plugin) + 1 if plugin in names else len(names) + 2


VARIANTS: dict[str, dict[str, str]] = {a.name: a.overrides for a in ABLATIONS}
"""Variant name → the settings that make it, in Table II's row order."""
SLUGS: dict[str, str] = {a.name: a.slug for a in ABLATIONS}
