"""Pick the model for each call: by fixed weights, or by a UCB bandit on fitness improvement per dollar.

The bandit (after ShinkaEvolve's cost-aware UCB) rewards an arm with the fitness improvement of the
child over its parent (0 when none or on failure) and charges it the call's dollars; its value is
improvement per dollar (per call when every call was free), normalised across arms, plus a UCB1 term.
Untried arms are tried first. Randomness comes from the generator passed in. State is JSON-able.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from optforge.config import ModelWeight


class ModelSelector:
    def __init__(self, choices: Sequence[ModelWeight], *, bandit: bool = False, exploration: float = 1.0):
        if not choices:
            raise ValueError("ModelSelector needs at least one model")
        self.models = [c.model for c in choices]
        w = np.array([c.weight for c in choices], dtype=float)
        self.weights = (w / w.sum()).tolist()
        self.bandit = bool(bandit)
        self.exploration = float(exploration)
        self.arms = {m: {"n": 0, "improvement": 0.0, "dollars": 0.0} for m in self.models}

    def choose(self, rng: np.random.Generator) -> str:
        if len(self.models) == 1:
            return self.models[0]
        if not self.bandit:
            return self.models[int(rng.choice(len(self.models), p=self.weights))]
        untried = [m for m in self.models if self.arms[m]["n"] == 0]
        if untried:
            return untried[int(rng.integers(len(untried)))]
        scores = self.scores()
        best = max(scores.values())
        ties = [m for m in self.models if scores[m] >= best - 1e-12]
        return ties[int(rng.integers(len(ties)))]

    def scores(self) -> dict[str, float]:
        """UCB value of each tried arm."""
        paid = sum(a["dollars"] for a in self.arms.values()) > 0
        rates = {}
        for m, a in self.arms.items():
            cost = a["dollars"] if paid else a["n"]
            rates[m] = a["improvement"] / cost if cost > 0 else 0.0
        top = max(rates.values()) or 1.0
        total = sum(a["n"] for a in self.arms.values())
        return {
            m: rates[m] / top + self.exploration * math.sqrt(math.log(max(total, 1)) / max(a["n"], 1))
            for m, a in self.arms.items()
        }

    def update(self, model: str, improvement: float, dollars: float) -> None:
        """Credit one finished proposal of `model`: its fitness gain over the parent and its cost."""
        arm = self.arms.get(model)
        if arm is None:  # a model from an older config: keep counting it, never choose it
            arm = self.arms[model] = {"n": 0, "improvement": 0.0, "dollars": 0.0}
        arm["n"] += 1
        arm["improvement"] += max(0.0, float(improvement))
        arm["dollars"] += max(0.0, float(dollars))

    def state(self) -> dict[str, Any]:
        return {"arms": {m: dict(a) for m, a in self.arms.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore arm statistics; arms of models no longer configured are kept but never chosen."""
        for m, a in (state.get("arms") or {}).items():
            self.arms[m] = {"n": int(a["n"]), "improvement": float(a["improvement"]), "dollars": float(a["dollars"])}
