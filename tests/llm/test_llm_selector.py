import numpy as np

from optforge.llm import ModelWeight, ModelSelector


def test_weights_are_respected():
    sel = ModelSelector([ModelWeight("a", 3.0), ModelWeight("b", 1.0)])
    rng = np.random.default_rng(0)
    picks = [sel.choose(rng) for _ in range(4000)]
    assert abs(picks.count("a") / 4000 - 0.75) < 0.03


def test_bandit_tries_every_arm_then_prefers_improvement_per_dollar():
    sel = ModelSelector([ModelWeight("cheap"), ModelWeight("dear")], bandit=True, exploration=0.1)
    rng = np.random.default_rng(0)
    assert {sel.choose(rng), sel.choose(rng)} <= {"cheap", "dear"}
    for _ in range(20):
        sel.update("cheap", 0.1, 0.001)  # 100 fitness per dollar
        sel.update("dear", 0.3, 0.05)  # 6 fitness per dollar
    assert sel.choose(rng) == "cheap"
    s = sel.scores()
    assert s["cheap"] > s["dear"]


def test_free_models_fall_back_to_improvement_per_call_and_state_round_trips():
    sel = ModelSelector([ModelWeight("x"), ModelWeight("y")], bandit=True, exploration=0.0)
    sel.update("x", 0.0, 0.0)
    sel.update("y", 0.5, 0.0)
    assert sel.choose(np.random.default_rng(0)) == "y"
    other = ModelSelector([ModelWeight("x"), ModelWeight("y"), ModelWeight("z")], bandit=True)
    other.load_state(sel.state())
    assert other.arms["y"] == sel.arms["y"] and other.arms["z"]["n"] == 0
    assert other.choose(np.random.default_rng(0)) == "z"  # a new arm is tried first
