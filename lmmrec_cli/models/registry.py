"""The base-model registry: an explicit name → class table (no imports by string)."""

from __future__ import annotations

from lmmrec_cli.models.base import BaseModel
from lmmrec_cli.models.lightgcn import LightGCN
from lmmrec_cli.models.mf import MF
from lmmrec_cli.models.names import DESCRIPTIONS  # noqa: F401  (re-exported)
from lmmrec_cli.models.polycf import PolyCF
from lmmrec_cli.models.sgl import SGL
from lmmrec_cli.models.simgcl import SimGCL
from lmmrec_cli.models.weightedgcl import WeightedGCL

MODELS: dict[str, type[BaseModel]] = {
    "lightgcn": LightGCN,
    "mf": MF,
    "sgl": SGL,
    "simgcl": SimGCL,
    "weightedgcl": WeightedGCL,
    "polycf": PolyCF,
}
