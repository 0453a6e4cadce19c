"""`rule_probe` one source at a time (a sandbox job each) next to `rule_probes` (one sandbox job for the
batch, a rule process per source), on the bundled seed rules.

Target (issue 17): about 25 ms a source. A probe job of its own costs a sandbox job start and a rule
host per source; the batch pays them once and then, per source, the rule process's hand-over, the
rule's load, PROBE_STEPS + 1 round trips, and the wait until that process is gone.

Run: python benchmarks/rule_probe_batch.py [--sources 32] [--reps 3]
Rounds alternate the two ways so machine noise hits each alike; medians are printed, with the ratio.
Wall time on a busy machine mostly measures the wait for a CPU (each source hands work between four
processes), so the CPU seconds the sandbox measured for the job (its process and every process under
it: the rule host and each rule process) are printed too.

Measured 2026-12-01 00:07 UTC, `--sources 64 --reps 1` (64 sources in one job: a job took at most 32
before the fd leak of a rule that fails to load was fixed; up to 256 now), load average 8 on 2 CPUs:
a sandbox job each 199.8 ms wall / 179.4 ms CPU per source, one job for them all 35.7 / 48.7 ms
(5.6x / 3.7x).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from optforge import sandbox, seeds
from optforge.search.probe import JOB, Probe, rule_probe, rule_probes


def job_cpu_s(sources: list[str]) -> float:
    """CPU seconds of one probe job on `sources`, as the sandbox measured it."""
    res = sandbox.run("", JOB, {"sources": sources}, sandbox.RULE_POLICY, sandbox.Limits(static_check=False))
    assert res.ok, res.exception or res.reason
    return res.cpu_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=32, help="sources per round (the seed rules, cycled)")
    ap.add_argument("--reps", type=int, default=3, help="rounds of each way")
    args = ap.parse_args()
    names = seeds.names()
    sources = [seeds.source(names[i % len(names)]) for i in range(args.sources)]
    rule_probe(sources[0])  # the warm sandbox template starts once, outside the timings

    single, batch, single_cpu, batch_cpu = [], [], [], []
    for _ in range(args.reps):
        single_cpu.append(sum(job_cpu_s([s]) for s in sources) / len(sources))
        batch_cpu.append(job_cpu_s(sources) / len(sources))
        t = time.perf_counter()
        alone = [rule_probe(s) for s in sources]
        single.append((time.perf_counter() - t) / len(sources))
        t = time.perf_counter()
        together = rule_probes(sources)
        batch.append((time.perf_counter() - t) / len(sources))
        failed = [str(p) for p in together if not isinstance(p, Probe)]
        assert not failed, failed
        assert all(np.array_equal(a.updates[k], b.updates[k]) for a, b in zip(alone, together) for k in a.updates)

    one, many = statistics.median(single), statistics.median(batch)
    one_cpu, many_cpu = statistics.median(single_cpu), statistics.median(batch_cpu)
    print(f"{args.sources} sources, {args.reps} rounds; medians per source    wall         sandbox CPU")
    print(f"  rule_probe, a sandbox job each             {one * 1e3:8.1f} ms   {one_cpu * 1e3:8.1f} ms")
    print(f"  rule_probes, one job for them all          {many * 1e3:8.1f} ms   {many_cpu * 1e3:8.1f} ms"
          "   (target about 25 ms)")
    print(f"  ratio single / batch                       {one / many:8.1f}x    {one_cpu / many_cpu:8.1f}x")


if __name__ == "__main__":
    main()
