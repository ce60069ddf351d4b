"""The base models' names and one-line descriptions, importable without torch.

The CLI lists them in its help text; importing the model classes (and torch, ~2 s) for that
would slow down every command, ``lmmrec motivate`` included. ``registry.MODELS`` maps the same
names to the classes (a test keeps the two in step).
"""

from __future__ import annotations

DESCRIPTIONS: dict[str, str] = {
    "lightgcn": "LightGCN (RLMRec variant by default: sum of layers, edge dropout 0.8)",
    "mf": "matrix factorisation with BPR (sanity floor)",
    "sgl": "SGL-ED: edge-dropout views + InfoNCE (RLMRec settings)",
    "simgcl": "SimGCL: noise views + InfoNCE (RLMRec settings)",
    "weightedgcl": "WeightedGCL: last-layer noise views, squeeze-excitation weights",
    "polycf": "PolyCF-E: learnable polynomial graph filter (reconstruction, no official code)",
}
