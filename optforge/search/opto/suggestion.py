"""The OptoPrime answer: new values for the variables, "no change", or the reason it is unusable.

OptoPrime asks for JSON, `{"reasoning": ..., "answer": ..., "suggestion": {variable: value}}`, and
reads `TERMINATE` as "no change" (Cheng, Nie, Swaminathan, NeurIPS 2024, arXiv 2406.16218;
`opto/optimizers/optoprime.py`); OptoPrimeV2 answers in XML, one `<variable><name>..</name>
<value>..</value></variable>` per changed variable (`opto/optimizers/optoprime_v2.py`). This reader
takes both, on top of the one answer reader (`optforge.llm.parse.read_answer`: reasoning blocks
moved out, text normalised, the finish reason in OpenAI's words):

- JSON, bare or in a fenced block (the last parseable one), or the outermost `{...}` of the answer;
  raw line breaks inside a string (a code value written out) are accepted;
- XML `<variable>` entries;
- a code variable's value may itself sit in a fenced block, which is unwrapped;
- no suggestion but `TERMINATE` in the answer, or an empty suggestion: no change. (OptoPrime stops
  on `TERMINATE` anywhere in the response; here a suggestion the model did write is not thrown
  away for the word appearing in its reasoning.)

A truncated answer (finish_reason "length"), one with no suggestion, a suggestion for an unknown
variable and a constant that does not cast are `invalid` with the reason, which the strategy feeds
back once as the next prompt's feedback; nothing here retries.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from optforge.llm.parse import Answer, fenced_blocks, read_answer
from optforge.search.opto.variables import CODE, Applied, apply_suggestion

UPDATE, NO_CHANGE, INVALID = "update", "no_change", "invalid"

_XML_VARIABLE = re.compile(r"<variable>\s*<name>\s*(.*?)\s*</name>\s*<value>(.*?)</value>\s*</variable>", re.DOTALL)
_TERMINATE = re.compile(r"\bTERMINATE\b")


@dataclass(frozen=True)
class Outcome:
    """What one answer does: `kind` "update" (with `applied`, the checked new rule and its change
    record), "no_change", or "invalid" (with `reason`). `values` are the suggested raw values."""

    kind: str
    values: Mapping[str, Any] = field(default_factory=dict)
    applied: Applied | None = None
    reason: str = ""

    @property
    def source(self) -> str | None:
        return self.applied.source if self.applied is not None else None


def read_suggestion(answer: Answer) -> tuple[dict[str, Any] | None, str]:
    """The suggestion in an answer's text: ({variable: value}, "") or (None, why there is none)."""
    text = answer.text
    found = _json_suggestion(text)
    if found is None:
        xml = _XML_VARIABLE.findall(text)
        found = {name.strip(): value.strip("\n") for name, value in xml} if xml else None
    if found is None:
        if _TERMINATE.search(text):
            return {}, ""
        return None, ('no suggestion in the answer: give JSON {"reasoning": ..., "suggestion": {"<variable>": '
                      '<value>, ...}}, or TERMINATE for no change')
    return {k: _unfence(v) if k == CODE else v for k, v in found.items()}, ""


def parse_suggestion(content: str | bytes | None, source: str, *, split_constants: bool = False,
                     finish_reason: Any = None, reasoning: str | None = None,
                     max_tokens: int | None = None) -> Outcome:
    """Read one OptoPrime completion for the rule `source` and project its suggestion onto it
    (`variables.apply_suggestion`). `max_tokens` is only quoted in the truncation reason."""
    answer = read_answer(content, finish_reason, reasoning)
    if answer.truncated:
        limit = f"llm.max_tokens={max_tokens}" if max_tokens else "llm.max_tokens"
        return Outcome(INVALID, reason=f"truncated answer: the model hit the output limit ({limit}, finish_reason "
                                       f"'length') before it finished, so its suggestion may be incomplete; give a "
                                       f"shorter answer (less reasoning), or raise llm.max_tokens")
    if answer.finish_reason == "content_filter":
        return Outcome(INVALID, reason="the provider's content filter stopped the answer (finish_reason "
                                       "'content_filter'); its suggestion may be incomplete")
    values, why = read_suggestion(answer)
    if values is None:
        return Outcome(INVALID, reason=why)
    if not values:
        return Outcome(NO_CHANGE)
    applied = apply_suggestion(source, values, split_constants)
    if not applied.ok:
        return Outcome(INVALID, values, applied, applied.reason)
    if not applied.changed:
        return Outcome(NO_CHANGE, values, applied)
    return Outcome(UPDATE, values, applied)


def _json_suggestion(text: str) -> dict[str, Any] | None:
    """The "suggestion" mapping of the last JSON document in the answer that has one."""
    fenced = [b.code for b in fenced_blocks(text) if b.lang in ("json", "") or b.code.lstrip().startswith("{")]
    start, end = text.find("{"), text.rfind("}")
    pieces = fenced[::-1] + [text] + ([text[start:end + 1]] if 0 <= start < end else [])
    for piece in pieces:
        data = _loads(piece)
        if isinstance(data, dict) and isinstance(data.get("suggestion"), dict):
            return {str(k): v for k, v in data["suggestion"].items()}
    return None


def _loads(text: str) -> Any:
    try:
        # strict=False: models often write a code value with raw line breaks inside the JSON string
        return json.loads(text, strict=False)
    except ValueError:
        return None


def _unfence(value: Any) -> Any:
    """A code value given as a fenced block, unwrapped (the last block)."""
    if not isinstance(value, str):
        return value
    blocks = [b.code for b in fenced_blocks(value)]
    return blocks[-1] if blocks else value
