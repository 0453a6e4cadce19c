"""Subprocess driver for the kill-in-an-inner-run test: joins the test session's Ray and runs MoH
against the test's scripted server, with rules the fake evaluator is slow on.

usage: python moh_driver.py RUN_DIR RAY_ADDRESS SERVER_URL
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "engine"))

import ray  # noqa: E402
import ray.cloudpickle  # noqa: E402

import fake_eval  # noqa: E402
from moh_harness import RESUME_PARAMS, run_moh  # noqa: E402

ray.cloudpickle.register_pickle_by_value(fake_eval)
ray.init(address=sys.argv[2], log_to_driver=False, configure_logging=False)
run_moh(sys.argv[1], {"api_base": sys.argv[3]}, RESUME_PARAMS)
