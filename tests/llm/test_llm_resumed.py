"""A resumed run gets the answers its killed run was given after the last commit from the records, with no
HTTP request and no second count (`optforge.llm.resumed`). Real SQLite store, real HTTP to the scripted
server; the client is built as `optforge run` builds it (`commands.run._llm_client`); "the commit" is the
client state a strategy saves with its proposals, and "the kill" is dropping the client and its store.
The whole-run version, with a real SIGKILL, is tests/search/test_llm_resume.py."""

from __future__ import annotations

from fractions import Fraction

import pytest

from optforge.commands.run import _llm_client
from optforge.config import config_from_dict
from optforge.llm import LLMError
from optforge.llm.budget import Budget, BudgetExhausted
from optforge.llm.scripted import ScriptedServer
from optforge.store import Store

SCRIPT = [{"match": "^a$", "content": "answer a"}, {"match": "^b$", "content": "answer b"},
          {"match": "^c$", "content": "answer c"}, {"match": "^b$", "content": "answer b again"}]


def _client(run_dir, url, **budget):
    """The run's client as `optforge run` (or `--resume`, when `run_dir` holds calls) builds it."""
    config = config_from_dict({
        "strategy": {"name": "evolve"}, "budget": budget,
        "llm": {"model": "openai/scripted", "api_base": url, "api_key_env": None, "backoff_s": 0.0,
                "embedding_model": "openai/scripted-embed", "input_cost_per_token": 1e-6,
                "output_cost_per_token": 2e-6}})
    store = Store(run_dir)
    holder = {"store": store}
    return _llm_client(config, holder, store), store


def _totals(client, store):
    return client.spent_dollars, client.calls_made, store.llm_spend(), len(store.llm_calls())


def test_an_answer_recorded_after_the_last_commit_is_used_again_not_asked_or_counted_again(tmp_path):
    with ScriptedServer(SCRIPT) as server:
        whole, whole_store = _client(tmp_path / "whole", server.url)
        for prompt in "abc":
            whole.complete(prompt)
        expected, served = _totals(whole, whole_store), server.served

    with ScriptedServer(SCRIPT) as server:
        killed, store = _client(tmp_path / "run", server.url)
        killed.complete("a")
        commit = killed.state()  # saved with the proposals made from answer a
        assert killed.complete("b").text == "answer b"  # recorded; the run dies before its next commit
        store.close()

        resumed, store = _client(tmp_path / "run", server.url)
        resumed.load_state(commit)  # the strategy restored from the commit asks b again
        assert (resumed.spent_dollars, resumed.calls_made) == (commit["spent_dollars"], commit["calls_made"])
        again = resumed.complete("b")
        assert again.text == "answer b" and server.served == 2  # from the record: no request
        assert resumed.complete("c").text == "answer c"
        assert server.served == served == 3
        assert _totals(resumed, store) == expected
        assert resumed.state()["unused_rows"] == []


def test_held_answers_match_the_request_whole_and_in_order(tmp_path):
    with ScriptedServer([{"match": "^p$", "content": f"answer {i}"} for i in range(4)]) as server:
        killed, store = _client(tmp_path, server.url)
        commit = killed.state()
        assert [killed.complete("p").text for _ in range(2)] == ["answer 0", "answer 1"]
        store.close()

        resumed, store = _client(tmp_path, server.url)
        resumed.load_state(commit)
        assert resumed.complete("p", temperature=0.1).text == "answer 2"  # other params: another request
        assert [resumed.complete("p").text for _ in range(3)] == ["answer 0", "answer 1", "answer 3"]
        assert server.served == 4


def test_an_answer_not_asked_again_stays_held_through_the_next_commit_and_kill(tmp_path):
    with ScriptedServer(SCRIPT) as server:
        first, store = _client(tmp_path, server.url)
        commit = first.state()
        first.complete("b")
        store.close()

        second, store = _client(tmp_path, server.url)
        second.load_state(commit)
        second.complete("a")  # the resumed strategy asked something else first
        commit = second.state()
        assert commit["unused_rows"] == [0]  # b's answer: not seen by this state either
        store.close()

        third, store = _client(tmp_path, server.url)
        third.load_state(commit)
        assert third.complete("b").text == "answer b" and server.served == 2
        assert third.calls_made == store.llm_spend()[1] == len(store.llm_calls()) == 2
        assert third.spent_dollars == float(sum(Fraction(c["dollars"]) for c in store.llm_calls()))


def test_a_held_answer_is_used_again_even_with_the_budget_spent_as_the_uninterrupted_run_would(tmp_path):
    with ScriptedServer(SCRIPT) as server:
        killed, store = _client(tmp_path, server.url, max_llm_calls=2)
        killed.complete("a")
        commit = killed.state()
        killed.complete("b")
        assert killed.exhausted
        store.close()

        resumed, _ = _client(tmp_path, server.url, max_llm_calls=2)
        resumed.load_state(commit)
        assert not resumed.exhausted  # as before b was asked: the strategy goes on and asks it
        with pytest.raises(BudgetExhausted, match="held"):  # a new call does not fit beside the held one
            resumed.complete("c")
        assert resumed.complete("b").text == "answer b" and resumed.exhausted and resumed.calls_made == 2
        assert server.served == 2


def test_a_held_embedding_and_a_held_failure_need_no_server(tmp_path):
    with ScriptedServer([{"fault": "500"}, {"fault": "500"}, {"fault": "500"}, {"fault": "500"}]) as server:
        url = server.url
        killed, store = _client(tmp_path, url)
        commit = killed.state()
        vectors = killed.embed(["one rule", "another rule"])
        with pytest.raises(LLMError):
            killed.complete("a")  # every retry failed: recorded with its error and its requests
        store.close()
    spent = (killed.spent_dollars, killed.calls_made)

    resumed, _ = _client(tmp_path, url)  # the server is gone: a request would fail to connect
    resumed.load_state(commit)
    assert resumed.embed(["one rule", "another rule"]) == vectors
    with pytest.raises(LLMError, match="recorded before the resume"):
        resumed.complete("a")
    assert (resumed.spent_dollars, resumed.calls_made) == spent


def test_a_state_from_before_the_mark_keeps_the_recorded_spend(tmp_path):
    with ScriptedServer(SCRIPT) as server:
        killed, store = _client(tmp_path, server.url)
        killed.complete("a")
        old_state = {k: v for k, v in killed.state().items() if k in ("spent_dollars", "calls_made")}
        killed.complete("b")
        store.close()

        resumed, _ = _client(tmp_path, server.url)
        resumed.load_state(old_state)
        assert resumed.calls_made == 2  # nothing is known to be unseen: nothing is held, all stays counted
        resumed.complete("b")
        assert server.served == 3 and resumed.calls_made == 3


def test_a_budget_holds_calls_against_its_limits_until_they_are_used():
    b = Budget(max_dollars=1.0, max_calls=3, spent_dollars=0.25, calls_made=1, held_dollars=0.5, held_calls=1)
    assert (b.spent_dollars, b.calls_made, b.held, b.exhausted) == (0.25, 1, (0.5, 1), False)
    with pytest.raises(BudgetExhausted, match="max_dollars"):
        b.reserve(0.3)  # 0.25 spent + 0.5 held + 0.3 > 1
    b.settle(b.reserve(0.2), 0.2)
    with pytest.raises(BudgetExhausted, match="max_llm_calls.*1 more held"):
        b.reserve(0.0)
    b.use_held(0.5, 1)
    assert (b.spent_dollars, b.calls_made, b.held, b.exhausted) == (0.95, 3, (0.0, 0), True)
