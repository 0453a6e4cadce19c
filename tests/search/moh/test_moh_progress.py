"""What `optforge run`'s progress line says while MoH (or any strategy that proposes rollouts) runs:
candidates against budget.max_candidates, rollouts apart (they do not count against it), and an ETA
that says it is a budget's."""

from __future__ import annotations

from optforge.commands.run import _ProgressLine
from optforge.run_outcome import Progress


def _line(capsys, max_candidates, **kw) -> str:
    line = _ProgressLine(max_candidates)
    line(Progress(phase="search", done=12, in_flight=2, queued=1, best_fitness=0.25, best_id="c1",
                  failures={}, elapsed_s=75.0, eta_s=3600.0, **kw))
    return capsys.readouterr().err


def test_candidates_are_a_fraction_of_max_candidates_and_rollouts_are_counted_apart(capsys):
    out = _line(capsys, 80, proposed=37, candidates=9)
    assert "candidates 9/80, rollouts 28 |" in out and "37" not in out
    assert "budget ETA 1:00:00" in out


def test_a_run_without_rollouts_or_a_candidate_budget(capsys):
    out = _line(capsys, None, proposed=5, candidates=5)
    assert "candidates 5 |" in out and "rollouts" not in out
