"""What crosses the sandbox boundary: JSON lines between caller and supervisor, and the job's result
as a JSON file plus raw numeric buffers (dtype and shape in the JSON). Nothing is ever pickled: the
result is written by untrusted code, so the trusted side only parses JSON and copies bytes.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, BinaryIO

import numpy as np

RESULT_FILE = "result.json"
_DTYPES = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
     "float16", "float32", "float64", "complex64", "complex128"}
)


class ProtocolError(Exception):
    """The worker wrote something that is not a well-formed result."""


def send(stream: BinaryIO, message: dict[str, Any]) -> None:
    stream.write(json.dumps(message, allow_nan=True).encode("utf-8") + b"\n")
    stream.flush()


def decode_line(line: bytes) -> dict[str, Any]:
    try:
        msg = json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(f"malformed message from the worker: {e}") from e
    if not isinstance(msg, dict):
        raise ProtocolError("malformed message from the worker: not a JSON object")
    return msg


# ---------------------------------------------------------------------------------------------
# inside the worker


def _as_array(name: str, arr: Any) -> np.ndarray:
    if type(arr).__module__.startswith("torch"):
        t = arr.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        arr = t.numpy()
    if not isinstance(arr, np.ndarray) or arr.dtype.name not in _DTYPES:
        raise TypeError(f"buffer '{name}' must be a numeric numpy array, got {type(arr).__name__}")
    return np.ascontiguousarray(arr)


def write_result(workdir: str, value: Any, buffers: dict[str, Any] | None) -> None:
    """Write a job's return value (JSON-able) and buffers. Raises TypeError/ValueError if not JSON-able."""
    entries = []
    for i, (name, arr) in enumerate((buffers or {}).items()):
        a = _as_array(str(name), arr)
        fname = f"buf_{i}.bin"
        with open(os.path.join(workdir, fname), "wb") as f:
            f.write(a.tobytes())
        entries.append({"name": str(name), "dtype": a.dtype.name, "shape": list(a.shape), "file": fname})
    text = json.dumps({"value": value, "buffers": entries}, allow_nan=True)
    with open(os.path.join(workdir, RESULT_FILE), "w", encoding="utf-8") as f:
        f.write(text)


def write_error(workdir: str, error: dict[str, Any]) -> None:
    with open(os.path.join(workdir, RESULT_FILE), "w", encoding="utf-8") as f:
        f.write(json.dumps({"error": error}, default=str))


# ---------------------------------------------------------------------------------------------
# in the trusted caller


def _read_bounded(workdir: str, fname: str, limit: int) -> bytes:
    if "/" in fname or fname.startswith("."):
        raise ProtocolError(f"result names a file outside its directory: {fname!r}")
    fd = os.open(os.path.join(workdir, fname), os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not os.path.stat.S_ISREG(st.st_mode):
            raise ProtocolError(f"result file {fname} is not a regular file")
        if st.st_size > limit:
            raise ProtocolError(f"result file {fname} is {st.st_size} bytes, over the {limit}-byte output limit")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit + 1)
    finally:
        os.close(fd)


def read_result(workdir: str, max_bytes: int) -> dict[str, Any] | None:
    """The parsed result: {"value", "buffers"} or {"error"}; None when the worker wrote none."""
    if not os.path.lexists(os.path.join(workdir, RESULT_FILE)):
        return None
    raw = _read_bounded(workdir, RESULT_FILE, max_bytes)
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(f"result.json is not valid JSON: {e}") from e
    if not isinstance(doc, dict) or not ({"value", "error"} & set(doc)):
        raise ProtocolError("result.json must be an object with 'value' or 'error'")
    if "error" in doc:
        if not isinstance(doc["error"], dict):
            raise ProtocolError("result.json 'error' must be an object")
        return {"error": doc["error"]}
    buffers: dict[str, np.ndarray] = {}
    budget = max_bytes - len(raw)
    for e in doc.get("buffers") or []:
        try:
            name, dtype, shape, fname = str(e["name"]), str(e["dtype"]), [int(s) for s in e["shape"]], str(e["file"])
        except (KeyError, TypeError, ValueError) as err:
            raise ProtocolError(f"malformed buffer entry {e!r}: {err}") from err
        if dtype not in _DTYPES or any(s < 0 for s in shape):
            raise ProtocolError(f"buffer '{name}' has a bad dtype or shape: {dtype} {shape}")
        data = _read_bounded(workdir, fname, budget)
        budget -= len(data)
        want = math.prod(shape) * np.dtype(dtype).itemsize
        if len(data) != want:
            raise ProtocolError(f"buffer '{name}' holds {len(data)} bytes, its dtype and shape need {want}")
        buffers[name] = np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    return {"value": doc["value"], "buffers": buffers}
