"""`optforge report`: a self-contained page whose plots exist and are non-empty, that loads in a real
headless Chromium with no console errors."""

import base64
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from optforge.cli import main
from optforge.config import config_from_dict
from optforge.funnel import funnel_counts
from optforge.report import best_so_far, build_report, lineage
from optforge.store import Store


def _images(page):
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_report_plots_exist_and_are_nonempty(run_dir):
    path, c = run_dir
    page = build_report(path)
    imgs = _images(page)
    assert len(imgs) == 4  # progress, funnel, heatmap, curves
    for png in imgs:
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert f"Best candidate {c['c'].id}" in page
    assert "http://" not in page and "https://" not in page  # nothing is fetched at view time
    assert page.count('class="add"') >= 2  # lineage diffs


def test_report_numbers(run_dir):
    path, c = run_dir
    with Store.open(path) as store:
        xs, ts, ys = best_so_far(store)
        assert ys == [-0.5, 0.2, 0.6]  # the reference is not a search result
        counts = funnel_counts(store, config_from_dict(store.config()))
        assert counts == {"proposed": 4, "smoke": 3, "train": 3, "train_fresh_seeds": 0, "heldout": 1, "promoted": 1}
        assert [x.id for x in lineage(store, c["c"].id)] == [c["c"].id, c["b"].id, c["a"].id]


def test_report_cli(run_dir, tmp_path, capsys):
    path, _ = run_dir
    assert main(["report", str(path), "-o", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").stat().st_size > 20000
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wd(port, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["value"]


@pytest.mark.chromium
def test_report_loads_in_headless_chromium_without_console_errors(run_dir, tmp_path):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    path, _ = run_dir
    out = tmp_path / "report.html"
    out.write_text(build_report(path))
    port = _free_port()
    proc = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                _wd(port, "GET", "/status")
                break
            except OSError:
                time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": chromium, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]},
        }}}
        sid = _wd(port, "POST", "/session", caps)["sessionId"]
        try:
            _wd(port, "POST", f"/session/{sid}/url", {"url": out.as_uri()})
            loaded = _wd(port, "POST", f"/session/{sid}/execute/sync", {
                "script": "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)", "args": []})
            assert loaded == [True] * 4
            logs = _wd(port, "POST", f"/session/{sid}/se/log", {"type": "browser"})
            errors = [e for e in logs if e.get("level") == "SEVERE"]
            assert not errors, errors
        finally:
            _wd(port, "DELETE", f"/session/{sid}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("drop, chosen", [(0.01, "simple"), (0.5, "parent")])
def test_best_prefers_a_simplified_child_within_tolerance(run_dir, drop, chosen):
    from optforge.export import choose_best
    from optforge.types import Candidate, EvaluationResult, Status

    path, c = run_dir
    parent = c["c"]
    child = Candidate.new(parent.source.replace("g.sign()", "g.sign() * 1.0"), parents=[parent.id],
                          strategy="symbolic", note={"mutation": "simplify", "simplifies": parent.id, "tolerance": 0.05})
    with Store(path) as store:
        # not promoted itself: the simplified form of the promoted best stands in for it
        assert choose_best(store) == parent.id
        store.add_proposals([child], None)
        store.add_evaluation(child, EvaluationResult(Status.OK, stage="train", suite="train", suite_version="1",
                                                     metrics={"fitness": 0.6 - drop}), seeds_spec="selection")
        assert choose_best(store) == (child.id if chosen == "simple" else parent.id)
