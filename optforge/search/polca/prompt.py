"""POLCA's proposer prompt, in OptoPrimeV2 form (`AgentOpt/OpenTrace`
`opto/optimizers/optoprime_v2.py`), from the templates in `optforge/llm/prompts/polca/`.

The system message explains the sections and the output format; the user message is the problem
instance: `#Instruction`, `#Variables` (the rule source as the one variable, `rule`, with the rule
contract as its constraint), `#Feedback` (the candidate's rollouts on this minibatch: per (task,
seed) score and the evaluator's feedback, at whatever detail the evaluation was asked for) and
`#Context` (the summarizer's guidance; absent until there is a summary, as in OptoPrimeV2), then
"What are your suggestions on variable rule?". The answer is reasoning in `<reasoning>` (moved out
of the answer by `optforge.llm.parse.read_answer`) and the new rule in one ```python block, read by
`optforge.llm.parse.extract_rule` like every other strategy's answers.
"""

from __future__ import annotations

import string
from importlib import resources
from typing import Any, Sequence

from optforge.llm.measured import clip
from optforge.llm.prompts import PromptError, load_template, placeholders
from optforge.search.polca.memory import Candidate, Rollout
from optforge.types import CEILING, FLOOR

FEEDBACK_CHARS = 1500
"""Most characters of one rollout's feedback shown (measured spans are never cut; `llm.measured.clip`)."""


def load(name: str) -> str:
    """The text of template `name` in optforge/llm/prompts/polca/."""
    res = resources.files("optforge.llm").joinpath("prompts", "polca", f"{name}.txt")
    if not res.is_file():
        raise PromptError(f"no POLCA prompt template '{name}' in optforge/llm/prompts/polca/")
    return res.read_text(encoding="utf-8")


def render(name: str, **fields: Any) -> str:
    """Template `name` of polca/ with exactly the placeholders it uses (as `optforge.llm.prompts.render`)."""
    text = load(name)
    need = placeholders(text)
    missing, extra = sorted(need - set(fields)), sorted(set(fields) - need)
    if missing or extra:
        raise PromptError(f"POLCA template '{name}': missing field(s) {missing}, unused field(s) {extra}")
    return string.Template(text).substitute({k: str(v) for k, v in fields.items()})


def format_score(score: float | None) -> str:
    if score is None:
        return "unknown"
    text = f"{score:+.3f}"
    if score <= FLOOR:
        return text + " (the floor: a failure, or no progress)"
    if score >= CEILING:
        return text + " (the ceiling)"
    return text


def format_feedback(batch: Sequence[Rollout], candidate: Candidate | None = None) -> str:
    """The #Feedback section: the rollouts of one minibatch, and the candidate's mean over all its runs."""
    if not batch:
        return "(no runs on this minibatch)"
    known = [r.score for r in batch if r.score is not None]
    lines = []
    if known:
        lines.append(f"Mean score on this minibatch: {sum(known) / len(known):+.3f} over {len(known)} run(s).")
    if candidate is not None and candidate.mean is not None:
        lines.append(f"Mean score of this rule over all its runs so far: {candidate.mean:+.3f} over {candidate.n} run(s).")
    for r in batch:
        lines.append("")
        lines.append(f"## task {r.task}, seed {r.seed}: score {format_score(r.score)}")
        lines.append(clip(r.feedback.strip(), FEEDBACK_CHARS) if r.feedback.strip() else "(no feedback)")
    return "\n".join(lines).strip("\n")


def build_messages(*, source: str, feedback: str, context: str = "", contract: str | None = None) -> list[dict[str, str]]:
    """The chat messages of one proposal: `source` the rule to improve, `feedback` from `format_feedback`,
    `context` the summarizer's current summary ("" for none), `contract` the rule contract shown as
    the variable's constraint (default: the bundled `rule_contract` template)."""
    if contract is None:
        contract = load_template("rule_contract")
    system = render("system", output_format=load("output_format").strip())
    context_section = render("context", summary=context.strip()) if context.strip() else ""
    user = render("user", source=source.strip(), constraint=contract.strip(), feedback=feedback.strip(),
                  context=context_section)
    return [{"role": "system", "content": system.strip() + "\n"}, {"role": "user", "content": user.strip() + "\n"}]
