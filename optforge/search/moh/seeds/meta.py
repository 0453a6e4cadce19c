"""MoH's seed: a random parent, several totally different ideas from the LLM, one generation prompt per idea, the best kept."""

import json
import re

N_IDEAS = 3
SYSTEM = "You are an expert in search algorithms and write correct, complete Python modules."


def code_of(text):
    """The longest fenced code block of an answer ("" when there is none)."""
    blocks = re.findall(r"```(?:python)?[ \t]*\n(.*?)```", text, re.S)
    return max(blocks, key=len) if blocks else ""


def ideas_of(text, n):
    """The first n strings of the JSON list in an answer."""
    found = re.search(r"\[.*\]", text, re.S)
    if not found:
        return []
    try:
        items = json.loads(found.group(0))
    except ValueError:
        return []
    return [str(item) for item in items if isinstance(item, str) and item.strip()][:n]


def improve(population, utility, llm, task):
    best = population.get(0)
    best_source, best_idea, best_fitness = best["source"], best["idea"], best["utility"]
    parent = population.sample()
    context = "%s\n\nA current solution (score %.4f; idea: %s):\n```python\n%s```\n" % (
        task, parent["utility"], parent["idea"] or "-", parent["source"])
    ask = context + "\nPropose %d totally different ideas for a better solution. Answer with a JSON list of %d one-sentence strings." % (N_IDEAS, N_IDEAS)
    try:  # a call past a limit raises: keep what was found
        ideas = ideas_of(llm.prompt(SYSTEM, ask, 1.0), N_IDEAS)
        answers = llm.prompt_batch(SYSTEM, [context + "\nWrite the complete new solution for this idea: " + idea
                                            for idea in ideas], 1.0) if ideas else []
    except Exception:
        return {"source": best_source, "idea": best_idea}
    for idea, answer in zip(ideas, answers):
        source = code_of(answer)
        if not source:
            continue
        try:
            fitness = utility(source, task)
        except Exception:
            break
        if fitness > best_fitness:
            best_source, best_idea, best_fitness = source, idea, fitness
    return {"source": best_source, "idea": best_idea}
