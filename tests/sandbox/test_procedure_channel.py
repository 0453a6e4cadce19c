"""The procedure channel, with real processes: calls arrive in order with their arguments, answers and
refusals reach the procedure, the result comes back, and the population and `random` are the caller's."""

from __future__ import annotations

from procedure_helpers import drive, source

from optforge.sandbox.procedure import ProcedureLimits, ProcedureSandbox

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


def test_random_is_seeded_by_the_caller_and_sample_is_rank_weighted():
    src = source('''
        import random

        def improve(population, utility, llm, task):
            picks = [population.sample()["idea"] for _ in range(400)]
            return {"source": str(random.random()), "idea": "".join(picks)}
    ''')
    ends = [drive(BOX.start(src, population=POPULATION, task="t", seed=s))[0] for s in (7, 7, 8)]
    assert ends[0].value == ends[1].value != ends[2].value
    picks = ends[0].value["idea"]
    # P(rank r) ~ 1 / (r + 3/2): 0.49, 0.29, 0.21 for a, b, c
    assert picks.count("a") > picks.count("b") > picks.count("c") > 0
