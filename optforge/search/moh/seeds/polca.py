"""POLCA-like: a small priority queue of solutions; the top one is expanded again and again (repeats), its children pushed back."""

import heapq
import re

STEPS = 3  # pops of the queue
REPEATS = 2  # children asked per pop, in one batch
QUEUE_SIZE = 4
SYSTEM = "You are an expert in numerical optimization and write correct, complete Python modules."


def code_of(text):
    """The longest fenced code block of an answer ("" when there is none)."""
    blocks = re.findall(r"```(?:python)?[ \t]*\n(.*?)```", text, re.S)
    return max(blocks, key=len) if blocks else ""


def improve(population, utility, llm, task):
    queue = []  # (-utility, order, source, idea): the best first, ties to the older entry
    order = 0
    for i in range(min(QUEUE_SIZE, population.size())):
        entry = population.get(i)
        heapq.heappush(queue, (-entry["utility"], order, entry["source"], entry["idea"]))
        order += 1
    best = {"utility": -queue[0][0], "source": queue[0][2], "idea": queue[0][3]}
    for _ in range(STEPS):
        top = heapq.heappop(queue)
        message = (task + "\n\nThe current solution (score %.4f; idea: %s):\n```python\n%s```\n"
                   "Improve it: change what most limits its score, and say the idea in one sentence "
                   "before the code." % (-top[0], top[3] or "-", top[2]))
        try:  # a call past a limit raises: keep what was found
            answers = llm.prompt_batch(SYSTEM, [message] * REPEATS, 0.8)
        except Exception:
            break
        heapq.heappush(queue, top)  # the parent stays, so it may be expanded again
        for answer in answers:
            source = code_of(answer)
            if not source:
                continue
            idea = answer.split("```", 1)[0].strip().splitlines()
            idea = idea[0] if idea else ""
            try:
                fitness = utility(source, task)
            except Exception:
                return {"source": best["source"], "idea": best["idea"]}
            heapq.heappush(queue, (-fitness, order, source, idea))
            order += 1
            if fitness > best["utility"]:
                best = {"utility": fitness, "source": source, "idea": idea}
        queue = heapq.nsmallest(QUEUE_SIZE, queue)
        heapq.heapify(queue)
    return {"source": best["source"], "idea": best["idea"]}
