"""The evolve strategy reads answers with optforge.llm.parse, for diffs and full rewrites alike:
what the scripted server returns (finish_reason, reasoning, CRLF) decides the candidate."""

import numpy as np

from optforge.search.evolve import EvolveConfig, EvolveStrategy


def _strategy(llm, edit):
    return EvolveStrategy(EvolveConfig(warm_start=("adamw",), islands=1, edit=edit), llm, np.random.default_rng(0))


def _children(evo, st, n):
    seed = st.propose(1)[0]
    st.observe(seed, evo.ok_result({"mlp_a": 0.0}))
    out = []
    for _ in range(n):
        out.extend(st.propose(1))
    return out


def test_truncated_answer_is_invalid_with_a_reason_naming_max_tokens(evo, llm_for):
    cut = evo.fence(evo.GOOD)[:-40]  # cut inside the rule, as a provider at its token limit does
    whole_but_cut = evo.fence(evo.GOOD)  # looks complete, but the provider says it stopped at the limit
    llm, _ = llm_for([{"content": cut, "finish_reason": "length"},
                      {"content": whole_but_cut, "finish_reason": "length"}], max_tokens=512)
    st = _strategy(llm, "full")
    for c in _children(evo, st, 2):
        assert c.note["status"] == "invalid" and c.note["finish_reason"] == "length"
        assert "truncated" in c.note["reason"] and "llm.max_tokens=512" in c.note["reason"]
    assert "llm.max_tokens=512" in st.failures[0][-1]["reason"]  # and the next prompt says so


def test_reasoning_drafts_and_crlf_do_not_change_the_candidate(evo, llm_for):
    draft = evo.diff("BETA2 = 0.999", "BETA2 = 0.5")
    final = evo.diff("BETA2 = 0.999", "BETA2 = 0.95")
    llm, _ = llm_for([f"<think>\r\nfirst idea:\r\n{draft}\r\ntoo low\r\n</think>\r\n{final}".replace("\n", "\r\n"),
                      {"content": evo.fence(evo.GOOD.replace("0.95", "0.97")), "reasoning_content": draft}])
    st = _strategy(llm, "diff")
    first, second = _children(evo, st, 2)
    assert first.note.get("status") is None and first.note["parsed_as"] == "diff"
    assert first.source == evo.GOOD  # only the final diff, applied to the parent, with LF endings
    assert second.note.get("status") is None and second.note["parsed_as"] == "full"
    assert "BETA2 = 0.97" in second.source
