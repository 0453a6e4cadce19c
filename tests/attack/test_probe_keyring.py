"""ATTACK (failed on main; fixed on branch `attack`): source A of a `rule_probes` batch leaves a key in the kernel keyring, source B
(its own rule process, started after A's has ended) reads it. Kernel keyrings are not covered by the
PID, IPC or mount namespaces: the user keyring belongs to the user namespace (the rule host's, shared by
every rule process it forks) and the session keyring is inherited from the job. With the checker off
(as tests/evaluators/test_split_job.py runs hostile rules), A writes and B reads through `keyctl(2)`.

B raises with what it found, so its probe fails with the text; probed alone it does not find it (the
control, so the test can fail for the right reason)."""

from __future__ import annotations

import pytest

from optforge import sandbox
from optforge.search.probe import JOB

COMMON = '''
import torch
LR = 1e-3
os = torch.os

def _libc():
    import ctypes
    return ctypes, ctypes.CDLL(None, use_errno=True)

def _add(ring, payload):
    ctypes, lib = _libc()
    lib.syscall.restype = ctypes.c_long
    return lib.syscall(248, b"user", b"optforge-leak", payload, len(payload), ctypes.c_int(ring))

def _find(ring):
    ctypes, lib = _libc()
    lib.syscall.restype = ctypes.c_long
    key = lib.syscall(250, 10, ctypes.c_int(ring), b"user", b"optforge-leak", 0)  # KEYCTL_SEARCH
    if key < 0:
        return None
    buf = ctypes.create_string_buffer(4096)
    n = lib.syscall(250, 11, ctypes.c_long(key), buf, 4096)  # KEYCTL_READ
    if n < 0:  # not readable: the description (A's choice of text, too) is enough of a channel
        n = lib.syscall(250, 6, ctypes.c_long(key), buf, 4096)  # KEYCTL_DESCRIBE
        return "description " + buf.raw[:max(n, 1) - 1].decode()
    return buf.raw[:n].decode()
'''

WRITER = COMMON + '''
def init(p, ctx):
    _add(-4, b"user keyring: A saw p=" + repr(p.flatten()[:2].tolist()).encode())   # @u
    _add(-3, b"session keyring: A saw p=" + repr(p.flatten()[:2].tolist()).encode())  # @s
    return {}

def update(p, g, state, ctx):
    return -ctx.lr * g
'''

READER = COMMON + '''
def init(p, ctx):
    found = [x for x in (_find(-4), _find(-3)) if x]
    if found:
        raise RuntimeError("B found: " + " | ".join(found))
    return {}

def update(p, g, state, ctx):
    return -ctx.lr * g
'''


def _probe(sources):
    limits = sandbox.Limits(timeout_s=120.0, static_check=False)
    res = sandbox.run("", JOB, {"sources": sources, "timeout_s": 30.0}, sandbox.RULE_POLICY, limits)
    assert res.ok, (res.reason, res.exception, res.stderr_tail)
    return res.value["results"]


def test_control_reader_alone_finds_nothing():
    assert _probe([READER]) == [{}]


def test_source_b_does_not_see_what_source_a_left_in_a_keyring():
    a, b = _probe([WRITER, READER])
    assert a == {}
    assert b == {}, b


LOCKER = WRITER.replace('''    return {}
''', '''    ctypes, lib = _libc()
    # takes write and setattr on @u away from every process of the uid (possessor and user): no one can
    # empty it any more, while anyone can still search it and read A's key
    lib.syscall(250, 5, ctypes.c_int(-4), ctypes.c_uint(0x0b0b0000))  # KEYCTL_SETPERM
    return {}
''', 1)


def test_a_source_that_locks_the_user_keyring_passes_nothing_on():
    a, b = _probe([LOCKER, READER])
    assert a == {}
    assert "optforge-leak" not in str(b) and "A saw" not in str(b), b  # B's rule process refuses to start rather than run beside A's key
