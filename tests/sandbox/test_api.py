"""run(): results, buffers, reasons, layers, `require`, and concurrent callers (threads, processes)."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from optforge import sandbox, seeds
from optforge.sandbox import Limits
from optforge.types import Status

L = Limits(timeout_s=30.0)


def test_ok_result_with_value_and_buffers(adamw_source):
    res = sandbox.run(adamw_source, "sandbox_jobs:rule_job", {"steps": 3, "seed": 1}, sandbox.RULE_POLICY, L)
    assert res.ok and res.reason == "ok" and res.status is Status.OK
    assert res.value["steps"] == 3
    p = res.buffers["p"]
    assert p.shape == (4, 3) and p.dtype == np.float32
    assert res.value["norm"] == pytest.approx(float(np.linalg.norm(p)), rel=1e-5)
    assert res.mode in ("warm", "cold") and res.wall_s > 0 and res.peak_mb > 0
    assert set(res.layers) == set(sandbox.LAYERS)


def test_same_result_in_process(adamw_source):
    """The sandbox changes where the job runs, not what it computes."""
    import sandbox_jobs

    want, bufs = sandbox_jobs.rule_job(adamw_source, {"steps": 4, "seed": 2})
    res = sandbox.run(adamw_source, "sandbox_jobs:rule_job", {"steps": 4, "seed": 2}, sandbox.RULE_POLICY, L)
    assert res.value == want
    np.testing.assert_array_equal(res.buffers["p"], bufs["p"])


def test_buffers_of_several_dtypes():
    res = sandbox.run("x = 1\n", "sandbox_jobs:buffers_job", {}, sandbox.RULE_POLICY, L)
    assert res.ok
    np.testing.assert_array_equal(res.buffers["a"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert res.buffers["b"].dtype == np.bool_ and res.buffers["b"].tolist() == [True, False]


def test_load_error_is_invalid():
    res = sandbox.run("import torch\n\ndef init(p, ctx):\n    return {}\n", "sandbox_jobs:rule_job", {}, sandbox.RULE_POLICY, L)
    assert res.status is Status.INVALID and res.reason == "load_error"
    assert "LR" in res.exception


def test_unserialisable_value_is_bad_output():
    res = sandbox.run("x = 1\n", "sandbox_jobs:bad_value_job", {}, sandbox.RULE_POLICY, L)
    assert res.reason == "bad_output" and res.status is Status.CRASHED


def test_exit_without_result():
    res = sandbox.run("x = 1\n", "sandbox_jobs:exit_job", {}, sandbox.RULE_POLICY, L)
    assert res.reason == "exit:3" and res.status is Status.CRASHED


def test_rejected_costs_no_process():
    res = sandbox.run("import os\nLR = 1\n", "sandbox_jobs:rule_job", {}, sandbox.RULE_POLICY, L)
    assert res.status is Status.INVALID and res.reason == "rejected"
    assert "line 1" in res.exception and "import of 'os'" in res.exception
    assert res.uid is None and res.wall_s < 0.5


def test_required_layer_missing_refuses():
    res = sandbox.run("x = 1\n", "sandbox_jobs:echo_job", {}, sandbox.RULE_POLICY, Limits(timeout_s=30, require=("seccomp",)))
    assert res.reason == "layer_unavailable" and res.status is Status.LOST and "seccomp" in res.exception
    res = sandbox.run("x = 1\n", "sandbox_jobs:echo_job", {}, sandbox.RULE_POLICY,
                      Limits(timeout_s=30, static_check=False, require=("static_check",)))
    assert res.reason == "layer_unavailable"


def test_required_layers_present_run(adamw_source):
    probe = sandbox.run("x = 1\n", "sandbox_jobs:echo_job", {}, sandbox.RULE_POLICY, L)
    have = tuple(k for k in ("network", "filesystem", "pid_namespace") if probe.layers.get(k))
    res = sandbox.run(adamw_source, "sandbox_jobs:rule_job", {}, sandbox.RULE_POLICY, Limits(timeout_s=30, require=have))
    assert res.ok, res.exception
    missing = tuple(k for k in ("network", "filesystem", "pid_namespace") if not probe.layers.get(k))
    if missing:
        res = sandbox.run(adamw_source, "sandbox_jobs:rule_job", {}, sandbox.RULE_POLICY, Limits(timeout_s=30, require=missing))
        assert res.reason == "layer_unavailable"


@pytest.mark.skipif(os.geteuid() != 0, reason="the full layer set needs root")
def test_layers_active_as_root_and_probe_confirms(tmp_path, layers_here):
    if not (layers_here.get("pid_namespace") and layers_here.get("network")):
        pytest.skip("this machine refuses namespaces even to root (see `optforge doctor`)")
    os.environ["OPTFORGE_TEST_SECRET_TOKEN"] = "hidden"
    try:
        res = sandbox.run("x = 1\n", "optforge.sandbox.selftest:probe", {"write_probe": str(tmp_path / "x")}, sandbox.RULE_POLICY, L)
    finally:
        del os.environ["OPTFORGE_TEST_SECRET_TOKEN"]
    assert res.ok, res.exception
    for layer in ("process_group", "pid_namespace", "network", "filesystem", "rlimits", "no_secrets", "unprivileged"):
        assert res.layers[layer], layer
    v = res.value
    assert v["network_blocked"] and v["write_blocked"] and v["secrets_seen"] == []
    assert v["pid"] == 1 and v["uid"] != 0 and v["processes_visible"] <= 3
    assert not (tmp_path / "x").exists()


def test_payload_must_be_json():
    with pytest.raises(ValueError, match="JSON"):
        sandbox.run("x = 1\n", "sandbox_jobs:echo_job", {"x": object()}, sandbox.RULE_POLICY, L)
    with pytest.raises(ValueError, match="module.path:function"):
        sandbox.run("x = 1\n", "sandbox_jobs.echo_job", {}, sandbox.RULE_POLICY, L)


def test_policy_is_the_callers():
    """The same source passes or fails by the policy handed in, not by anything built in."""
    src = "import numpy\nX = numpy.zeros(3)\n"
    assert sandbox.run(src, "sandbox_jobs:echo_job", {}, sandbox.RULE_POLICY, L).reason == "rejected"
    numpy_policy = sandbox.Policy(name="numpy", allowed_imports=("numpy",), module_names=frozenset({"numpy.zeros"}))
    res = sandbox.run(src, "sandbox_jobs:echo_job", {"a": 1}, numpy_policy, L)
    assert res.ok and res.value["payload"] == {"a": 1}


def test_concurrent_threads(adamw_source):
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda s: sandbox.run(adamw_source, "sandbox_jobs:rule_job", {"seed": s}, sandbox.RULE_POLICY, L), range(6)))
    assert all(r.ok for r in results), [r.exception for r in results]
    assert len({r.value["norm"] for r in results}) == 6  # each got its own payload back
    uids = {r.uid for r in results}
    assert None in uids or len(uids) == 6


def _in_other_process(seed: int) -> tuple[str, float]:
    res = sandbox.run(seeds.source("adamw"), "sandbox_jobs:rule_job", {"seed": seed}, sandbox.RULE_POLICY, Limits(timeout_s=60))
    return res.reason, (res.value or {}).get("norm", 0.0)


@pytest.mark.slow  # each process starts its own warm template (an `import torch` each): ~20 s here
def test_concurrent_processes():
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        out = pool.map(_in_other_process, [0, 1, 2, 3])
    assert [r for r, _ in out] == ["ok"] * 4
    assert len({n for _, n in out}) == 4


@pytest.mark.slow  # a second template start (import torch + first optimizer): ~20 s on a busy box
def test_dead_template_is_replaced(adamw_source):
    from optforge.sandbox import transport

    first = sandbox.run(adamw_source, "sandbox_jobs:rule_job", {}, sandbox.RULE_POLICY, Limits(timeout_s=30, mode="warm"))
    assert first.ok and first.mode == "warm"
    pid = transport.TEMPLATE.pid
    os.kill(pid, 9)
    res = sandbox.run(adamw_source, "sandbox_jobs:rule_job", {}, sandbox.RULE_POLICY, Limits(timeout_s=30, mode="warm"))
    assert res.ok and res.mode == "warm" and transport.TEMPLATE.pid != pid


def test_limits_validation():
    with pytest.raises(ValueError, match="unknown layers"):
        Limits(require=("netwrk",))
    with pytest.raises(ValueError, match="unknown sandbox setting"):
        Limits.from_config({"timeout": 3})
    assert Limits.from_config({"require": ["network"], "timeout_s": 5}).require == ("network",)
    with pytest.raises(ValueError):
        Limits(timeout_s=0)


def test_job_module_under_tmp_is_importable(tmp_path, monkeypatch):
    """Import paths under /tmp stay visible through the private /tmp (bound back read-only in effect)."""
    name = f"tmpjob_{os.getpid()}_{id(tmp_path) % 10000}"
    (tmp_path / f"{name}.py").write_text("def job(source, payload):\n    return {'seen': payload['x'] * 2}\n")
    (tmp_path / "other.txt").write_text("x")
    monkeypatch.syspath_prepend(str(tmp_path))
    res = sandbox.run("x = 1\n", f"{name}:job", {"x": 21}, sandbox.RULE_POLICY, L)
    assert res.ok, (res.reason, res.exception, res.stderr_tail)
    assert res.value == {"seen": 42}


@pytest.mark.parametrize("claimed", ["ok", "worker_lost", "layer_unavailable", "timeout"])
def test_candidate_cannot_claim_infrastructure_reasons(claimed):
    res = sandbox.run("x = 1\n", "sandbox_jobs:forge_job", {"reason": claimed}, sandbox.RULE_POLICY, L)
    assert res.reason == "exception" and res.status is Status.CRASHED
    assert "forged" in res.exception


@pytest.mark.slow  # a second interpreter that imports torch: ~20 s on a busy box
def test_workdir_removed_when_caller_dies(tmp_path):
    """A caller killed mid-job leaves no job directory behind: the supervisor cleans up."""
    import glob
    import subprocess
    import sys
    import time

    script = tmp_path / "caller.py"
    script.write_text(
        "import sys\n"
        "sys.path.insert(0, %r)\n"
        "from optforge import sandbox\n"
        "from sandbox_helpers import redteam\n"
        "print('go', flush=True)\n"
        "sandbox.run(redteam('infinite_loop'), 'sandbox_jobs:rule_job', {}, sandbox.RULE_POLICY,"
        " sandbox.Limits(timeout_s=4, mode='cold'))\n" % os.path.dirname(__file__)
    )
    before = set(glob.glob("/tmp/optforge-job-*"))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"go"
    end = time.monotonic() + 120
    mine: set[str] = set()
    while time.monotonic() < end and not mine:
        time.sleep(0.2)
        mine = set(glob.glob("/tmp/optforge-job-*")) - before
    assert mine, "the job never started"
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    end = time.monotonic() + 30
    while time.monotonic() < end and any(os.path.exists(d) for d in mine):
        time.sleep(0.2)
    assert not any(os.path.exists(d) for d in mine)
