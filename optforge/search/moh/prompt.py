"""The `task` text a procedure is handed (templates in optforge/llm/prompts/moh/).

MoH hands an optimizer the task's `function_format` (what a solution is) besides the task's name;
here both are one text, whose first line names the subtask (`subtask: NAME`) and whose rest says
what a solution is: a rule (`rule_task`, with the rule contract) or, at the meta level, a procedure
(`procedure_task`, with the procedure contract and its limits). A procedure passes the text (or the
bare name) back as `utility`'s subtask.
"""

from __future__ import annotations

from typing import Iterable

from optforge.llm.prompts import load_template, render
from optforge.search.moh.subtasks import Subtask

META_TASK = "procedures"
"""The name of the meta level's task: solutions are procedures, their utility the meta-utility."""


def rule_task(subtask: Subtask) -> str:
    """The task text of an inner run on `subtask`."""
    return render("moh/rule_task", subtask=subtask.name, tasks=", ".join(subtask.tasks),
                  contract=load_template("rule_contract").strip()).strip() + "\n"


def procedure_task(subtasks: Iterable[Subtask], *, cpu_s: float, max_calls: int, llm_calls: int, evals: int) -> str:
    """The task text of a meta-level run: write a procedure, scored on `subtasks` within these limits."""
    subtasks = tuple(subtasks)
    return render("moh/procedure_task", subtask=META_TASK, subtasks=", ".join(s.name for s in subtasks),
                  weights=", ".join(f"{s.weight:g}" for s in subtasks), cpu_s=f"{cpu_s:g}", max_calls=max_calls,
                  llm_calls=llm_calls, evals=evals).strip() + "\n"

