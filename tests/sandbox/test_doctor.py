"""`optforge doctor` runs the probe through the real sandbox and reports layers and mode."""

from __future__ import annotations

import json
import os

from optforge import cli, sandbox


def test_doctor_json(capsys):
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


def test_doctor_text_lists_every_layer(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "sandbox worker mode:" in out
    for layer in sandbox.LAYERS:
        assert layer in out
    assert "INACTIVE seccomp" in out  # not wired in: must say so, not pretend
    assert "real job (adamw on smoke, as `optforge eval` runs it): ok" in out
