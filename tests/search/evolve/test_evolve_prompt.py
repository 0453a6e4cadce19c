"""The rendered evolve prompt, tested against an expected text (DESIGN rule 6)."""

from pathlib import Path

from optforge.search.evolve.population import Program
from optforge.search.evolve.prompt import build_messages, format_failures, format_inspirations, format_references

EXPECTED = Path(__file__).with_name("expected_evolve_prompt.txt")

PARENT = "LR = 1e-3\n\n\ndef init(p, ctx):\n    return {}\n\n\ndef update(p, g, state, ctx):\n    return -ctx.lr * g\n"
SIBLING = PARENT.replace("-ctx.lr * g", "-ctx.lr * g.sign()")


def messages():
    parent = Program(
        id="abc", source=PARENT, seed="sgd", status="ok", fitness=-0.75, scores={"mlp_a": 0.5, "cnn_b": -2.0},
        result={"status": "ok", "stage": "train", "fitness": -0.75, "step_time_ratio": 0.5,
                "state_bytes_per_param": 0.0, "tasks": {
                    "cnn_b": {"score": -2.0, "speedup": 0.25, "lr_mult": 4.0, "family": "cnn", "flags": ["edge_lr"]},
                    "mlp_a": {"score": 0.5, "speedup": 1.41, "lr_mult": 1.0, "family": "mlp", "flags": []}}},
        feedback="slow on cnn_b: the best lr was at the grid edge")
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
    assert got == EXPECTED.read_text(encoding="utf-8")


def test_full_rewrite_prompt_asks_for_a_code_block():
    parent = Program(id="x", source=PARENT, status="ok", fitness=0.0)
    _, user = build_messages(parent=parent, edit="full", references="R", inspirations="I", failures="F")
    assert "complete new rule module in a single ```python code block" in user["content"]
    assert "SEARCH" not in user["content"]
