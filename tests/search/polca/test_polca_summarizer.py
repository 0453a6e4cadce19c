"""The summarizer: sampling runs, the prompt text, and reading its XML answer (malformed ones included)."""

from __future__ import annotations

import random

import pytest

from optforge.search.polca.memory import Memory, Rollout
from optforge.search.polca.summarizer import (
    build_messages,
    format_trajectories,
    next_context,
    read_summary,
    sample_for_summary,
)


def pool():
    m = Memory()
    out = []
    for name, scores in (("a", [0.5, -1.0, 0.0]), ("b", [1.0, 2.0]), ("c", [-3.0]), ("d", []), ("e", [None])):
        c = m.new(name, f"LR = 1e-3  # {name}\n")
        c.add_rollouts(Rollout("task", i, s, f"{name} run {i}") for i, s in enumerate(scores))
        out.append(c)
    return out


def test_sampling_skips_unscored_and_summarized_candidates_and_splits_runs_at_the_threshold():
    shown = sample_for_summary(pool(), random.Random(0), k=5, summarized={"b"})
    assert sorted(s.candidate.id for s in shown) == ["a", "c"]
    by_id = {s.candidate.id: s for s in shown}
    assert by_id["a"].success.score == 0.5  # the only run above 0
    assert by_id["a"].failure.score in (-1.0, 0.0)  # 0 is not above the threshold: a failure
    assert by_id["c"].success is None and by_id["c"].failure.score == -3.0
    assert len(sample_for_summary(pool(), random.Random(0), k=2)) == 2
    low = sample_for_summary(pool(), random.Random(0), k=5, threshold=-2.0, summarized={"b", "c"})
    assert low[0].failure is None  # every run of a is above -2


def test_sampling_is_deterministic_given_the_rng_state():
    def picks(seed):
        return [(s.candidate.id, s.success, s.failure) for s in sample_for_summary(pool(), random.Random(seed), k=2)]

    assert picks(1) == picks(1)
    assert len({tuple(picks(seed)) for seed in range(20)}) > 1  # the rng does choose


def test_prompt_text():
    shown = [s for s in sample_for_summary(pool(), random.Random(0), k=5) if s.candidate.id == "c"]
    assert format_trajectories(shown) == (
        "### Candidate c: mean score -3.000 (the floor: a failure, or no progress) over 1 run(s)\n"
        "```python\nLR = 1e-3  # c\n```\n"
        "Failed run: task task, seed 0, score -3.000 (the floor: a failure, or no progress)\n"
        "Feedback:\nc run 0"
    )
    system, user = build_messages("", shown)
    assert system["role"] == "system" and "actionable guidance" in system["content"]
    assert "Current summary (from the previous analysis):\n(none yet)\n\nNew candidates and runs to analyse:\n### Candidate c" in user["content"]
    assert user["content"].endswith("<summary>\nThe complete, consolidated summary: concrete recommendations "
                                    "for writing rules that score better.\n</summary>\n")
    assert "Current summary (from the previous analysis):\nUse sign.\n" in build_messages("Use sign.", shown)[1]["content"]


def test_reads_the_summary_and_moves_the_reasoning_out():
    r = read_summary("<reasoning>\nLion-like rules diverge less.\n</reasoning>\n<summary>\nUse sign updates.\n"
                     "Clip by grad_norm.\n</summary>\n", finish_reason="stop")
    assert r.ok and r.summary == "Use sign updates.\nClip by grad_norm." and r.reasoning == "Lion-like rules diverge less."
    r = read_summary("<think>draft <summary>no</summary></think>\nOK:\n<SUMMARY>first</SUMMARY> <summary>second</summary>")
    assert r.summary == "second" and "draft" in r.reasoning


@pytest.mark.parametrize("content, finish, reason", [
    ("<reasoning>x</reasoning>\nUse sign updates.", "stop", "no <summary>...</summary> block"),
    ("<reasoning>x</reasoning>\n<summary>Use sign upd", "stop", "not closed"),
    ("<reasoning>x</reasoning>\n<summary>\n  \n</summary>", "stop", "empty"),
    ("<reasoning>x</reasoning>\n<summary>Use sign updates.</summary>", "length", "truncated answer"),
    ("<reasoning>x\n<summary>Use sign.</summary>", "stop", "inside the reasoning"),
    ("", "stop", "no <summary>"),
    (None, None, "no <summary>"),
    ("<summary>ok</summary>", "content_filter", "content filter"),
])
def test_malformed_answers_keep_the_old_context(content, finish, reason):
    r = read_summary(content, finish_reason=finish)
    assert not r.ok and reason in r.reason
    assert next_context("old advice", r) == "old advice"


def test_a_good_answer_replaces_the_context():
    assert next_context("old advice", read_summary("<summary>new advice</summary>")) == "new advice"
