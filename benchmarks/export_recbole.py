"""Write a prepared lmmrec dataset as RecBole atomic files with its own train/valid/test split.

    python benchmarks/export_recbole.py --workspace WS --dataset magazine --out DIR [--name NAME]

writes ``DIR/NAME/NAME.train.inter``, ``NAME.valid.inter`` and ``NAME.test.inter`` (tab-separated,
header ``user_id:token\\titem_id:token``; users ``u<index>``, items ``i<index>`` with lmmrec's
indices). A RecBole (or RecBole-GNN) run that sets ``benchmark_filename: [train, valid, test]``
and no filtering then trains and evaluates on exactly the interactions lmmrec uses, which is how
the WeightedGCL reference code was compared with ours side by side (README, base models).

Every user and item appears in the train file (lmmrec's prepare keeps them all there), so
RecBole's id remapping, built from all three files, covers the same users and items; its
full-ranking test masks training *and* validation items, which lmmrec does with ``--mask-valid``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmmrec_cli.data.dataset import PreparedDataset  # noqa: E402
from lmmrec_cli.workspace import Workspace, atomic_output  # noqa: E402

SPLITS = ("train", "valid", "test")
HEADER = "user_id:token\titem_id:token\n"


def export(workspace: Workspace, dataset: str, out: Path, name: str | None = None) -> Path:
    """Write the three atomic files; returns their folder ``out/name``."""
    data = PreparedDataset.open(workspace, dataset)
    name = name or data.ref.name
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        users, items = data.interactions.pairs(split)
        lines = "".join(f"u{u}\ti{i}\n" for u, i in zip(users.tolist(), items.tolist(), strict=True))
        with atomic_output(folder / f"{name}.{split}.inter") as tmp:
            tmp.write_text(HEADER + lines, encoding="utf-8")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", required=True, type=Path)
    parser.add_argument("--dataset", required=True, help="NAME or NAME@VERSION of a prepared dataset")
    parser.add_argument("--out", required=True, type=Path, help="RecBole data_path to write into")
    parser.add_argument("--name", default=None, help="RecBole dataset name (default: the dataset's)")
    args = parser.parse_args()
    folder = export(Workspace(args.workspace), args.dataset, args.out, args.name)
    print(folder)


if __name__ == "__main__":
    main()
