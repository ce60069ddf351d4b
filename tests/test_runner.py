"""The concurrent runner and the chat client at library level, against the fake server."""

# ruff: noqa: F811  (pytest fixtures imported from tests.llm_fixtures are redefined as arguments)
from __future__ import annotations

import asyncio

from lmmrec_cli.console import SILENT
from lmmrec_cli.llm.ask import Asker, EntityRequest
from lmmrec_cli.llm.cache import AnswerCache
from lmmrec_cli.llm.client import ChatClient, ChatSettings
from lmmrec_cli.llm.prompts import PromptSet
from lmmrec_cli.llm.runner import answer_all
from tests.llm_fixtures import API_KEY, KEY_ENV, cli, demo_template, server, ws_path  # noqa: F401


def _request(index: int, text: str) -> EntityRequest:
    return EntityRequest("user", index, f"u{index}", (("system", "s"), ("user", text)), "h")


def _run(server, tmp_path, requests, **settings):
    chat_settings = ChatSettings(base_url=server.url, api_key_env=KEY_ENV, timeout=2, max_retries=1, **settings)

    async def go():
        chat = ChatClient(chat_settings)
        with AnswerCache(tmp_path / "cache") as cache:
            try:
                return await answer_all(Asker(chat, cache, PromptSet.load()), requests, SILENT, "t"), chat
            finally:
                await chat.aclose()

    return asyncio.run(go())


def test_identical_prompts_are_asked_once_and_each_entity_keeps_its_own_index(server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, API_KEY)
    requests = [
        _request(0, "(no training interactions)"),
        _request(1, "other"),
        _request(2, "(no training interactions)"),
    ]
    outcomes, chat = _run(server, tmp_path, requests)
    assert server.chat_calls() == 2 and chat.stats.requests == 2
    assert [o.request.index for o in outcomes] == [0, 1, 2]
    assert outcomes[0].answer == outcomes[2].answer and all(o.answer for o in outcomes)


def test_concurrency_bound_is_respected(tmp_path, monkeypatch):
    from tests.fake_openai import FakeOpenAI

    monkeypatch.setenv(KEY_ENV, API_KEY)
    with FakeOpenAI(api_key=API_KEY, latency=0.1) as server:
        requests = [_request(i, f"prompt {i}") for i in range(12)]
        outcomes, _ = _run(server, tmp_path, requests, concurrency=3)
        assert all(o.answer for o in outcomes)
        times = sorted(r.time for r in server.records())
        # Answers are recorded as they finish: with 3 in flight and 0.1 s each, 12 take ≥ 0.4 s.
        assert times[-1] - times[0] >= 0.25
        starts = [r.time - 0.1 for r in server.records()]
        in_flight = max(sum(1 for s in starts if s <= t < s + 0.1) for t in starts)
        assert in_flight <= 3
