"""`optforge report`: a self-contained page whose plots exist and are non-empty, that loads in a real
headless Chromium with no console errors."""

import base64
import html
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
from optforge.commands.show import final_search_results
from optforge.report import best_so_far, build_report, lineage
from optforge.report_plots import best_so_far_of, timeline
from optforge.store import Store


def _images(page):
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def _section(page, title):
    """The HTML between the <h2> that starts with `title` and the next <h2>."""
    start = page.index(f"<h2>{title}")
    end = page.find("<h2>", start + 4)
    return page[start: end if end != -1 else len(page)]


def test_report_plots_exist_and_are_nonempty(run_dir):
    path, c = run_dir
    page = build_report(path)
    imgs = _images(page)
    assert len(imgs) == 4  # every candidate over time, funnel, heatmap, curves
    for png in imgs:
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert 'alt="Every candidate over time"' in page and 'alt="Per-task scores: top candidates and references"' in page
    assert "http://" not in page and "https://" not in page  # nothing is fetched at view time


def test_report_header_is_readable_and_names_the_score_version(run_dir):
    path, c = run_dir
    page = build_report(path)
    header = page[page.index("<body>"): page.index("<h2>")]
    assert "{" not in header and "}" not in header  # no raw Python dicts
    assert "<dt>score version</dt><dd>2</dd>" in header
    assert "<dt>evaluations by status</dt><dd>crashed 1, invalid 1, ok 10</dd>" in header
    assert "smoke 4 &rarr; train 3" in header
    assert f"<code>{c['c'].id}</code> constant x2^0.7: fitness +0.60 ± 0.04 at train; held-out +0.30" in header


def test_report_heatmap_rows_are_named(run_dir):
    from optforge.report import reference_rows
    from optforge.report_sections import label

    path, c = run_dir
    with Store.open(path) as store:
        refs = reference_rows(store, "train")
    # the warm start at train, the funnel's reference where it was scored (train_fresh_seeds)
    assert [(label(cand), ev.stage) for cand, ev in refs] == [("adamw (warm start)", "train"),
                                                              ("adamw (reference)", "train_fresh_seeds")]
    assert label(c["b"]) == f"{c['b'].id[:8]} insert sign"


def test_report_per_task_table_has_losses_lrs_and_intervals(run_dir):
    path, c = run_dir
    table = _section(build_report(path), "Per task")
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    assert len(rows) == 1 + 3 * 3  # header, then (best, warm start, reference) per task
    assert '<th rowspan="3" class="task">bytelm</th>' in table
    # best candidate on quad: score 0.7 with hw 0.05, best loss 0.1 + 0.7 * 0.1, AdamW 0.2, lr 1e-3
    quad = next(r for r in rows if ">quad<" in r)
    assert f"{c['c'].id[:8]} constant x2^0.7" in quad
    assert re.findall(r'<td class="num">([^<]*)</td>', quad) == ["+0.70 ± 0.05", "0.17", "0.2", "0.001"]
    assert "adamw (reference) <small>(train_fresh_seeds)</small>" in table
    assert "+0.00 ± 0.04" in table  # the reference's mean with its interval


def test_report_failures_by_status_with_reasons(run_dir):
    path, c = run_dir
    failures = _section(build_report(path), "Failures by status")
    assert '<h3 class="status-crashed">crashed (1)</h3>' in failures
    assert "<b>train</b> &times;1: <code>RuntimeError: &lt;shape&gt; mismatch</code>" in failures  # escaped
    assert '<h3 class="status-invalid">invalid (1)</h3>' in failures and "missing init" in failures
    assert c["bad"].id[:8] in failures


def test_report_config_is_yaml(run_dir):
    import yaml

    path, _ = run_dir
    config = _section(build_report(path), "Run config")
    text = html.unescape(re.search(r'<pre class="config">(.*?)</pre>', config, re.S).group(1))
    assert yaml.safe_load(text)["budget"] == {"max_candidates": 12}
    assert "budget:\n  max_candidates: 12" in text


def test_report_source_shows_the_program_first_and_folds_the_helpers(run_dir):
    path, c = run_dir
    source = _section(build_report(path), "Source of the best candidate")
    program = html.unescape(re.search(r'<pre class="program">(.*?)</pre>', source, re.S).group(1))
    assert program.splitlines()[0] == "LR = 0.0003"
    assert "def update(p, g, state, ctx):" in program and "    u = sign(m)" in program
    assert "def interp(" not in program and "import torch" not in program
    helpers = html.unescape(re.search(r'<details><summary>[^<]*</summary><pre class="helpers">(.*?)</pre></details>',
                                      source, re.S).group(1))
    assert "def interp(" in helpers and "def sign(" in helpers and "LR =" not in helpers
    # nothing is lost: program and helpers hold every line of the source
    assert sorted((program + "\n" + helpers).split()) == sorted(c["c"].source.split())
    # the evaluator's task-detection flags for the best candidate
    flagged = c["c"].source.splitlines().index("    t = _s(ctx.t)") + 1
    assert f"line {flagged}: compares ctx.t with 100 <code>t = _s(ctx.t)</code>" in source


def test_task_detection_is_computed_when_not_recorded():
    from optforge.report_sections import source_html, task_detection_html
    from optforge.types import Candidate

    src = ("def init(p, ctx):\n    return {}\n\n\ndef update(p, g, state, ctx):\n"
           "    if ctx.T == 5:\n        return g * 0\n    return -ctx.lr * g\n")
    cand = Candidate.new(src, strategy="evolve")
    out = task_detection_html(cand, None)
    assert "line 6" in out and "<code>if ctx.T == 5:</code>" in out
    assert "<details>" not in source_html(cand)  # an LLM's rule is all program


def test_report_lineage_has_fitness_and_program_diffs(run_dir):
    path, c = run_dir
    section = _section(build_report(path), "Lineage")
    heads = re.findall(r"<h3>(.*?)</h3>", section)
    assert [h.split("</code>")[0] for h in heads] == [f"<code>{c[k].id}" for k in ("c", "b", "a")]
    assert "fitness +0.60 ± 0.04 at train" in heads[0] and "fitness -0.50 ± 0.04 at train" in heads[2]
    diffs = re.findall(r'<pre class="diff">(.*?)</pre>', section, re.S)
    assert len(diffs) == 2
    assert '<span class="del">-LR = 0.001</span>' in diffs[0] and '<span class="add">+LR = 0.0003</span>' in diffs[0]
    assert '<span class="add">+    u = sign(m)</span>' in diffs[1]
    assert all("def _c(" not in d and "import torch" not in d for d in diffs)  # the program only
    assert "library functions: +sign" in section


def test_report_numbers(run_dir):
    path, c = run_dir
    with Store.open(path) as store:
        config = config_from_dict(store.config())
        xs, ts, ys = best_so_far(store)
        assert ys == [-0.5, 0.2, 0.6]  # the reference is not a search result
        assert funnel_counts(store, config) == {"proposed": 5, "smoke": 4, "train": 3}
        assert [x.id for x in lineage(store, c["c"].id)] == [c["c"].id, c["b"].id, c["a"].id]
        points = timeline(final_search_results(store, config))
        assert [(p.candidate_id, p.status) for p in points] == [
            (c["a"].id, "ok"), (c["b"].id, "ok"), (c["c"].id, "ok"), (c["bad"].id, "invalid"), (c["boom"].id, "crashed")]
        assert [b[2] for b in best_so_far_of(points, "train")] == [-0.5, 0.2, 0.6]


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
            # the program is on screen above the helpers, which stay folded until opened
            shown = _wd(port, "POST", f"/session/{sid}/execute/sync", {"script": """
                const prog = document.querySelector('pre.program'), helpers = document.querySelector('pre.helpers');
                const before = helpers.checkVisibility();
                document.querySelector('details').open = true;
                return [prog.checkVisibility(), before, helpers.checkVisibility(),
                        prog.getBoundingClientRect().top < helpers.getBoundingClientRect().top];""", "args": []})
            assert shown == [True, False, True, True]
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


@pytest.mark.slow  # a real symbolic run on train_quick: 4 candidates, the funnel's fresh seeds and its reference
def test_report_of_a_real_run(tmp_path):
    import yaml

    cfg = {"strategy": {"name": "symbolic", "warm_start": ["adamw"], "population": 4, "tournament": 2,
                        "state_slots": 3, "phase_evaluations": 4, "restarts": 1, "best_restarts": 0,
                        "simplify_evaluations": 0},
           "suite": "train_quick", "stages": ["smoke", "train", "train_fresh_seeds"], "funnel": {"top_k": 1},
           "slots": 2, "deterministic": True, "seed": 0, "budget": {"max_candidates": 4},
           "sandbox": {"timeout_s": 120}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    run = subprocess.run(["optforge", "run", "run.yaml", "--out", "run", "--quiet"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stderr[-3000:]
    done = subprocess.run(["optforge", "report", "run", "-o", "report.html"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    page = (tmp_path / "report.html").read_text()
    assert len(_images(page)) == 4
    header = page[page.index("<body>"): page.index("<h2>")]
    assert "{" not in header and "<dt>score version</dt><dd>2</dd>" in header
    table = _section(page, "Per task")
    with Store.open(tmp_path / "run") as store:
        tasks = sorted(next(iter(store.evaluations(stage="train"))).metrics["tasks"])
    for task in tasks:
        assert f'class="task">{task}</th>' in table
    assert "adamw (warm start)" in table and "adamw (reference) <small>(train_fresh_seeds)</small>" in table
    assert re.search(r'<td class="num">[+-]\d\.\d\d ± \d\.\d\d</td>', table)
    source = _section(page, "Source of the best candidate")
    assert re.search(r'<pre class="program">LR = ', source) and "<details><summary>module header" in source
    assert "task detection:" in source
    assert "<h2>Lineage of the best candidate</h2><h3><code>" in page
    assert "Failures by status" in page
    config = html.unescape(re.search(r'<pre class="config">(.*?)</pre>', page, re.S).group(1))
    assert yaml.safe_load(config)["suite"] == "train_quick"
