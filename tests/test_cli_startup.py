"""What `lmmrec` imports before it does any work.

A fully cached `lmmrec motivate` of 10,000 entities has a 5-second budget (issue 4), and torch,
scipy.stats and pandas alone take seconds to import on a busy machine. The commands that need
them (train, evaluate, ablate, prepare's readers, extractive) import them where they run; these
tests keep a new top-level import from quietly putting them back on every command's path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.llm_fixtures import demo_template, ws_path  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "scipy", "pandas", "sklearn", "matplotlib", "openai", "pyarrow.dataset")


def imported_after(code: str) -> list[str]:
    report = f"import sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    probe = f"{code}\n{report}"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_command_line_starts_without_heavy_libraries():
    assert imported_after("import lmmrec_cli.cli") == []


def test_building_every_prompt_needs_no_heavy_library(ws_path):  # noqa: F811
    code = f"""
import lmmrec_cli.cli
from lmmrec_cli.data.dataset import PreparedDataset
from lmmrec_cli.llm.entities import PromptOptions, TrainingReviews, item_requests, user_requests
from lmmrec_cli.llm.prompts import PromptSet
from lmmrec_cli.workspace import Workspace
dataset = PreparedDataset.open(Workspace({str(ws_path)!r}), "demo")
reviews = TrainingReviews(dataset, 500)
assert item_requests(dataset, PromptSet.load(), PromptOptions(), reviews)
assert user_requests(dataset, PromptSet.load(), PromptOptions(), {{}}, reviews)
"""
    assert imported_after(code) == []


def test_model_names_match_the_registry():
    from lmmrec_cli.models.registry import DESCRIPTIONS, MODELS

    assert list(DESCRIPTIONS) == list(MODELS)
