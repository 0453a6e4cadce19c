"""The result files: only well-formed JSON and raw buffers of numeric dtypes come back, within size."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from optforge.sandbox.protocol import ProtocolError, read_result, write_error, write_result


def test_roundtrip(tmp_path):
    write_result(str(tmp_path), {"a": [1, 2.5, None], "s": "x"}, {"w": np.eye(3, dtype=np.float64), "i": np.arange(4, dtype=np.int64)})
    doc = read_result(str(tmp_path), 1 << 20)
    assert doc["value"]["a"] == [1, 2.5, None]
    np.testing.assert_array_equal(doc["buffers"]["w"], np.eye(3))
    assert doc["buffers"]["i"].dtype == np.int64


def test_torch_tensors_become_arrays(tmp_path):
    import torch

    write_result(str(tmp_path), {}, {"t": torch.ones(2, 2, dtype=torch.bfloat16)})
    doc = read_result(str(tmp_path), 1 << 20)
    assert doc["buffers"]["t"].dtype == np.float32 and doc["buffers"]["t"].sum() == 4


def test_non_finite_values_refused_by_the_writer(tmp_path):
    with pytest.raises(ValueError):
        write_result(str(tmp_path), {"loss": float("nan")}, {})


def test_object_arrays_refused(tmp_path):
    with pytest.raises(TypeError):
        write_result(str(tmp_path), {}, {"o": np.array([object()])})


def test_missing_result_is_none(tmp_path):
    assert read_result(str(tmp_path), 100) is None


def test_error_record(tmp_path):
    write_error(str(tmp_path), {"reason": "exception", "message": "x"})
    assert read_result(str(tmp_path), 1000) == {"error": {"reason": "exception", "message": "x"}}


def _forge(tmp_path, doc, files=None):
    (tmp_path / "result.json").write_text(json.dumps(doc))
    for name, data in (files or {}).items():
        (tmp_path / name).write_bytes(data)


@pytest.mark.parametrize(
    "doc,files,needle",
    [
        ({"value": 1, "buffers": [{"name": "a", "dtype": "object", "shape": [1], "file": "b"}]}, {"b": b"x" * 8}, "dtype"),
        ({"value": 1, "buffers": [{"name": "a", "dtype": "float32", "shape": [3], "file": "b"}]}, {"b": b"x" * 8}, "holds 8 bytes"),
        ({"value": 1, "buffers": [{"name": "a", "dtype": "float32", "shape": [1], "file": "../../etc/passwd"}]}, {}, "outside"),
        ({"value": 1, "buffers": [{"name": "a"}]}, {}, "malformed"),
        ({"other": 1}, {}, "'value' or 'error'"),
    ],
)
def test_forged_results_refused(tmp_path, doc, files, needle):
    _forge(tmp_path, doc, files)
    with pytest.raises(ProtocolError, match=needle):
        read_result(str(tmp_path), 1 << 20)


def test_symlinked_result_refused(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"value": "host file"}')
    os.symlink(secret, tmp_path / "result.json")
    with pytest.raises(ProtocolError, match="could not be opened"):
        read_result(str(tmp_path), 1 << 20)


def test_oversized_result_refused(tmp_path):
    write_result(str(tmp_path), {"x": "y" * 5000}, {})
    with pytest.raises(ProtocolError, match="output limit"):
        read_result(str(tmp_path), 1000)


def test_not_json_refused(tmp_path):
    (tmp_path / "result.json").write_bytes(b"\x80garbage")
    with pytest.raises(ProtocolError):
        read_result(str(tmp_path), 1000)
