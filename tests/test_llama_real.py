"""Against a real llama.cpp server, when ``LMMREC_TEST_LLAMA_URL`` points at one (e.g.
``python -m llama_cpp.server --model smollm2.gguf`` → ``http://127.0.0.1:8000/v1``); skipped
otherwise. Outside CI's path: a tiny model takes seconds to minutes per answer on a CPU."""

# ruff: noqa: F811  (pytest fixtures imported from tests.llm_fixtures are redefined as arguments)
from __future__ import annotations

import json
import os

import pytest

from tests.llm_fixtures import cli, demo_template, ws_path  # noqa: F401

URL = os.environ.get("LMMREC_TEST_LLAMA_URL")
pytestmark = pytest.mark.skipif(not URL, reason="set LMMREC_TEST_LLAMA_URL to a llama.cpp server")


def test_a_sample_against_llama_cpp_pays_one_format_refusal_at_most(ws_path, cli):
    result = cli(
        "motivate", "--dataset", "demo", "-w", ws_path, "--base-url", URL, "--sample", "2",
        "--concurrency", "1", "--timeout", "600", "--max-failure-rate", "1", "--json", "-q",
    )
    assert "Traceback" not in result.output
    if result.exit_code != 0:  # a tiny model may fail every answer: then one clear line
        assert "stopped early" in result.output or "all" in result.output
        return
    llm = json.loads(result.stdout)["llm"]
    assert len(llm["format_fallbacks"]) <= 2 and llm["retries"] == 0
    assert llm["response_format"] in ("json_object_schema", "json_object", "text", "json_schema")
