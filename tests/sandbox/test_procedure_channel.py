"""The procedure channel, with real processes: calls arrive in order with their arguments, answers and
refusals reach the procedure, the result comes back, and the population and `random` are the caller's;
either end going away ends the other; and the trusted reader stands up to a hostile writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from procedure_helpers import alive, drive, source, wait_gone

from optforge.sandbox.procedure import ProcedureCall, ProcedureEnd, ProcedureLimits, ProcedureRun, ProcedureSandbox

BOX = ProcedureSandbox(ProcedureLimits(cpu_s=10, wall_s=60))
POPULATION = [{"idea": "b", "source": "B", "utility": 0.5}, {"idea": "a", "source": "A", "utility": 0.9},
              {"idea": "c", "source": "C", "utility": 0.1}]

ROUND_TRIP = source('''
    import json

    def improve(population, utility, llm, task):
        ideas = llm.prompt_batch("expert", ["one", "two"], temperature=0.5)
        best, best_u = None, None
        for idea in ideas:
            src = llm.prompt("expert", f"{task}: {idea}")
            u = utility(src, "small")
            if best_u is None or u > best_u:
                best, best_u = src, u
        return {"source": best, "idea": json.dumps([population.get(0)["idea"], population.size()])}
''')


def test_calls_come_in_order_and_the_answers_reach_the_procedure():
    run = BOX.start(ROUND_TRIP, population=POPULATION, task="adam", seed=0)
    answers = {"rule for adam: rule for one": 1.0, "rule for adam: rule for two": 2.0}
    end, calls = drive(run, lambda c: answers[c.args["source"]] if c.kind == "utility" else
                       ("rule for " + c.args["message"] if c.kind == "llm" else ["rule for " + m for m in c.args["messages"]]))
    assert [(c.call_id, c.kind) for c in calls] == [(1, "llm_batch"), (2, "llm"), (3, "utility"), (4, "llm"), (5, "utility")]
    assert calls[0].args == {"system": "expert", "messages": ["one", "two"], "temperature": 0.5}
    assert calls[1].args == {"system": "expert", "message": "adam: rule for one", "temperature": 1.0}
    assert calls[2].args == {"source": "rule for adam: rule for one", "subtask": "small"}
    assert end.status == "ok" and end.reason is None and end.calls == 5
    # population.get(0) is the best (highest utility); the procedure saw all three entries
    assert end.value == {"source": "rule for adam: rule for two", "idea": '["a", 3]'}
    assert all(c.run_id == run.run_id for c in calls) and end.run_id == run.run_id


def test_a_refused_call_raises_in_the_procedure_which_may_go_on():
    src = source('''
        def improve(population, utility, llm, task):
            try:
                llm.prompt("s", "first")
            except Exception as e:
                return {"source": "refused: " + str(e), "idea": "x"}
            return "not refused"
    ''')
    end, calls = drive(BOX.start(src, population=[], task="t", seed=0), refuse=lambda c: "over the LLM sub-budget")
    assert end.ok and end.value["source"] == "refused: over the LLM sub-budget" and len(calls) == 1


def test_random_and_string_hashing_are_fixed_by_the_caller_and_sample_is_rank_weighted():
    src = source('''
        import random

        def improve(population, utility, llm, task):
            picks = [population.sample()["idea"] for _ in range(400)]
            words = {"lion", "adam", "sgd", "muon", "sophia", "shampoo"}
            return {"source": str(random.random()) + " ".join(words), "idea": "".join(picks)}
    ''')
    ends = [drive(BOX.start(src, population=POPULATION, task="t", seed=s))[0] for s in (7, 7, 8)]
    assert ends[0].value == ends[1].value != ends[2].value
    picks = ends[0].value["idea"]
    # P(rank r) ~ 1 / (r + 3/2): 0.49, 0.29, 0.21 for a, b, c
    assert picks.count("a") > picks.count("b") > picks.count("c") > 0


def test_a_large_population_and_large_answers_go_through():
    """Megabytes each way: the start message and the answers are written as the procedure reads them."""
    population = [{"idea": f"i{i}", "source": f"# rule {i}\n" + "x" * 20_000, "utility": float(i)} for i in range(100)]
    src = source('''
        def improve(population, utility, llm, task):
            worst = population.get(population.size() - 1)
            text = llm.prompt("s", worst["source"][:10])
            return {"source": worst["source"][:8] + str(len(text)), "idea": population.get(0)["idea"]}
    ''')
    end, calls = drive(BOX.start(src, population=population, task="t", seed=0), lambda c: "y" * 3_000_000)
    assert end.ok and end.value == {"source": "# rule 03000000", "idea": "i99"}, end


# ------------------------------------------------------------------------------------------------
# the ends of the channel going away


def test_a_procedure_that_dies_mid_call_ends_with_died():
    src = "def improve(population, utility, llm, task):\n    return llm.prompt('s', 'never answered')\n"
    run = BOX.start(src, population=[], task="t", seed=0)
    call = run.poll(timeout=60)
    assert isinstance(call, ProcedureCall) and run.child_pid is not None
    os.kill(run.child_pid, signal.SIGKILL)
    end = run.poll(timeout=60)
    assert isinstance(end, ProcedureEnd) and end.failure == "died" and "while call 1 was out" in end.reason, end
    run.answer(call, "too late")  # answering after the end is a no-op
    assert run.poll() is end and wait_gone(run.pid, run.child_pid)


def test_the_broker_killing_a_run_ends_it_and_its_processes():
    src = "def improve(population, utility, llm, task):\n    return llm.prompt('s', 'x')\n"
    run = BOX.start(src, population=[], task="t", seed=0)
    assert isinstance(run.poll(timeout=60), ProcedureCall)
    end = run.kill("wall_time: the broker's own budget ran out")
    assert end.failure == "wall_time" and run.poll() is end and wait_gone(run.pid, run.child_pid)
    assert BOX.start(src, population=[], task="t", seed=0).kill("stop").failure == "died"


BROKER = source('''
    import sys
    from optforge.sandbox.procedure import ProcedureLimits, ProcedureSandbox
    src = "def improve(population, utility, llm, task):\\n    x = llm.prompt('s', 'x')\\n    n = 0\\n    while True:\\n        n += 1\\n"
    run = ProcedureSandbox(ProcedureLimits(cpu_s=600, wall_s=600)).start(src, population=[], task="t", seed=0)
    call = run.poll(timeout=60)
    print(run.pid, run.child_pid, flush=True)
    if sys.argv[1] == "busy":
        run.answer(call, "y")
        run.poll(timeout=0.5)  # the procedure is now computing, not waiting on us
    sys.stdin.read()  # until the test kills us
''')


@pytest.mark.parametrize("moment", ["mid-call", "busy"])
def test_a_broker_that_goes_away_takes_its_procedure_along(moment):
    broker = subprocess.Popen([sys.executable, "-c", BROKER, moment], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        host_pid, child_pid = (int(x) for x in broker.stdout.readline().split())
        assert alive(host_pid) and alive(child_pid)
        broker.kill()
        broker.wait()
        assert wait_gone(host_pid, child_pid)
    finally:
        broker.kill()
        broker.wait()


# ------------------------------------------------------------------------------------------------
# a hostile writer on the channel: the procedure itself can only write through its proxies, so a raw
# process stands in for a compromised one, speaking to the real reader over the real pipes


HOSTILE = source('''
    import os, sys, time
    # argv: -c, ready|not, payload as hex, repeat, then what every host gets: IN OUT STATUS CPU_S MEMORY_MB
    out = int(sys.argv[5])
    os.write(out, b'{"kind": "ready", "layers": {}}\\n' if sys.argv[1] == "ready" else b"")
    payload = bytes.fromhex(sys.argv[2])
    repeat = int(sys.argv[3])
    for _ in range(repeat):
        os.write(out, payload)
    time.sleep(120)
''')
REQUEST = b'{"id": 1, "kind": "llm", "system": "s", "message": "m", "temperature": 1.0}\n'


def _hostile(payload: bytes, *, ready: bool = True, repeat: int = 1, limits: ProcedureLimits = BOX.limits):
    run = ProcedureRun(f"hostile-{len(payload)}", limits)
    run._launch({"kind": "start", "source": "", "population": [], "task": "t", "seed": 0},
                host_args=("-c", HOSTILE, "ready" if ready else "not", payload.hex(), str(repeat)))
    calls = []
    for _ in range(200):
        event = run.poll(timeout=1.0)
        if isinstance(event, ProcedureEnd):
            return event, calls, run
        if isinstance(event, ProcedureCall):
            calls.append(event)
    return run.kill("died: the test gave up"), calls, run


@pytest.mark.parametrize("payload,repeat,says", [
    (b"this is not json\n", 1, "not JSON"),
    (b"\xff\xfe\x00garbage\n", 1, "not JSON"),
    (b"[1, 2, 3]\n", 1, "not an object"),
    (b'{"kind": "shell", "cmd": "rm -rf /"}\n', 1, "unknown kind"),
    (b'{"id": 7, "kind": "llm", "system": "s", "message": "m", "temperature": 1.0}\n', 1, "out of order"),
    (b'{"id": 1, "kind": "utility", "source": 5, "subtask": "s"}\n', 1, "not a string"),
    (b'{"id": 1, "kind": "llm", "system": "s", "message": "m", "temperature": 1.0, "extra": 1}\n', 1, "has fields"),
    (REQUEST, 50, "while call 1 was out"),  # a flood of requests without waiting for answers
    (b"}{" * 4096, 400, "bytes"),  # megabytes of garbage without a newline
    (b'{"kind": "end", "ok": true, "value": {"source": ""}}\n', 1, "no valid result"),
    (b'{"kind": "end", "ok": false, "reason": "ok"}\n', 1, "unknown reason"),
    # the decoder recurses once per level: 20,000 levels would raise RecursionError in the broker
    (b'{"id": 1, "kind": "llm", "system": "s", "message": "m", "temperature": ' + b"[" * 20_000 + b"]" * 20_000 + b"}\n",
     1, "nested too deeply"),
    (b'{"id": 1, "kind": "llm", "system": "s", "message": "m", "temperature": NaN}\n', 1, "not a finite number"),
    (b'{"id": 1, "kind": "llm", "system": "s", "message": "m", "temperature": Infinity}\n', 1, "not a finite number"),
    (b'{"id": true, "kind": "llm", "system": "s", "message": "m", "temperature": 1.0}\n', 1, "out of order"),  # true == 1
    # "\\ud800" decodes to a lone surrogate, which the broker could not encode for an HTTP request
    (b'{"id": 1, "kind": "llm", "system": "s", "message": "\\ud800", "temperature": 1.0}\n', 1, "valid Unicode"),
    (b'{"id": 1, "kind": "llm_batch", "system": "s", "messages": ["a", "\\udfff"], "temperature": 1.0}\n', 1, "valid Unicode"),
    (b'{"kind": "end", "ok": true, "value": {"source": "x\\ud800"}}\n', 1, "no valid result"),
], ids=["text", "binary", "array", "kind", "order", "arg-type", "arg-extra", "flood", "oversize", "empty-result", "claims-ok",
        "nested", "nan", "infinity", "bool-id", "surrogate", "surrogate-batch", "surrogate-result"])
def test_a_hostile_writer_ends_with_bad_channel(payload, repeat, says):
    end, calls, run = _hostile(payload, repeat=repeat)
    assert end.status == "failed" and end.failure == "bad_channel" and says in end.reason, end
    assert len(calls) <= 1 and wait_gone(run.pid)


def test_a_writer_that_speaks_before_ready_or_never_reads_is_stopped():
    end, _, run = _hostile(REQUEST, ready=False)
    assert end.failure == "bad_channel" and "before its sandbox was ready" in end.reason and wait_gone(run.pid)
    # it never reads its start message (a megabyte population) nor sends anything: the wall clock ends it
    big = ProcedureRun("silent", ProcedureLimits(wall_s=1.0))
    big._launch({"kind": "start", "source": "", "population": [{"source": "x" * (1 << 20)}], "task": "t", "seed": 0},
                host_args=("-c", HOSTILE, "ready", b"".hex(), "0"))
    end = None
    for _ in range(200):
        end = big.poll(timeout=1.0)
        if end is not None:
            break
    assert isinstance(end, ProcedureEnd) and end.failure == "wall_time" and wait_gone(big.pid)


def test_runs_leave_no_descriptors_or_processes_behind():
    src = "def improve(population, utility, llm, task):\n    return llm.prompt('s', task)\n"
    before = set(os.listdir("/proc/self/fd"))
    pids = []
    for i in range(3):
        run = BOX.start(src, population=[], task="t", seed=i)
        end, _ = drive(run)
        assert end.ok
        pids += [run.pid, run.child_pid]
    dropped = BOX.start(src, population=[], task="t", seed=9)
    assert isinstance(dropped.poll(timeout=60), ProcedureCall)
    pids += [dropped.pid, dropped.child_pid]
    del dropped  # a broker that drops a run mid-call: it is killed when collected
    import gc

    gc.collect()
    assert wait_gone(*pids) and set(os.listdir("/proc/self/fd")) <= before


@pytest.mark.parametrize("field", ["reason", "type", "message", "line_text"])
def test_an_end_message_nested_deeply_is_read_without_recursing(field):
    """json.loads takes it at the reader's depth; str() of it a few frames deeper could raise RecursionError
    out of poll() (in a window of a frame or two that depends on the broker's stack). Only the strings and
    numbers of an end message are shown; an array, by its kind."""
    nest = b"[" * 900 + b"]" * 900
    error = {"type": b'"X"', "message": b'"m"', "line_text": b'"t"', "line": b"2"}
    error[field] = nest
    body = b", ".join(b'"%s": %s' % (k.encode(), v) for k, v in error.items())
    reason = nest if field == "reason" else b'"exception"'
    end, _, run = _hostile(b'{"kind": "end", "ok": false, "reason": ' + reason + b', "error": {' + body + b"}}\n")
    assert end.status == "failed" and end.failure in ("exception", "bad_channel") and "<a JSON array>" in end.reason, end
    assert wait_gone(run.pid)
