"""Red team (issue 20): hostile procedures, each of which must end with a clear status and reason,
its processes gone, while the caller goes on. Real processes, real limits; the limits are set small
so that each case ends in seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from procedure_helpers import drive, source, wait_gone
from test_os_layers import _world_writable_dirs

from optforge.sandbox.procedure import ProcedureEnd, ProcedureLimits, ProcedureSandbox
from optforge.sandbox.procedure_policy import PROCEDURE_POLICY, check_procedure

QUICK = ProcedureLimits(cpu_s=2, wall_s=60, max_calls=20)

# (id, the escape, the line the checker refuses it at)
ESCAPES = [
    ("import-os", "import os\ndef improve(population, utility, llm, task):\n    return os.getcwd()\n", 1),
    ("from-os", "from os import fork\ndef improve(population, utility, llm, task):\n    fork()\n", 1),
    ("import-subprocess", "def improve(population, utility, llm, task):\n    import subprocess\n    return 'x'\n", 2),
    ("dunder-import", "def improve(population, utility, llm, task):\n    return __import__('os').fork()\n", 2),
    ("subclasses", "def improve(population, utility, llm, task):\n    return str(().__class__.__bases__[0].__subclasses__())\n", 2),
    ("subclasses-of-proxy", "def improve(population, utility, llm, task):\n    return str(llm.__class__.__subclasses__())\n", 2),
    ("type", "def improve(population, utility, llm, task):\n    return str(type(llm))\n", 2),
    ("getattr", "def improve(population, utility, llm, task):\n    return getattr(llm, '_channel')\n", 2),
    ("private-attr", "def improve(population, utility, llm, task):\n    return llm._channel\n", 2),
    ("format-reads-attributes", "def improve(population, utility, llm, task):\n    return '{0.__class__}'.format(llm)\n", 2),
    ("json-submodule", "import json\ndef improve(population, utility, llm, task):\n    return str(json.decoder)\n", 3),
    ("json-load-file", "import json\ndef improve(population, utility, llm, task):\n    return json.load(task)\n", 3),
    ("open", "def improve(population, utility, llm, task):\n    return open('/etc/passwd').read()\n", 2),
    ("generator-frame", "def improve(population, utility, llm, task):\n    g = (x for x in [1])\n    return str(g.gi_frame)\n", 3),
    ("exception-traceback", "def improve(population, utility, llm, task):\n    try:\n        1 / 0\n    except Exception as e:\n        return str(e.__traceback__.tb_frame)\n", 5),
    ("class", "class A:\n    pass\ndef improve(population, utility, llm, task):\n    return 'x'\n", 1),
    ("global", "n = 0\ndef improve(population, utility, llm, task):\n    global n\n    return 'x'\n", 3),
    ("monkeypatch-proxy", "def improve(population, utility, llm, task):\n    llm.prompt = None\n    return 'x'\n", 2),
    ("random-private", "import random\ndef improve(population, utility, llm, task):\n    return str(random._os)\n", 3),
    ("bind-open", "open = print\ndef improve(population, utility, llm, task):\n    return 'x'\n", 1),
    ("yield", "def improve(population, utility, llm, task):\n    yield 'x'\n", 2),
]


@pytest.mark.parametrize("src,line", [pytest.param(s, n, id=i) for i, s, n in ESCAPES])
def test_each_escape_is_refused_by_the_checker_at_its_line(src, line):
    assert line in {v.line for v in check_procedure(src)}, check_procedure(src)


@pytest.mark.parametrize("expr", ["random.SystemRandom().random()", "id(llm)", "hash(population)"])
def test_sources_of_nondeterminism_are_refused(expr):
    """A run must replay from its seed (resume answers its calls from the store, in order)."""
    src = f"import random\ndef improve(population, utility, llm, task):\n    return str({expr})\n"
    assert 3 in {v.line for v in check_procedure(src)}


def test_a_refused_procedure_ends_at_once_with_policy_and_starts_nothing():
    box = ProcedureSandbox(QUICK)
    run = box.start(ESCAPES[0][1], population=[], task="t", seed=0)
    end = run.poll()
    assert isinstance(end, ProcedureEnd) and end.status == "failed" and end.failure == "policy"
    assert "line 1" in end.reason and "import of 'os'" in end.reason and run.pid is None and end.calls == 0
    missing = box.start("x = 1\n", population=[], task="t", seed=0).poll()
    assert missing.failure == "policy" and "must define improve" in missing.reason


def test_the_procedure_policy_allows_what_a_search_procedure_needs():
    src = source('''
        import heapq
        import itertools
        import json
        import math
        import random
        import re

        def improve(population, utility, llm, task):
            seen = {}
            queue = []
            for i in range(population.size()):
                entry = population.get(i)
                heapq.heappush(queue, (-entry["utility"], i, entry["source"]))
            parent = population.sample()
            text = llm.prompt("You are an expert.", f"Improve this ({task}):\\n{parent['source']}", temperature=0.7)
            match = re.search(r"```python\\n(.*?)```", text, re.S)
            code = match.group(1) if match else text.strip()
            tries = 0
            while tries < 2:
                tries += 1
                try:
                    seen[code] = utility(code, "small")
                except Exception as e:
                    seen[code] = -math.inf
            ideas = json.loads(llm.prompt("s", "ideas as JSON"))
            pairs = list(itertools.combinations(sorted(ideas, key=lambda s: len(s)), 2))
            best = max(seen.items(), key=lambda kv: kv[1])
            random.shuffle(pairs)
            return {"source": best[0], "idea": " and ".join(str(p) for p in pairs[:1])}
    ''')
    assert check_procedure(src) == []
    assert PROCEDURE_POLICY.name == "procedure"


def test_the_checker_is_applied_again_inside_the_sandbox():
    """A source that skips the caller's check (a bug, or a caller that forgot) is refused in the sandbox."""
    box = ProcedureSandbox(QUICK)
    run = box.start("def improve(population, utility, llm, task):\n    return 'x'\n", population=[], task="t", seed=0)
    run.kill("died: replaced by the test")  # a started run, only to get a ProcedureRun to launch by hand
    from optforge.sandbox.procedure import ProcedureRun

    raw = ProcedureRun("by-hand", QUICK)
    raw._launch({"kind": "start", "source": ESCAPES[0][1], "population": [], "task": "t", "seed": 0})
    end, _ = drive(raw)
    assert end.failure == "policy" and "import of 'os'" in end.reason and wait_gone(raw.pid, raw.child_pid)


@pytest.mark.parametrize("body", [
    "    n = 0\n    while True:\n        n += 1\n",
    "    return str(7 ** (10 ** 9))\n",  # one long C call: the interpreter never looks at a signal
], ids=["python-loop", "c-call"])
def test_a_loop_without_calls_ends_with_cpu_time(body):
    src = "def improve(population, utility, llm, task):\n" + body
    run = ProcedureSandbox(ProcedureLimits(cpu_s=1, wall_s=600)).start(src, population=[], task="t", seed=0)
    end, calls = drive(run)
    assert end.failure == "cpu_time" and calls == [] and end.cpu_s > 0, end
    assert wait_gone(run.pid, run.child_pid)


def test_a_loop_making_calls_ends_with_call_limit_and_the_extra_call_never_reaches_the_broker():
    src = "def improve(population, utility, llm, task):\n    while True:\n        llm.prompt('s', 'again')\n"
    run = ProcedureSandbox(ProcedureLimits(cpu_s=30, wall_s=60, max_calls=5)).start(src, population=[], task="t", seed=0)
    end, calls = drive(run)
    assert end.failure == "call_limit" and len(calls) == 5 and end.calls == 6 and "more than its 5 calls" in end.reason
    assert wait_gone(run.pid, run.child_pid)


def test_asking_for_more_calls_than_allowed_in_a_batch_loop_ends_with_call_limit():
    src = source('''
        def improve(population, utility, llm, task):
            out = []
            for i in range(4):
                out += llm.prompt_batch("s", ["a", "b"])
            return out[0]
    ''')
    end, calls = drive(ProcedureSandbox(ProcedureLimits(max_calls=3)).start(src, population=[], task="t", seed=0))
    assert end.failure == "call_limit" and [c.kind for c in calls] == ["llm_batch"] * 3
    ok, _ = drive(ProcedureSandbox(ProcedureLimits(max_calls=4)).start(src, population=[], task="t", seed=0))
    assert ok.ok and ok.calls == 4


def test_holding_a_call_does_not_count_against_the_wall_clock_but_busy_work_between_calls_does():
    limits = ProcedureLimits(cpu_s=60, wall_s=1.0)
    held = source('''
        def improve(population, utility, llm, task):
            return llm.prompt("s", "slow answer")
    ''')
    # the broker takes twice the procedure's wall-clock limit to answer: the procedure is not to blame
    end, _ = drive(ProcedureSandbox(limits).start(held, population=[], task="t", seed=0), on_call=lambda c: time.sleep(2.0))
    assert end.ok and end.wall_s < 1.0, end
    busy = source('''
        def improve(population, utility, llm, task):
            llm.prompt("s", "first")
            n = 0
            while n >= 0:
                n += 1
            return "never"
    ''')
    run = ProcedureSandbox(limits).start(busy, population=[], task="t", seed=0)
    end, calls = drive(run)
    assert end.failure == "wall_time" and len(calls) == 1 and wait_gone(run.pid, run.child_pid)


def test_an_oversized_request_ends_with_bad_channel():
    src = "def improve(population, utility, llm, task):\n    return llm.prompt('s', 'x' * 3000000)\n"
    run = ProcedureSandbox(QUICK).start(src, population=[], task="t", seed=0)
    end, calls = drive(run)
    assert end.failure == "bad_channel" and "bytes" in end.reason and calls == [] and wait_gone(run.pid, run.child_pid)


def test_memory_exhaustion_ends_with_memory():
    src = "def improve(population, utility, llm, task):\n    big = [0] * (4 * 1024 * 1024 * 1024)\n    return str(len(big))\n"
    end, _ = drive(ProcedureSandbox(ProcedureLimits(cpu_s=10, memory_mb=512)).start(src, population=[], task="t", seed=0))
    assert end.failure == "memory" and "line 2" in end.reason, end


@pytest.mark.parametrize("body,word,text", [
    ("    raise ValueError('no idea')\n", "exception", "ValueError: no idea (procedure line 2: raise ValueError('no idea'))"),
    ("    return population.get(3)\n", "exception", "IndexError"),
    ("    return None\n", "no_result", "returned None"),
    ("    return '   '\n", "no_result", "empty source"),
    ("    return 42\n", "bad_result", "returned a int"),
    ("    return {'idea': 'x'}\n", "bad_result", "'source' is not a str"),
    ("    return improve(population, utility, llm, task)\n", "exception", "RecursionError"),
], ids=["raise", "index", "none", "empty", "int", "no-source", "recursion"])
def test_a_procedure_that_raises_or_returns_nothing_useful_says_so(body, word, text):
    src = "def improve(population, utility, llm, task):\n" + body
    end, _ = drive(ProcedureSandbox(QUICK).start(src, population=[], task="t", seed=0))
    assert end.status == "failed" and end.failure == word and text in end.reason, end
    assert "Traceback" not in end.reason and "procedure_host" not in end.reason  # never a trusted-side traceback


LAYER_PROBE = source('''
    import json, os, socket, sys
    from optforge.sandbox import layers as L
    from optforge.sandbox import procedure_host as H
    from optforge.sandbox.procedure_process import isolate_process
    ns = L.unshare_namespaces(H._NS_FLAGS)
    host = os.getpid()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        layers = isolate_process(ns, host, 5, 1024)
        seen = {"layers": layers, "euid": os.geteuid()}
        try:
            if os.fork() == 0:
                os._exit(0)
            seen["fork"] = "forked"
        except OSError as e:
            seen["fork"] = "refused: " + os.strerror(e.errno)
        try:
            socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
            seen["connect"] = "connected"
        except OSError as e:
            seen["connect"] = "failed: " + str(e)
        seen["write"] = {}
        for d in json.loads(sys.argv[2]):
            try:
                open(os.path.join(d, "written-by-a-procedure"), "w").close()
                seen["write"][d] = "written"
            except OSError as e:
                seen["write"][d] = os.strerror(e.errno)
        seen["tmp"] = sorted(os.listdir("/tmp"))
        seen["run"] = sorted(os.listdir("/run")) if os.path.isdir("/run") else []
        seen["pids"] = [p for p in os.listdir("/proc") if p.isdigit()]
        seen["env"] = sorted(os.environ)
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        seen["sysv"] = [libc.shmget(0, 4096, 0o1000 | 0o600) >= 0, libc.msgget(0, 0o1000 | 0o600) >= 0,
                        libc.semget(0, 1, 0o1000 | 0o600) >= 0]
        os.write(w, json.dumps(seen).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    sys.stdout.write(os.read(r, 1 << 16).decode())
''')


def test_the_os_layers_hold_in_a_procedure_process(tmp_path):
    """The policy leaves a procedure no way to fork, connect, write, make System V objects or read the
    environment; should one be found, the process's own layers stop it. The same isolation as a procedure's, in a real process
    that tries (each check where this machine reports the layer active)."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    marker = tmp_path / "host-marker"
    marker.write_text("host")
    writable = _world_writable_dirs()  # outside the private tmpfs: only read_only_root keeps a procedure out
    env = {**os.environ, "OPTFORGE_TEST_API_KEY": "sk-secret"}
    try:
        out = subprocess.run([sys.executable, "-c", LAYER_PROBE, str(listener.getsockname()[1]), json.dumps(writable)],
                             capture_output=True, text=True, timeout=120, cwd="/", env=env)
    finally:
        listener.close()
        leaked = [d for d in writable if os.path.exists(os.path.join(d, "written-by-a-procedure"))]
        for d in writable:
            if d in leaked:
                os.remove(os.path.join(d, "written-by-a-procedure"))
            if os.path.basename(d).startswith(".optforge-ww-"):
                os.rmdir(d)
    seen = json.loads(out.stdout)
    assert not leaked or not seen["layers"]["read_only_root"], seen
    layers = seen["layers"]
    assert "OPTFORGE_TEST_API_KEY" not in seen["env"] and layers["no_secrets"]
    if layers["rlimits"] and (seen["euid"] != 0 or layers["pid_namespace"]):
        assert seen["fork"].startswith("refused"), seen
    if layers["network"]:
        assert seen["connect"].startswith("failed"), seen
    if layers["read_only_root"]:
        # /run/lock is also hidden (run_hidden): not there at all, rather than read-only
        hidden = {d for d in writable if layers["run_hidden"] and d.startswith(("/run/", "/var/run/"))}
        assert seen["write"] == {d: "No such file or directory" if d in hidden else "Read-only file system" for d in writable}
    if layers["private_tmp"]:
        assert marker.name not in str(seen["tmp"]) and not str(tmp_path).startswith(tuple("/" + t for t in seen["tmp"] if t))
    if layers["run_hidden"]:
        assert seen["run"] == [], seen
    if layers["pid_namespace"]:
        assert seen["pids"] == ["1"], seen
    if layers["ipc_namespace"]:  # its own, every System V limit zero: no segment, queue or semaphore set
        assert seen["sysv"] == [False, False, False], seen


# ------------------------------------------------------------------------------------------------
# holes found by attacking the sandbox (each test fails without its fix)


def test_a_batch_larger_than_max_batch_is_refused_without_reaching_the_broker():
    """One call must not stand for an unbounded number of completions (200,000 empty prompts fit in 1 MiB)."""
    src = source('''
        def improve(population, utility, llm, task):
            try:
                llm.prompt_batch("s", [""] * 200000)
            except Exception as e:
                return {"source": str(len(llm.prompt_batch("s", ["a", "b"]))), "idea": str(e)}
            return "the big batch went through"
    ''')
    end, calls = drive(ProcedureSandbox(ProcedureLimits(max_batch=2)).start(src, population=[], task="t", seed=0))
    assert end.ok and end.value["source"] == "2" and "at most 2 messages, this one holds 200000" in end.value["idea"], end
    assert [len(c.args["messages"]) for c in calls] == [2] and end.calls == 2  # the refused batch counts as a call


def test_what_the_proxies_send_is_finite_valid_text_and_a_nan_utility_reads_as_minus_inf():
    """A NaN or infinite temperature and a lone surrogate (chr(0xd800), which no broker can encode for an
    HTTP request or a database) never reach the broker; a NaN answer is not a number to the procedure."""
    src = source('''
        import math

        def improve(population, utility, llm, task):
            seen = []
            for t in (float("nan"), float("inf")):
                try:
                    llm.prompt("s", "m", temperature=t)
                except ValueError as e:
                    seen.append(str(e))
            text = llm.prompt("s" + chr(0xd800), "m" + chr(0xdfff))
            batch = llm.prompt_batch("s", ["a" + chr(0xd800)])
            u = utility("rule" + chr(0xd800), "sub" + chr(0xdc00))
            return {"source": text + batch[0] + chr(0xd800), "idea": " | ".join(seen) + " | " + str(u)}
    ''')
    end, calls = drive(ProcedureSandbox(QUICK).start(src, population=[], task="t", seed=0),
                       lambda c: float("nan") if c.kind == "utility" else "x" if c.kind == "llm" else ["y"])
    assert [c.args for c in calls] == [{"system": "s?", "message": "m?", "temperature": 1.0},
                                       {"system": "s", "messages": ["a?"], "temperature": 1.0},
                                       {"source": "rule?", "subtask": "sub?"}]
    assert end.ok and end.value == {"source": "xy?", "idea": "temperature must be a finite number, not nan | "
                                    "temperature must be a finite number, not inf | -inf"}, end


def test_an_exception_whose_message_cannot_be_shown_is_still_the_procedures_exception():
    """str() of an exception is the procedure's code too; failing in it is not the sandbox failing to start."""
    src = source('''
        def improve(population, utility, llm, task):
            x = []
            for i in range(100000):
                x = [x]
            raise ValueError(x)
    ''')
    end, _ = drive(ProcedureSandbox(QUICK).start(src, population=[], task="t", seed=0))
    assert end.failure == "exception" and "ValueError" in end.reason and "line 5" in end.reason, end


@pytest.mark.parametrize("bad", [b"def improve(population, utility, llm, task):\n    return 'x'\n", None, 5])
def test_a_source_that_is_not_a_str_is_refused_by_policy(bad):
    end = ProcedureSandbox(QUICK).start(bad, population=[], task="t", seed=0).poll()
    assert end.failure == "policy" and "must be a str" in end.reason, end
