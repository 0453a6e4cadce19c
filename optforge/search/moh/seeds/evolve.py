"""Evolve-like: a parent plus inspirations from the population, several different ideas, one generation prompt per idea."""

import json
import re

ROUNDS = 2  # parent picks; each asks for N_IDEAS ideas, then writes one solution per idea
N_IDEAS = 3
N_INSPIRATIONS = 2
SYSTEM = "You are an expert in numerical optimization and write correct, complete Python modules."


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


def shown(entry, label):
    return "%s (score %.4f; idea: %s):\n```python\n%s```\n" % (
        label, entry["utility"], entry["idea"] or "-", entry["source"])


def improve(population, utility, llm, task):
    best = population.get(0)
    best_source, best_idea, best_fitness = best["source"], best["idea"], best["utility"]
    for _ in range(ROUNDS):
        parent = population.sample()
        others = [population.sample() for _ in range(N_INSPIRATIONS)]
        context = task + "\n\n" + shown(parent, "The parent") + "".join(
            shown(o, "An inspiration") for o in others)
        ask = context + "\nPropose %d totally different ideas that could beat the parent. Answer with a JSON list of %d one-sentence strings." % (N_IDEAS, N_IDEAS)
        try:  # a call past a limit raises: keep what was found
            ideas = ideas_of(llm.prompt(SYSTEM, ask, 1.0), N_IDEAS)
            messages = [context + "\nWrite a new solution built on this idea: " + idea for idea in ideas]
            answers = llm.prompt_batch(SYSTEM, messages, 1.0) if ideas else []
        except Exception:
            break
        for idea, answer in zip(ideas, answers):
            source = code_of(answer)
            if not source:
                continue
            try:
                fitness = utility(source, task)
            except Exception:
                return {"source": best_source, "idea": best_idea}
            if fitness > best_fitness:
                best_source, best_idea, best_fitness = source, idea, fitness
    return {"source": best_source, "idea": best_idea}
