"""What `optforge run`'s progress line says while MoH (or any strategy that proposes rollouts) runs:
its proposal count holds candidates and rollouts, so it is not shown as a fraction of
budget.max_candidates, and the ETA says it is a budget's."""

from __future__ import annotations

from optforge.commands.run import _ProgressLine
from optforge.run_outcome import Progress


def test_the_progress_line_counts_proposals_not_a_fraction_of_max_candidates(capsys):
    line = _ProgressLine()
    line(Progress(phase="search", proposed=37, done=12, in_flight=2, queued=1, best_fitness=0.25, best_id="c1",
                  failures={}, elapsed_s=75.0, eta_s=3600.0))
    out = capsys.readouterr().err
    assert "proposals 37 (candidates+rollouts)" in out
    assert "37/" not in out
    assert "budget ETA 1:00:00" in out
