"""A trusted job standing in for a candidate that took over its process and forges its result file.

Each kind leaves in the job directory what issue 15 found crashing, hanging or bloating the trusted
side, then exits at once so that nothing overwrites it.
"""

from __future__ import annotations

import os

KINDS = ("fifo", "deep", "infinity_int", "wrong_types", "empty_lists_40mb")


def forge(source: str, payload: dict) -> dict:
    kind = payload["kind"]
    path = os.path.join(os.getcwd(), "result.json")
    if kind == "fifo":
        os.mkfifo(path)
    else:
        with open(path, "w") as f:
            if kind == "deep":
                f.write('{"value": ' + "[" * 200_000 + "]" * 200_000 + "}")
            elif kind == "infinity_int":
                f.write('{"value": {}, "buffers": [{"name": "w", "dtype": "float32", "shape": [Infinity], "file": "b"}]}')
            elif kind == "wrong_types":
                f.write('{"error": ["exception", "a list where an object belongs"]}')
            elif kind == "empty_lists_40mb":
                f.write('{"value": [[]')
                chunk = ",[]" * 100_000
                for _ in range(40 * 1024 * 1024 // len(chunk)):
                    f.write(chunk)
                f.write("]}")
            else:
                raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    os._exit(0)
