"""`optforge export`: its --help as a user reads it in an 80-column terminal; the class a seed exports as."""

import os
import shlex
import subprocess
import sys

from optforge import seeds
from optforge.cli import build_parser
from optforge.commands.export import seed_class_name
from optforge.export import class_name_ok


def _help(tmp_path):
    env = {**os.environ, "COLUMNS": "80"}
    proc = subprocess.run([sys.executable, "-m", "optforge", "export", "--help"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_help_gives_each_usage_form_on_its_own_line(tmp_path):
    lines = _help(tmp_path)
    assert lines[0] == "usage: optforge export RUN_DIR [CANDIDATE_ID | --best] -o FILE [--name CLASS]"
    assert lines[1] == "       optforge export SEED_NAME | RULE_FILE -o FILE [--name CLASS]"
    assert not [ln for ln in lines if "RUN_DIR" in ln and "SEED_NAME" in ln]  # no two forms run together
    assert max(map(len, lines)) <= 80


def test_help_examples_are_commands_that_parse(tmp_path):
    lines = _help(tmp_path)
    examples = [ln.split("#")[0].strip() for ln in lines[lines.index("examples:") + 1:] if ln.strip()]
    assert len(examples) == 4
    for example in examples:
        args = build_parser().parse_args(shlex.split(example)[1:])
        assert args.command == "export" and args.output.endswith(".py")


def test_a_seed_exports_under_the_name_the_field_gives_it(tmp_path):
    """`optforge export adamw` writes class AdamW (it was Adamw), and every seed's default is a usable
    class name of its own."""
    names = {n: seed_class_name(seeds.source(n), n) for n in seeds.names()}
    assert names["adamw"] == "AdamW" and names["sgd"] == "SGD" and names["schedule_free_adamw"] == "ScheduleFreeAdamW"
    assert all(class_name_ok(c) for c in names.values()), names
    assert len(set(names.values())) == len(names), names
    out = tmp_path / "adamw_opt.py"
    proc = subprocess.run([sys.executable, "-m", "optforge", "export", "adamw", "-o", str(out)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "\nclass AdamW(" in out.read_text()
