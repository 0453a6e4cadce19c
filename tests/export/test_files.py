"""optforge.files.write_text_atomic: the one way exports and baselines are written."""

from __future__ import annotations

import stat

import pytest

from optforge.files import write_text_atomic


def test_a_written_file_is_whole_readable_by_all_and_leaves_no_temp_file(tmp_path):
    out = tmp_path / "new" / "my_optimizer.py"
    write_text_atomic(out, "x = 1\n")
    assert out.read_text(encoding="utf-8") == "x = 1\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # mkstemp's 0600 would hide an export from others
    assert [p.name for p in out.parent.iterdir()] == ["my_optimizer.py"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp_file(tmp_path):
    out = tmp_path / "kept.py"
    out.write_text("old\n", encoding="utf-8")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(out, "bad \ud800\n")
    assert out.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.py"]
