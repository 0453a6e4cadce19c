"""Forged job output is `crashed` / `bad_output`, never a hang, a traceback or gigabytes in the caller.

The result directory is writable by the candidate, so everything in it is hostile: a FIFO named
result.json, deep or huge JSON, non-finite numbers, wrong types. Stated bound: interpreting any result
grows the trusted process's peak memory by less than MEMORY_BOUND_MB (16x the JSON cap).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from optforge.sandbox.protocol import MAX_JSON_BYTES, ProtocolError, read_result, write_result

HERE = Path(__file__).resolve().parent
MEMORY_BOUND_MB = 16 * MAX_JSON_BYTES / 2**20

BUF = '{"name": "w", "dtype": "float32", "shape": %s, "file": "b"}'
FORGED = {
    "deep_lists": '{"value": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "deep_objects": '{"value": ' + '{"a": ' * 2000 + "1" + "}" * 2000 + "}",
    "just_too_deep": '{"value": ' + "[" * 40 + "]" * 40 + "}",
    "infinity_in_int_field": '{"value": {}, "buffers": [' + BUF % "[Infinity]" + "]}",
    "nan_value": '{"value": {"loss": NaN}}',
    "overflowing_float": '{"value": {"loss": 1e999}}',
    "huge_int": '{"value": {"state_bytes": 1' + "0" * 40 + "}}",
    "infinity_line": '{"error": {"reason": "exception", "line": Infinity}}',
    "float_shape": '{"value": {}, "buffers": [' + BUF % "[2.5]" + "]}",
    "bool_shape": '{"value": {}, "buffers": [' + BUF % "[true]" + "]}",
    "string_shape": '{"value": {}, "buffers": [' + BUF % '"abc"' + "]}",
    "list_for_error": '{"error": ["exception"]}',
    "list_for_document": '[{"value": 1}]',
    "dict_for_buffers": '{"value": 1, "buffers": {"name": "w"}}',
    "int_for_buffers": '{"value": 1, "buffers": 5}',
    "list_for_buffer_entry": '{"value": 1, "buffers": [["w", "float32", [1], "b"]]}',
    "list_for_message": '{"error": {"message": ["x"]}}',
    "int_for_reason": '{"error": {"reason": 7}}',
    "value_and_error": '{"value": 1, "error": {}}',
    "huge_buffer_claim": '{"value": {}, "buffers": [' + BUF % "[1000000000000]" + "]}",
    "not_utf8": b'{"value": "\xff\xfe"}',
    "truncated": '{"value": [1, 2',
}


def _forge(tmp_path: Path, content: str | bytes) -> None:
    data = content.encode() if isinstance(content, str) else content
    (tmp_path / "result.json").write_bytes(data)
    (tmp_path / "b").write_bytes(b"\0" * 8)


@pytest.mark.parametrize("kind", sorted(FORGED))
def test_forged_result_is_a_protocol_error(kind, tmp_path):
    _forge(tmp_path, FORGED[kind])
    with pytest.raises(ProtocolError):
        read_result(str(tmp_path), 1 << 30)


def test_40mb_of_empty_lists_is_refused_unread(tmp_path):
    with open(tmp_path / "result.json", "w") as f:
        f.write('{"value": [[]' + ",[]" * (40 * 1024 * 1024 // 3) + "]}")
    with pytest.raises(ProtocolError, match="cap of its JSON part"):
        read_result(str(tmp_path), 1 << 30)
    # at the cap itself, the count of lists is refused before any is built
    _forge(tmp_path, '{"value": [[]' + ",[]" * ((MAX_JSON_BYTES - 20) // 3) + "]}")
    with pytest.raises(ProtocolError, match="lists and objects"):
        read_result(str(tmp_path), 1 << 30)


@pytest.mark.timeout(60)
def test_fifo_named_result_json_does_not_block(tmp_path):
    os.mkfifo(tmp_path / "result.json")
    with pytest.raises(ProtocolError, match="not a regular file"):
        read_result(str(tmp_path), 1 << 20)


@pytest.mark.timeout(60)
def test_fifo_named_as_a_buffer_does_not_block(tmp_path):
    write_result(str(tmp_path), {}, {"w": np.zeros(2, dtype=np.float32)})
    os.remove(tmp_path / "buf_0.bin")
    os.mkfifo(tmp_path / "buf_0.bin")
    with pytest.raises(ProtocolError, match="not a regular file"):
        read_result(str(tmp_path), 1 << 20)


def test_strings_come_back_cleaned(tmp_path):
    doc = {"value": {"name\x1b[2J": "a\x00b\ud800c\td"}}
    (tmp_path / "result.json").write_text(json.dumps(doc))
    assert read_result(str(tmp_path), 1 << 20)["value"] == {"name[2J": "abc\td"}
    (tmp_path / "result.json").write_text(json.dumps({"error": {"message": "m" * 100_000, "line_text": "\x1b]0;x\x07"}}))
    err = read_result(str(tmp_path), 1 << 20)["error"]
    assert len(err["message"]) == 4000 and err["line_text"] == "]0;x"


def test_memory_of_the_trusted_reader_is_bounded(tmp_path):
    """Largest accepted and refused results at the caps, read in a fresh interpreter: its peak RSS
    (getrusage) grows by less than MEMORY_BOUND_MB over the baseline after imports."""
    n = MAX_JSON_BYTES - 64
    cases = {
        "zeros": '{"value": [0' + ",0" * (n // 2 - 8) + "]}",
        "floats": '{"value": [0.5' + ",0.5" * (n // 4 - 8) + "]}",
        "strings": '{"value": ["a"' + ',"a"' * (n // 4 - 8) + "]}",
        "empty_lists": '{"value": [[]' + ",[]" * (n // 3 - 8) + "]}",
        "lists_at_count_cap": '{"value": [[]' + ",[]" * 99_990 + "]}",
    }
    for name, text in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(text)
    script = textwrap.dedent(
        f"""
        import json, resource
        from optforge.sandbox.protocol import ProtocolError, read_result
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = {{}}
        for name in {sorted(cases)!r}:
            try:
                doc = read_result({str(tmp_path)!r} + "/" + name, 1 << 30)
                out[name] = "ok"
                del doc
            except ProtocolError as e:
                out[name] = "refused"
        out["growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
        print(json.dumps(out))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["zeros"] == got["floats"] == got["strings"] == got["lists_at_count_cap"] == "ok"
    assert got["empty_lists"] == "refused"
    assert got["growth_mb"] < MEMORY_BOUND_MB, got


def test_forged_output_through_the_sandbox(tmp_path):
    """The real sandbox, a job forging each of the issue's outputs: `crashed` / `bad_output` each
    (not `timeout`: the reader never waits), and the caller's peak memory stays within the bound."""
    script = textwrap.dedent(
        f"""
        import json, resource, sys
        sys.path.insert(0, {str(HERE)!r})
        from forged_jobs import KINDS
        from optforge import sandbox
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = {{}}
        for kind in KINDS:
            res = sandbox.run("x = 1\\n", "forged_jobs:forge", {{"kind": kind}}, sandbox.RULE_POLICY,
                              sandbox.Limits(timeout_s=30))
            out[kind] = [res.status.value, res.reason, res.exception]
        out["growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
        print(json.dumps(out))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    growth = got.pop("growth_mb")
    for kind, (status, reason, exception) in got.items():
        assert (status, reason) == ("crashed", "bad_output"), (kind, exception)
        assert "Traceback" not in (exception or "")
    assert growth < MEMORY_BOUND_MB, growth
