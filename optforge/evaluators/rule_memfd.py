"""The memfd both halves of a remote rule map (`optforge.evaluators.remote_rule`, the trainer's;
`optforge.evaluators.rule_process`, the rule's): what the request header holds, where each tensor lives
(`Layout`), and the tensor views of it (`Views`; the rule side maps p read-only).
"""

from __future__ import annotations

import contextlib
import math
import mmap
import struct
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

OP_INIT, OP_UPDATE, OP_EVAL_POINT, OP_STOP = 1, 2, 3, 4
REPLY_NEED_NORM = 2
_OPS = {"init": OP_INIT, "update": OP_UPDATE, "eval_point": OP_EVAL_POINT}
_ALIGN = 64
_RECORD_BYTES = 32 * 1024  # the rule process's failure record: under a pipe's buffer, so it never blocks


def _up(n: int, a: int = _ALIGN) -> int:
    return (n + a - 1) // a * a


# the request, written with one struct call a step (no JSON or pickle, nothing per field): a header of
# int64 op, n, T (-1: None), float64 grad_norm, then for the n tensors of this request
# int64 idx[n], int64 t[n], float64 lr[n]
_HEAD = struct.Struct("<qqqd")
_NORM_OFFSET = 24
_BODIES: dict[int, struct.Struct] = {}
_REQUESTS: dict[int, struct.Struct] = {}


def _body(n: int) -> struct.Struct:
    """The request after its header, for n tensors (what the rule process reads once it knows n)."""
    fmt = _BODIES.get(n)
    if fmt is None:
        fmt = _BODIES[n] = struct.Struct(f"<{2 * n}q{n}d")
    return fmt


def _request(n: int) -> struct.Struct:
    """The whole request for n tensors, header and body (what the trainer writes; "<": no padding, so
    the rule process reads the same bytes as `_HEAD` then `_body(n)`)."""
    fmt = _REQUESTS.get(n)
    if fmt is None:
        fmt = _REQUESTS[n] = struct.Struct(_HEAD.format + _body(n).format[1:])
    return fmt


@dataclass(frozen=True)
class Layout:
    """Where everything lives in the memfd. Offsets of `ro` are from 0; of `rw` from `ro_bytes`."""

    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    roles: tuple[str, ...]
    where: tuple[tuple[int, int], ...]  # (group index, param index) of each tensor, for messages
    source_bytes: int

    @property
    def n(self) -> int:
        return len(self.shapes)

    def nbytes(self, k: int) -> int:
        return math.prod(self.shapes[k]) * torch.empty((), dtype=getattr(torch, self.dtypes[k])).element_size()

    @property
    def header_bytes(self) -> int:
        return _up(_HEAD.size + _body(self.n).size)

    @property
    def source_offset(self) -> int:
        return self.header_bytes

    def p_offsets(self) -> list[int]:
        off, out = _up(self.source_offset + self.source_bytes), []
        for k in range(self.n):
            out.append(off)
            off = _up(off + self.nbytes(k))
        return out

    @property
    def ro_bytes(self) -> int:
        offs = self.p_offsets()
        end = offs[-1] + self.nbytes(self.n - 1) if self.n else self.source_offset + self.source_bytes
        return _up(end, mmap.PAGESIZE)

    def rw_offsets(self) -> tuple[list[int], list[int]]:
        """(g offsets, out offsets) within the writable part; it starts with an int64 reply word."""
        off, g, out = _ALIGN, [], []
        for k in range(self.n):
            g.append(off)
            off = _up(off + self.nbytes(k))
        for k in range(self.n):
            out.append(off)
            off = _up(off + self.nbytes(k))
        return g, out

    @property
    def rw_bytes(self) -> int:
        _, out = self.rw_offsets()
        end = out[-1] + self.nbytes(self.n - 1) if self.n else _ALIGN
        return _up(end, mmap.PAGESIZE)

    def to_json(self) -> dict[str, Any]:
        return {"shapes": [list(s) for s in self.shapes], "dtypes": list(self.dtypes), "roles": list(self.roles),
                "where": [list(w) for w in self.where], "source_bytes": self.source_bytes}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Layout":
        return cls(tuple(tuple(int(x) for x in s) for s in d["shapes"]), tuple(str(x) for x in d["dtypes"]),
                   tuple(str(x) for x in d["roles"]), tuple((int(a), int(b)) for a, b in d["where"]),
                   int(d["source_bytes"]))


class Views:
    """Tensor and header views of one memfd, the same on both sides (the rule side maps p read-only)."""

    def __init__(self, fd: int, layout: Layout, rule_side: bool):
        self.layout = layout
        self.p: list[torch.Tensor] = []
        self.g: list[torch.Tensor] = []
        self.out: list[torch.Tensor] = []
        self._maps: list[mmap.mmap] = []
        try:
            ro_prot = mmap.PROT_READ if rule_side else mmap.PROT_READ | mmap.PROT_WRITE
            self.ro = self._map(fd, layout.ro_bytes, ro_prot, 0)
            self.rw = self._map(fd, layout.rw_bytes, mmap.PROT_READ | mmap.PROT_WRITE, layout.ro_bytes)
            self.reply = np.frombuffer(self.rw, dtype=np.int64, count=1)
            g_offs, out_offs = layout.rw_offsets()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # torch warns about the read-only p mapping
                self.p = [self._view(self.ro, off, k) for k, off in enumerate(layout.p_offsets())]
            self.g = [self._view(self.rw, off, k) for k, off in enumerate(g_offs)]
            self.out = [self._view(self.rw, off, k) for k, off in enumerate(out_offs)]
        except BaseException:
            self.close()
            raise

    def _map(self, fd: int, length: int, prot: int, offset: int) -> mmap.mmap:
        m = mmap.mmap(fd, length, mmap.MAP_SHARED, prot, offset=offset)
        self._maps.append(m)  # each holds a mapping and a duplicate of `fd` until closed
        return m

    def _view(self, buf: mmap.mmap, off: int, k: int) -> torch.Tensor:
        shape, dtype = self.layout.shapes[k], getattr(torch, self.layout.dtypes[k])
        return torch.frombuffer(buf, dtype=dtype, count=math.prod(shape), offset=off).view(shape)

    def source(self) -> str:
        lay = self.layout
        return bytes(self.ro[lay.source_offset: lay.source_offset + lay.source_bytes]).decode("utf-8")

    def close(self) -> None:
        """Unmap both parts and close the fd duplicates the mappings hold. A view still held elsewhere
        keeps its mapping (and that duplicate) alive until it is dropped: the views handed out by
        `RemoteRule.batch` live until the next call, so none is held once a run is over."""
        self.p, self.g, self.out = [], [], []  # drop the exports before unmapping
        self.__dict__.pop("reply", None)
        maps, self._maps = self._maps, []
        for m in maps:
            with contextlib.suppress(BufferError):
                m.close()
