"""The job imports optforge (and any package) however it was installed: the caller's import
locations, an editable install's hook-resolved package included, are bound read-only into the job,
also when they lie in a private /tmp directory or under a 0700 directory (a clone in /root)."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from optforge import sandbox
from optforge.sandbox.layers import import_locations


class _EditableFinder:
    """What `pip install -e` installs: a meta-path hook mapping a package name to its directory."""

    def __init__(self, name: str, parent: str) -> None:
        self.name, self.parent = name, parent

    def find_spec(self, fullname, path=None, target=None):
        return importlib.machinery.PathFinder.find_spec(fullname, [self.parent]) if fullname == self.name else None


def _hidden_base(where: str) -> str:
    """A new 0700 directory: in /tmp (private in the job) or in the home directory (0700 as root)."""
    if where == "private_tmp":
        return tempfile.mkdtemp(prefix="optforge-hidden-", dir="/tmp")
    home = Path.home()
    if str(home.resolve()).startswith(("/tmp/", "/var/tmp/")) or not os.access(home, os.W_OK):
        pytest.skip(f"the home directory {home} is not a place outside the job's private tmpfs")
    return tempfile.mkdtemp(prefix=".optforge-hidden-", dir=home)


@pytest.fixture
def hooked_package(request):
    """(name, parent): a package importable here only through an editable-style hook, in a hidden place."""
    base = _hidden_base(request.param)
    name = f"hidden_pkg_{uuid.uuid4().hex[:8]}"
    parent = os.path.join(base, "src")
    os.makedirs(os.path.join(parent, name))
    Path(parent, name, "__init__.py").write_text("VALUE = 42\n")
    finder = _EditableFinder(name, parent)
    sys.meta_path.insert(0, finder)
    try:
        importlib.import_module(name)
        yield name, parent
    finally:
        sys.meta_path.remove(finder)
        sys.modules.pop(name, None)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("hooked_package", ["private_tmp", "private_home"], indirect=True)
def test_import_locations_include_a_hook_resolved_package(hooked_package):
    name, parent = hooked_package
    assert not any(os.path.realpath(p or ".") == os.path.realpath(parent) for p in sys.path)
    assert os.path.realpath(os.path.join(parent, name)) in import_locations()


@pytest.mark.parametrize(("hooked_package", "mode"), [("private_tmp", "warm"), ("private_home", "warm"),
                                                      ("private_home", "cold")], indirect=["hooked_package"])
def test_job_imports_a_hook_resolved_package_from_a_hidden_place(hooked_package, mode):
    name, parent = hooked_package
    res = sandbox.run("x = 1\n", "sandbox_jobs:hooked_import_job", {"package": name, "parent": parent},
                      sandbox.RULE_POLICY, sandbox.Limits(timeout_s=60, mode=mode))
    assert res.ok, (res.reason, res.exception, res.stderr_tail[-2000:])
    assert res.value["value"] == 42 and res.value["file"].startswith(os.path.realpath(parent))
    if res.layers["filesystem"]:
        assert res.value["write"] == "EROFS"  # bound read-only, whoever the job runs as
    assert not os.path.exists(os.path.join(parent, name, "written-by-the-job"))
