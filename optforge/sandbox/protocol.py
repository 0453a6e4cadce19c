"""What crosses the sandbox boundary: JSON lines between caller and supervisor, and the job's result
as a JSON file plus raw numeric buffers (dtype and shape in the JSON). Nothing is ever pickled: the
result is written by untrusted code, so the trusted side only parses JSON and copies bytes.
"""

from __future__ import annotations

import json
import math
import os
import stat
from typing import Any, BinaryIO

import numpy as np

from optforge.types import clean_text

RESULT_FILE = "result.json"
MAX_JSON_BYTES = 4 * 1024 * 1024
"""Cap of result.json itself (the buffers have `Limits.max_output_bytes`). A job's value is a few
hundred KiB at most (the training job: per run, eval steps, parameter names and shapes)."""
MAX_CONTAINERS = 100_000  # lists and objects in result.json
MAX_DEPTH = 32  # nesting levels in result.json
MAX_INT = 2**63 - 1  # integers in result.json (int64)
_ERROR_TEXT = {"reason": 100, "type": 200, "message": 4000, "line_text": 500, "traceback": 8000}
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
    """Write a job's return value (JSON-able, finite numbers only: the reader refuses NaN and
    infinities) and buffers. Raises TypeError/ValueError if not JSON-able."""
    entries = []
    for i, (name, arr) in enumerate((buffers or {}).items()):
        a = _as_array(str(name), arr)
        fname = f"buf_{i}.bin"
        with open(os.path.join(workdir, fname), "wb") as f:
            f.write(a.tobytes())
        entries.append({"name": str(name), "dtype": a.dtype.name, "shape": list(a.shape), "file": fname})
    text = json.dumps({"value": value, "buffers": entries}, allow_nan=False)
    with open(os.path.join(workdir, RESULT_FILE), "w", encoding="utf-8") as f:
        f.write(text)


def write_error(workdir: str, error: dict[str, Any]) -> None:
    with open(os.path.join(workdir, RESULT_FILE), "w", encoding="utf-8") as f:
        f.write(json.dumps({"error": error}, default=str))


# ---------------------------------------------------------------------------------------------
# in the trusted caller: every byte below was written where the candidate could write too


def _read_bounded(workdir: str, fname: str, limit: int, cap: str = "output limit") -> bytes:
    """The bytes of a regular file in `workdir`, at most `limit` of them.

    Opened without following a symlink and without blocking (a FIFO named like the file would
    otherwise hang the caller forever), then refused unless fstat says it is a regular file.
    """
    if not fname or "/" in fname or fname.startswith(".") or "\0" in fname:
        raise ProtocolError(f"result names a file outside its directory: {fname[:80]!r}")
    try:
        fd = os.open(os.path.join(workdir, fname), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise ProtocolError(f"result file {fname} could not be opened: {e.strerror or e}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ProtocolError(f"result file {fname} is not a regular file")
        if st.st_size > limit:
            raise ProtocolError(f"result file {fname} is {st.st_size} bytes, over the {limit}-byte {cap}")
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise ProtocolError(f"result file {fname} grew past the {limit}-byte {cap} while it was read")
        return data
    finally:
        os.close(fd)


def _no_constant(name: str) -> Any:
    raise ProtocolError(f"result.json holds {name}; only finite numbers are allowed")


def parse_json(raw: bytes) -> Any:
    """Parse untrusted JSON within the caps: MAX_JSON_BYTES, MAX_CONTAINERS lists/objects, MAX_DEPTH
    levels, finite numbers only, strings cleaned (`optforge.types.clean_text`). Raises ProtocolError.

    Lists and objects are counted on the text before anything is built (brackets inside strings count
    too: a job result has few), so a file of millions of empty lists costs a scan, not gigabytes.
    """
    if len(raw) > MAX_JSON_BYTES:
        raise ProtocolError(f"result.json is {len(raw)} bytes, over the {MAX_JSON_BYTES}-byte cap of its JSON part")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(f"result.json is not UTF-8 text: {e.reason} at byte {e.start}") from e
    if text.count("[") + text.count("{") > MAX_CONTAINERS:
        raise ProtocolError(f"result.json holds over {MAX_CONTAINERS} lists and objects; that is not a job result")
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except RecursionError as e:  # the C parser counts its depth against the recursion limit
        raise ProtocolError(f"result.json nests deeper than {MAX_DEPTH} levels") from e
    except ValueError as e:  # JSONDecodeError, and int() of a malformed number
        raise ProtocolError(f"result.json is not valid JSON: {e}") from e
    return _cleaned(doc, 0)


def _cleaned(x: Any, depth: int) -> Any:
    """`x` with every string (keys too) passed through clean_text; refuses numbers that are not finite
    (`1e999` parses to inf) or past MAX_INT, and nesting past MAX_DEPTH."""
    kind = type(x)
    if kind is str:
        return clean_text(x)
    if kind is float:
        if not math.isfinite(x):
            raise ProtocolError("result.json holds a number that overflows to infinity; only finite numbers are allowed")
        return x
    if kind is int:
        if not -MAX_INT <= x <= MAX_INT:
            raise ProtocolError(f"result.json holds an integer beyond +-{MAX_INT}")
        return x
    if kind is list or kind is dict:
        if depth >= MAX_DEPTH:
            raise ProtocolError(f"result.json nests deeper than {MAX_DEPTH} levels")
        if kind is list:
            return [_cleaned(v, depth + 1) for v in x]
        return {clean_text(k): _cleaned(v, depth + 1) for k, v in x.items()}
    return x  # True, False, None


def _error_record(err: Any) -> dict[str, Any]:
    """A job's error record with known keys of the right types, long texts cut to their caps."""
    if not isinstance(err, dict):
        raise ProtocolError(f"result.json 'error' must be an object, got {type(err).__name__}")
    out: dict[str, Any] = {}
    for key, cap in _ERROR_TEXT.items():
        v = err.get(key)
        if v is None:
            continue
        if not isinstance(v, str):
            raise ProtocolError(f"result.json error field '{key}' must be a string, got {type(v).__name__}")
        out[key] = v[-cap:] if key == "traceback" else v[:cap]
    line = err.get("line")
    if line is not None:
        if isinstance(line, bool) or not isinstance(line, int) or not 0 <= line < 10**9:
            raise ProtocolError(f"result.json error field 'line' must be a line number, got {str(line)[:40]}")
        out["line"] = line
    return out


def _buffer_entry(e: Any) -> tuple[str, str, list[int], str]:
    if not isinstance(e, dict):
        raise ProtocolError(f"malformed buffer entry: expected an object, got {type(e).__name__}")
    name, dtype, shape, fname = e.get("name"), e.get("dtype"), e.get("shape"), e.get("file")
    if not (isinstance(name, str) and isinstance(dtype, str) and isinstance(fname, str) and isinstance(shape, list)):
        raise ProtocolError("malformed buffer entry: needs string 'name', 'dtype', 'file' and a list 'shape'")
    if dtype not in _DTYPES or len(shape) > MAX_DEPTH or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in shape):
        raise ProtocolError(f"buffer '{name[:80]}' has a bad dtype or shape: {dtype[:40]} {str(shape)[:80]}")
    return name, dtype, shape, fname


def read_result(workdir: str, max_bytes: int, max_json_bytes: int | None = None) -> dict[str, Any] | None:
    """The parsed result: {"value", "buffers"} or {"error"}; None when the worker wrote none.

    `max_bytes` caps the JSON and the buffers together, `max_json_bytes` (default MAX_JSON_BYTES) the
    JSON alone. Whatever the job left there (a FIFO, a symlink, deep or huge JSON, non-finite numbers,
    wrong types), this raises ProtocolError and nothing else; the caller reports it as `bad_output`.
    """
    try:
        return _read_result(workdir, max_bytes, MAX_JSON_BYTES if max_json_bytes is None else max_json_bytes)
    except ProtocolError:
        raise
    except Exception as e:  # noqa: BLE001 - a forged result must never become a traceback in the trusted process
        raise ProtocolError(f"the job's result could not be interpreted: {type(e).__name__}: {str(e)[:200]}") from e


def _read_result(workdir: str, max_bytes: int, max_json_bytes: int) -> dict[str, Any] | None:
    if not os.path.lexists(os.path.join(workdir, RESULT_FILE)):
        return None
    limit = min(max_bytes, max_json_bytes)
    raw = _read_bounded(workdir, RESULT_FILE, limit, "output limit" if limit == max_bytes else "cap of its JSON part")
    doc = parse_json(raw)
    if not isinstance(doc, dict) or len({"value", "error"} & set(doc)) != 1:
        raise ProtocolError("result.json must be an object with exactly one of 'value' or 'error'")
    if "error" in doc:
        return {"error": _error_record(doc["error"])}
    entries = doc.get("buffers", [])
    if not isinstance(entries, list):
        raise ProtocolError(f"result.json 'buffers' must be a list, got {type(entries).__name__}")
    buffers: dict[str, np.ndarray] = {}
    budget = max_bytes - len(raw)
    for e in entries:
        name, dtype, shape, fname = _buffer_entry(e)
        want = math.prod(shape) * np.dtype(dtype).itemsize
        if want > budget:
            raise ProtocolError(f"buffer '{name[:80]}' needs {want} bytes, over what is left of the {max_bytes}-byte output limit")
        data = _read_bounded(workdir, fname, budget)
        budget -= len(data)
        if len(data) != want:
            raise ProtocolError(f"buffer '{name[:80]}' holds {len(data)} bytes, its dtype and shape need {want}")
        buffers[name] = np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    return {"value": doc["value"], "buffers": buffers}
