"""Subprocess driver for the multi-node test: a head (0 CPUs) plus two 1-CPU nodes on one machine
(`ray.cluster_utils.Cluster`); one node is removed mid-run. Prints a JSON summary on the last line.

usage: python cluster_driver.py RUN_DIR
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ray  # noqa: E402
import ray.cloudpickle  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

import fake_eval  # noqa: E402
from optforge.config import config_from_dict  # noqa: E402
from optforge.store import Store  # noqa: E402

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
nodes = [cluster.add_node(num_cpus=1), cluster.add_node(num_cpus=1)]
cluster.wait_for_nodes()
ray.cloudpickle.register_pickle_by_value(fake_eval)
ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)

removed = []


def remove_one(progress):
    if progress.done >= 4 and not removed and progress.in_flight == 2:
        removed.append(nodes[1].unique_id)
        cluster.remove_node(nodes[1], allow_graceful=False)


config = config_from_dict({"strategy": {"name": "list"}, "slots": 2, "stages": ["train"], "retries": 3,
                           "eval_timeout_s": 120})
sources = [fake_eval.fake_source(0.1 * i, "# SLOW 1.5") for i in range(10)]
store = Store(sys.argv[1])
summary = fake_eval.make_engine(config, fake_eval.ListStrategy(sources), store, progress=remove_one).run()
print("RESULT " + json.dumps({"nodes": summary.nodes, "statuses": summary.statuses, "removed": removed,
                  "lost_events": len(store.events("lost")), "evaluations": len(store.evaluations())}))
ray.shutdown()
cluster.shutdown()
