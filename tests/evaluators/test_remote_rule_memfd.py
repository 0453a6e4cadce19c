"""The memfd a rule process shares with the trainer, and the memfds it might make itself.

The rule process holds the shared memfd read-write (it writes g and its outputs there). Shrinking it
would kill the trainer with SIGBUS at its next read of the mapping, and growing a memfd holds tmpfs
memory that RLIMIT_AS does not count. The hostile rules below reach `os` through `torch.os` (the light
`check_rule` allows it; the sandbox's policy would refuse it), so the process layout, not the static
check, is what holds.
"""

from __future__ import annotations

import pytest

from optforge.evaluators.remote_rule import RemoteRuleSource, RuleProcessError
from optforge.evaluators.tasks import get_suite
from optforge.evaluators.train import train_rule

QUAD = {t.name: t for t in get_suite("smoke").tasks}["smoke_quad"]

# resizes every memfd of the trainer's it holds; raises with what each attempt did
RESIZER = '''
import torch
LR = 1e-3

def init(p, ctx):
    os = torch.os
    done = []
    for f in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink("/proc/self/fd/" + f).startswith("/memfd:optforge-rule"):
                continue
        except FileNotFoundError:
            continue
        size = os.fstat(int(f)).st_size
        for new in (0, size // 2, size + 4096, size * 64):
            try:
                os.ftruncate(int(f), new)
                done.append("resized to " + str(new))
            except OSError as e:
                done.append(type(e).__name__ + " " + str(e.errno))
    raise RuntimeError("; ".join(done) or "no memfd found")

def update(p, g, state, ctx):
    return -ctx.lr * g
'''

# fills memfds of its own: tmpfs memory outside RLIMIT_AS
HOARDER = '''
import torch
LR = 1e-3

def init(p, ctx):
    os = torch.os
    fd = os.memfd_create("hoard")
    for attempt in ("ftruncate", "pwrite"):
        try:
            if attempt == "ftruncate":
                os.ftruncate(fd, 64 << 20)
            else:
                os.pwrite(fd, b"x" * (1 << 20), 0)
            raise RuntimeError("grew a memfd of its own by " + attempt)
        except OSError as e:
            pass
    raise RuntimeError("memfd size " + str(os.fstat(fd).st_size))

def update(p, g, state, ctx):
    return -ctx.lr * g
'''


def test_the_rule_process_cannot_resize_the_trainers_memfd(host):
    with pytest.raises(RuleProcessError) as e:
        train_rule(QUAD, RemoteRuleSource(host, RESIZER), lr=1e-3, seed=0, steps=2)
    attempts = e.value.record["message"].split("; ")
    # shrinking is refused by the seals (EPERM): had it worked, this process would have died of SIGBUS;
    # growing is refused by the seals and, first, by the rule process's file size limit of 0 (EFBIG)
    # (one fd per mapping: Python's mmap keeps a duplicate of the fd it maps)
    assert attempts and len(attempts) % 4 == 0, attempts
    assert [a for i, a in enumerate(attempts) if i % 4 < 2] == ["PermissionError 1"] * (len(attempts) // 2), attempts
    assert not any(a.startswith("resized") for a in attempts), attempts


def test_the_trainers_memfd_is_sealed_against_resizing(host):
    import fcntl

    from optforge.evaluators.remote_rule import RemoteRule
    from optforge.evaluators.train import role_groups

    src = "LR = 0.1\ndef init(p, ctx):\n    return {}\ndef update(p, g, state, ctx):\n    return -ctx.lr * g\n"
    rule = RemoteRule(host, src, "honest", {}, role_groups(QUAD.build(0, validation=False)))
    try:
        seals = fcntl.fcntl(rule._memfd, fcntl.F_GET_SEALS)
    finally:
        rule.close()
    want = fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL
    assert seals & want == want


def test_the_rule_process_cannot_fill_a_memfd_of_its_own(host):
    with pytest.raises(RuleProcessError) as e:
        train_rule(QUAD, RemoteRuleSource(host, HOARDER), lr=1e-3, seed=0, steps=2)
    assert e.value.record["message"] == "memfd size 0"


def test_an_honest_rule_still_trains_through_the_sealed_memfd(host):
    src = "LR = 0.1\ndef init(p, ctx):\n    return {}\ndef update(p, g, state, ctx):\n    return -ctx.lr * g\n"
    trace = train_rule(QUAD, RemoteRuleSource(host, src), lr=0.1, seed=0, steps=5)
    assert trace.steps_run == 5 and trace.train_loss[-1] < trace.train_loss[0]
