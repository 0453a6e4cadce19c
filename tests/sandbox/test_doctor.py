"""`optforge doctor` runs the probe through the real sandbox and reports layers and mode."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest

from optforge import cli, sandbox


def test_doctor_json(capsys, monkeypatch, readable_home):
    if readable_home:  # a home the job's uid could list: only home_hidden keeps it out
        monkeypatch.setenv("HOME", readable_home)
    assert cli.main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] in ("warm", "cold")
    assert set(report["layers"]) == set(sandbox.LAYERS)
    assert report["layers"]["static_check"] and report["layers"]["no_secrets"]
    assert report["checks"]["secrets_hidden"]
    # a real evaluation through the path `optforge eval` takes (issue 13: the probe alone said "ok"
    # while every real job failed to import optforge)
    assert report["real_job"]["ok"] and report["real_job"]["status"] == "ok", report["real_job"]
    if os.geteuid() == 0 and report["layers"]["network"]:
        assert report["checks"]["network_blocked"] and report["checks"]["write_outside_blocked"]
    # each OS layer of issue 15 that is active here passes its own probe
    for layer, check in OS_LAYER_CHECKS.items():
        if report["layers"][layer]:
            assert report["checks"][check], (layer, check, report["probed"])


OS_LAYER_CHECKS = {"read_only_root": "world_writable_private", "run_hidden": "unix_sockets_hidden",
                   "home_hidden": "home_files_hidden",
                   "ipc_namespace": "ipc_isolated", "disk_quota": "disk_quota_holds"}


def test_doctor_probes_fail_without_the_os_layers(capsys, monkeypatch, readable_home):
    """The probes can fail: with the OS layers switched off, each check says so (where the host
    has something to probe: a world-writable directory outside /tmp, a socket under /run, a home
    the job's uid may list)."""
    monkeypatch.setenv("OPTFORGE_SANDBOX_DISABLE", ",".join(OS_LAYER_CHECKS))
    if readable_home:
        monkeypatch.setenv("HOME", readable_home)
    assert cli.main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert not any(report["layers"][layer] for layer in OS_LAYER_CHECKS)
    assert not report["checks"]["ipc_isolated"] and not report["checks"]["disk_quota_holds"]
    if any(not d.startswith(("/tmp", "/var/tmp", "/dev/shm")) for d in report["probed"]["world_writable"]):
        assert not report["checks"]["world_writable_private"]
    if report["probed"]["sockets"]:
        assert not report["checks"]["unix_sockets_hidden"]
    if readable_home:
        assert report["probed"]["home_entries"] == [os.path.join(readable_home, "notes.txt")], report["probed"]
        assert not report["checks"]["home_files_hidden"]


@pytest.fixture
def readable_home():
    """As root, a home any uid may list (0755, outside the private /tmp) holding one file, so the job's
    fresh uid sees it unless `home_hidden` covers it; None where none can be made."""
    if os.geteuid() != 0 or not os.path.isdir("/home"):
        yield None
        return
    home = tempfile.mkdtemp(prefix="optforge-doctor-home-", dir="/home")
    os.chmod(home, 0o755)
    with open(os.path.join(home, "notes.txt"), "w") as f:
        f.write("visible without home_hidden")
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_doctor_text_lists_every_layer(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "sandbox worker mode:" in out
    for layer in sandbox.LAYERS:
        assert layer in out
    assert "INACTIVE seccomp" in out  # not wired in: must say so, not pretend
    assert "real job (adamw on smoke, as `optforge eval` runs it): ok" in out
