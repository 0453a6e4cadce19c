"""Engine scaling: the same batch of candidates with 1 and 2 slots on this machine, then on a
simulated 3-node `ray.cluster_utils.Cluster`. Prints throughput against ideal and the engine's own
overhead per evaluation (scheduling + store writes + result handling), as a share of evaluation time.

Targets (issue 6): engine overhead < 2 % of evaluation time; 2 slots >= 1.8x the throughput of 1.

    python benchmarks/engine_scaling.py [--n 12] [--work 1.0]

The evaluation is a stand-in with a fixed cost (no sandbox, no training), so that only the engine
and Ray are measured: `cpu` burns one core with single-threaded torch matmuls for `--work` seconds;
`sleep` waits `--work` seconds (used on the simulated cluster, whose 3 nodes share this machine's
cores, so CPU work there would measure the machine, not the engine).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from optforge.config import config_from_dict  # noqa: E402
from optforge.engine import Engine  # noqa: E402
from optforge.evaluators import EvalRequest  # noqa: E402
from optforge.store import Store  # noqa: E402
from optforge.types import Candidate, EvaluationResult, Status  # noqa: E402


def fixed_cost_evaluate(request: EvalRequest) -> EvaluationResult:
    """Spend the cost written in the source (`# cpu 1.0` or `# sleep 1.0`), return a score."""
    kind, seconds = request.source.split("#", 1)[1].split()[:2]
    t0 = time.perf_counter()
    if kind == "sleep":
        time.sleep(float(seconds))
    else:
        import torch

        a = torch.randn(192, 192)
        while time.perf_counter() - t0 < float(seconds):
            a = torch.tanh(a @ a)
    return EvaluationResult(Status.OK, stage=request.stage, suite=request.suite, suite_version="bench",
                            metrics={"fitness": 0.0, "eval_seconds": time.perf_counter() - t0})


class Batch:
    name = "batch"

    def __init__(self, sources: list[str]):
        self.sources, self.i = sources, 0

    def propose(self, n):
        out = [Candidate.new(s, id=f"b{self.i + k}") for k, s in enumerate(self.sources[self.i : self.i + n])]
        self.i += len(out)
        return out

    def observe(self, candidate, result):
        pass

    def done(self):
        return self.i >= len(self.sources)

    def state(self):
        return {"i": self.i}

    def load_state(self, state):
        self.i = state["i"]


def timed_engine(slots: int, sources: list[str]) -> tuple[float, float, float]:
    """(wall seconds, engine seconds, mean evaluation seconds) of one run."""
    cfg = config_from_dict({"strategy": {"name": "batch"}, "slots": slots, "stages": ["train"],
                            "eval_timeout_s": 600})
    store = Store(tempfile.mkdtemp(prefix="engine-bench-"))
    engine = Engine(cfg, Batch(sources), store, fixed_cost_evaluate, make_request=EvalRequest,
                    suite_version=lambda s: "bench")
    spent = [0.0]
    parts = [(engine.dispatch, "_fill_slots"), (engine.dispatch, "complete"), (engine, "_on_proposals"),
             (engine.tally, "report")]  # everything but waiting
    for owner, name in parts:
        original = getattr(owner, name)

        def wrapped(*a, _orig=original, **k):
            t0 = time.perf_counter()
            try:
                return _orig(*a, **k)
            finally:
                spent[0] += time.perf_counter() - t0
        setattr(owner, name, wrapped)
    t0 = time.perf_counter()
    engine.run()
    wall = time.perf_counter() - t0
    evals = [e.metrics["eval_seconds"] for e in store.evaluations()]
    assert len(evals) == len(sources), "some evaluations are missing"
    # nested calls (complete inside _fill_slots on a cache hit) never happen here: all sources differ
    return wall, spent[0], sum(evals) / len(evals)


def report(label: str, slots: int, ideal: float, base_wall: float | None, n: int, res: tuple) -> float:
    wall, engine_s, mean_eval = res
    per_eval = engine_s / n
    speed = (base_wall / wall) if base_wall else 1.0
    print(f"{label:<28} slots {slots}  wall {wall:6.2f} s  throughput {n / wall * 3600:7.0f}/h  "
          f"x{speed:4.2f} (ideal x{ideal:.2f}, {speed / ideal * 100:5.1f} % of ideal)  "
          f"engine {per_eval * 1000:6.1f} ms/eval = {per_eval / mean_eval * 100:5.2f} % of eval time")
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=12, help="candidates per configuration")
    ap.add_argument("--work", type=float, default=1.0, help="seconds per evaluation")
    args = ap.parse_args()
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    warm = Batch([f"LR = 1\n# cpu 0.3 warm{i}" for i in range(2)])
    cfg = config_from_dict({"strategy": {"name": "batch"}, "slots": 2, "stages": ["train"]})
    Engine(cfg, warm, Store(tempfile.mkdtemp()), fixed_cost_evaluate, make_request=EvalRequest,
           suite_version=lambda s: "bench").run()  # start both workers (torch imported) before timing
    cpu = [f"LR = 1\n# cpu {args.work} c{i}" for i in range(args.n)]
    print(f"{args.n} candidates x {args.work:.1f} s each; machine has {os.cpu_count()} cores")
    w1 = report("local, cpu-bound", 1, 1.0, None, args.n, timed_engine(1, cpu))
    report("local, cpu-bound", 2, 2.0, w1, args.n, timed_engine(2, [s + "x" for s in cpu]))
    ray.shutdown()

    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(3):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    sleep = [f"LR = 1\n# sleep {args.work} s{i}" for i in range(args.n)]
    timed_engine(3, [f"LR = 1\n# sleep 0.2 w{i}" for i in range(3)])  # warm the three nodes
    w1 = report("3-node cluster, fixed-time", 1, 1.0, None, args.n, timed_engine(1, sleep))
    report("3-node cluster, fixed-time", 3, 3.0, w1, args.n, timed_engine(3, [s + "x" for s in sleep]))
    ray.shutdown()
    cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
