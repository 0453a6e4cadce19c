"""Subprocess driver for the kill-before-a-refusal-is-observed test: joins the test session's Ray and
runs the minibatch strategy on one candidate with one rollout the engine refuses (a held-out task), a strategy that
never returns from observing that refusal, so the run is killed with the refusal stored and not
observed.

usage: python refusal_driver.py RUN_DIR RAY_ADDRESS
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ray  # noqa: E402
import ray.cloudpickle  # noqa: E402

import fake_eval  # noqa: E402
from optforge.store import Store  # noqa: E402

REFUSED = {"tasks": ["held_lm"], "seeds": [100]}
"""The rollout of m0 the engine refuses: it asks for a held-out task."""
FITS = (0.1,)
"""One candidate, m0: its stages, then its three rollouts and the refused one."""


class StallsOnRefusal(fake_eval.MinibatchStrategy):
    def observe_rollout(self, rollout, result) -> None:
        if not result.ok:
            time.sleep(3600)  # killed in here
        super().observe_rollout(rollout, result)


if __name__ == "__main__":
    ray.cloudpickle.register_pickle_by_value(fake_eval)
    ray.init(address=sys.argv[2], log_to_driver=False, configure_logging=False)
    fake_eval.make_minibatch_engine(fake_eval.minibatch_config(eval_timeout_s=600), StallsOnRefusal(fits=FITS, bad=REFUSED),
                                    Store(sys.argv[1])).run()
