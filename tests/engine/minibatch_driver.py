"""Subprocess driver for the kill-in-repeats test: joins the test session's Ray and runs the
minibatch strategy (rollouts and repeats) with slow evaluations. The engine's time limit is generous:
a new driver's first Ray workers start (import torch) within it, however loaded the machine is.

usage: python minibatch_driver.py RUN_DIR RAY_ADDRESS
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ray  # noqa: E402
import ray.cloudpickle  # noqa: E402

import fake_eval  # noqa: E402
from optforge.store import Store  # noqa: E402

ray.cloudpickle.register_pickle_by_value(fake_eval)
ray.init(address=sys.argv[2], log_to_driver=False, configure_logging=False)
store = Store(sys.argv[1])
fake_eval.make_minibatch_engine(fake_eval.minibatch_config(eval_timeout_s=600), fake_eval.MinibatchStrategy(slow=0.4), store).run()
