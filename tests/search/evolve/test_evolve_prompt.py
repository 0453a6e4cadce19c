"""The rendered evolve prompt, tested against an expected text: a change of the prompt shows in review."""

from pathlib import Path

from optforge.evaluators.feedback import result_text
from optforge.llm.measured import clip, visible
from optforge.llm.records import replay_key
from optforge.search.evolve.population import Program
from optforge.search.evolve.prompt import (
    build_messages,
    format_failures,
    format_inspirations,
    format_references,
    mark_measured,
)

EXPECTED = Path(__file__).with_name("expected_evolve_prompt.txt")

PARENT = "LR = 1e-3\n\n\ndef init(p, ctx):\n    return {}\n\n\ndef update(p, g, state, ctx):\n    return -ctx.lr * g\n"
SIBLING = PARENT.replace("-ctx.lr * g", "-ctx.lr * g.sign()")


def messages(step_time_ratio=0.5, feedback="slow on cnn_b: the best lr was at the grid edge"):
    result = {"status": "ok", "stage": "train", "fitness": -0.75, "step_time_ratio": step_time_ratio,
              "state_bytes_per_param": 0.0, "tasks": {
                  "cnn_b": {"score": -2.0, "speedup": 0.25, "lr_mult": 4.0, "family": "cnn", "flags": ["edge_lr"]},
                  "mlp_a": {"score": 0.5, "speedup": 1.41, "lr_mult": 1.0, "family": "mlp", "flags": []}}}
    if step_time_ratio is None:
        del result["step_time_ratio"]
    parent = Program(
        id="abc", source=PARENT, seed="sgd", status="ok", fitness=-0.75, scores={"mlp_a": 0.5, "cnn_b": -2.0},
        result=result, feedback=feedback)
    sib = Program(id="def", source=SIBLING, status="ok", fitness=-0.5, scores={"mlp_a": -0.5, "cnn_b": -0.5})
    refs = [("lion", 1.9, ["cnn_b"])]
    return build_messages(
        parent=parent, edit="diff",
        references=format_references(refs, {"lion": "LR = 1e-4\n# lion source\n"}, {"lion": {"cnn_b": -0.1}}),
        inspirations=format_inspirations([sib]),
        failures=format_failures([{"status": "invalid", "edit": "diff", "reason": "failed diff: diff block 1"},
                                  {"status": "diverged", "edit": "full", "reason": "NaN at step 3"}]),
    )


def test_rendered_prompt_matches_expected_text():
    system, user = messages()
    assert system["role"] == "system" and user["role"] == "user"
    got = system["content"] + "\n=====\n" + user["content"]
    assert visible(got) == EXPECTED.read_text(encoding="utf-8")  # what the model is sent


def _feedback(step_time_ratio):
    """Real evaluator feedback (the sentence on step time appears above 1.5x), marked as the strategy does."""
    return mark_measured(result_text({}, {}, {"fitness": 0.1, "wins": 1, "worst": -0.2}, step_time_ratio, "ok"))


def test_measured_step_times_reach_the_model_but_not_the_replay_key():
    variants = [messages(r, _feedback(r)) for r in (0.5, 1.7, 12.25, None)]
    sent = [visible(m[1]["content"]) for m in variants]
    assert "step time vs AdamW x1.70" in sent[1] and "Each step costs 1.7x AdamW's optimizer time." in sent[1]
    assert "x12.25" in sent[2] and "step time" not in sent[3]
    assert len({replay_key(m) for m in variants}) == 1
    assert replay_key(messages(0.5, "another feedback")) != replay_key(variants[0])  # computed text is keyed


def test_clipped_feedback_keys_the_same_whatever_the_measured_length():
    # the step-time sentence sits just before the 600-character cut: a plain [:600] would keep more or
    # less of the text after it depending on how many digits the measured ratio has
    clipped = [clip(mark_measured("a" * 595 + f"\nEach step costs {r}x AdamW's optimizer time." + "b" * 50), 600)
               for r in (1.6, 123.4)]
    assert visible(clipped[1]).endswith("costs 123.4x AdamW's optimizer time.bbbbb")
    assert len({replay_key([{"role": "user", "content": c}]) for c in clipped}) == 1


def test_full_rewrite_prompt_asks_for_a_code_block():
    parent = Program(id="x", source=PARENT, status="ok", fitness=0.0)
    _, user = build_messages(parent=parent, edit="full", references="R", inspirations="I", failures="F")
    assert "complete new rule module in a single ```python code block" in user["content"]
    assert "SEARCH" not in user["content"]
