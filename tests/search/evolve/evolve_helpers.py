"""Shared helpers of the evolve tests (a module of its own: with --import-mode=importlib a test
file cannot import from conftest)."""

from optforge import seeds
from optforge.types import EvaluationResult, Status

ADAMW = seeds.source("adamw")
GOOD = ADAMW.replace("BETA2 = 0.999", "BETA2 = 0.95")  # a real change a model might propose


def fence(src: str) -> str:
    return f"A better rule:\n```python\n{src}```\n"


def diff(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def ok_result(scores: dict[str, float], stage: str = "train", feedback: str = "") -> EvaluationResult:
    tasks = {t: {"score": s, "speedup": 2.0 ** s, "lr_mult": 1.0, "family": t.split("_")[0], "flags": []}
             for t, s in scores.items()}
    fit = sum(scores.values()) / len(scores)
    return EvaluationResult(Status.OK, stage=stage, metrics={"fitness": fit, "tasks": tasks}, feedback=feedback)


def drive(st, rounds: int, fitness_of) -> list:
    """Propose and observe in order: a deterministic stand-in for the engine's deterministic mode."""
    out = []
    for _ in range(rounds):
        for c in st.propose(2):
            out.append(c)
            if c.note.get("status") == "invalid":
                st.observe(c, EvaluationResult.failure(Status.INVALID, c.note["reason"], stage="smoke"))
            else:
                st.observe(c, ok_result(fitness_of(c.source)))
    return out
