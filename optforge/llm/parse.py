"""The answer reader: turn an LLM response into rule source the way a careful human reads it.

Two layers, so that every LLM strategy reads answers the same way:

- `read_answer(content, finish_reason, reasoning)` -> `Answer`: the final answer text, with line
  endings and encodings normalised and reasoning blocks (`<think>...</think>` and its kin, or a
  gpt-oss "analysis" channel) moved out into `Answer.reasoning`. Only `Answer.text` is ever read
  for code: drafts the model wrote while thinking are not its answer.
- `extract_rule(answer, parent)` -> `Parsed`: the rule in the answer, as SEARCH/REPLACE diffs
  applied to `parent` or as a full rewrite (any fence and info string, code wrapped in JSON, or
  bare code). Of several code blocks, the last complete one that passes the rule check wins.

Anything unusable becomes a reason, never an exception: a bad answer ends as an `invalid`
candidate whose reason is the next prompt's feedback, so each reason says what was wrong with
*this* answer and what to do. A truncated answer (finish_reason "length") is always rejected,
with a reason naming `llm.max_tokens`: a rule cut short can still parse as a different rule.

The SEARCH/REPLACE diff format and its application are in `optforge.llm.diffs`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterator

from optforge.llm.diffs import SEARCH_LINE, DiffError, apply_diffs, diff_blocks, malformed_diff
from optforge.rule_check import check_rule
from optforge.source_text import normalise_text

# finish_reason as providers spell it -> the OpenAI word. litellm maps most providers already
# (Anthropic "max_tokens", Gemini "MAX_TOKENS"); raw servers and old recordings may not.
_FINISH = {"max_tokens": "length", "max_output_tokens": "length", "model_length": "length",
           "end_turn": "stop", "stop_sequence": "stop", "eos": "stop", "eos_token": "stop", "finished": "stop",
           "tool_use": "tool_calls", "function_call": "tool_calls", "safety": "content_filter"}

# reasoning blocks in the content: DeepSeek-R1, QwQ, Qwen3 (<think>), prompted models (<thinking>,
# <reasoning>). A closing tag with no opening one means the chat template put the opening tag in
# the prompt (vLLM / llama.cpp without a reasoning parser): everything before it is reasoning.
_REASONING_TAG = re.compile(r"<(/?)(think|thinking|reasoning)\b[^>]*>", re.IGNORECASE)
# gpt-oss "harmony" channels left in the content by a server without a reasoning parser
_HARMONY_FINAL = re.compile(r"<\|channel\|>\s*final\s*<\|message\|>")
_HARMONY_TOKEN = re.compile(r"<\|(?:start|end|return|channel|message|call)\|>")

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_LANG = re.compile(r"^[{.\s]*([A-Za-z0-9_+#-]*)")
_PYTHON_LANGS = {"", "python", "py", "python3", "py3", "ipython", "python-repl"}
_DEFINES_UPDATE = re.compile(r"^[ \t]*def[ \t]+update[ \t]*\(", re.MULTILINE)
_CODE_START = re.compile(r'^(?:import |from \w|"""|\'\'\'|#|def |@|[A-Z_][A-Z0-9_]*\s*[:=])', re.MULTILINE)
_UNIFIED_DIFF = re.compile(r"^(?:@@ .* @@|--- \S.*\n\+\+\+ \S)", re.MULTILINE)


# ------------------------------------------------------------------------------------- the answer


@dataclass(frozen=True)
class Answer:
    """What the model answered, read: `text` is the final answer (normalised, reasoning removed)."""

    text: str
    finish_reason: str = ""  # "stop", "length", "content_filter", "tool_calls", ... ("" when unknown)
    reasoning: str = ""  # the provider's reasoning field and the content's reasoning blocks, in order
    unclosed_reasoning: bool = False  # the content ended inside a reasoning block

    @property
    def truncated(self) -> bool:
        """The provider stopped at the token limit: the answer is not what the model meant to say."""
        return self.finish_reason == "length"


def normalise_finish_reason(value: Any) -> str:
    """A provider's finish reason in OpenAI's words ("length" for every token-limit stop); "" if unknown."""
    if value is None:
        return ""
    word = str(getattr(value, "value", value)).strip().lower()
    return _FINISH.get(word, word)


def read_answer(content: str | bytes | None, finish_reason: Any = None, reasoning: str | None = None) -> Answer:
    """Read one completion: normalise text and line endings, and split off reasoning.

    `content` is the message content (bytes are decoded by their byte-order mark, else as UTF-8);
    `reasoning` a separate reasoning field some providers return (`reasoning_content`).
    """
    text = normalise_text(content or "")
    parts = [normalise_text(reasoning).strip()] if reasoning else []
    final = _HARMONY_FINAL.split(text)
    if len(final) > 1:  # gpt-oss: everything before the last "final" channel is analysis
        parts.append(_HARMONY_TOKEN.sub("\n", "".join(final[:-1])).strip())
        text = _HARMONY_TOKEN.sub("", final[-1])
    answer, thought, unclosed = _split_reasoning(text)
    parts.extend(thought)
    return Answer(answer.strip("\n").rstrip() + "\n" if answer.strip() else "", normalise_finish_reason(finish_reason),
                  "\n\n".join(p for p in parts if p), unclosed)


def _split_reasoning(text: str) -> tuple[str, list[str], bool]:
    """(answer, reasoning parts, ended inside a block) for text with <think>-style blocks."""
    answer: list[str] = []
    thought: list[str] = []
    depth, at, opened_at = 0, 0, 0
    for m in _REASONING_TAG.finditer(text):
        closing = m.group(1) == "/"
        if not closing:
            if depth == 0:
                answer.append(text[at:m.start()])
                opened_at = m.end()
            depth += 1
        elif depth > 0:
            depth -= 1
            if depth == 0:
                thought.append(text[opened_at:m.start()].strip())
        else:  # a closing tag with no opening one: the opening tag was in the prompt
            thought.extend(a.strip() for a in answer + [text[at:m.start()]] if a.strip())
            answer = []
        at = m.end() if depth == 0 else at
    if depth > 0:
        thought.append(text[opened_at:].strip())
        return "".join(answer), thought, True
    answer.append(text[at:])
    return "".join(answer), thought, False


# ----------------------------------------------------------------------------------- code blocks


@dataclass(frozen=True)
class Block:
    """One fenced code block (CommonMark fences: ``` or ~~~, any info string)."""

    lang: str  # first word of the info string, lower case ("" when none)
    info: str  # the whole info string, e.g. 'python title="rule.py"'
    code: str  # the content, de-indented by the fence's indentation, ending in "\n"
    closed: bool  # False when the text ended inside the block


def fenced_blocks(text: str) -> list[Block]:
    """Every fenced code block of a (normalised) text, in order; an unclosed last one is included."""
    blocks: list[Block] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        fence = m.group("fence") if m else ""
        if not m or (fence[0] == "`" and "`" in m.group("info")):  # ```x``` on one line is inline code
            i += 1
            continue
        indent, info = len(m.group("indent")), m.group("info").strip()
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        i += 1
        while i < len(lines) and not close.match(lines[i]):
            body.append(_dedent(lines[i], indent))
            i += 1
        closed = i < len(lines)
        i += 1
        code = "\n".join(body).strip("\n")
        blocks.append(Block(_LANG.match(info).group(1).lower(), info, code + "\n" if code else "", closed))
    return blocks


def code_blocks(text: str) -> list[str]:
    """The contents of the fenced blocks that may hold Python (python, py, no language, ...)."""
    return [b.code for b in fenced_blocks(text) if b.lang in _PYTHON_LANGS]


def _dedent(line: str, n: int) -> str:
    k = 0
    while k < n and k < len(line) and line[k] in " \t":
        k += 1
    return line[k:]


def json_strings(text: str) -> list[str]:
    """The string values (at any depth) of `text` read as one JSON document; [] when it is not JSON."""
    text = text.strip()
    if not text or text[0] not in "{[\"":
        return []
    try:
        data = json.loads(text)
    except ValueError:
        return []
    return list(_strings(data))


def _strings(data: Any) -> Iterator[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for v in data.values():
            yield from _strings(v)
    elif isinstance(data, list):
        for v in data:
            yield from _strings(v)


# ------------------------------------------------------------------------------------- the rule


@dataclass(frozen=True)
class Parsed:
    """The rule read from one answer. `reason` is empty when `source` is a checked rule."""

    source: str | None
    kind: str  # "diff" | "full" | "none"
    reason: str = ""
    answer: Answer | None = None

    @property
    def ok(self) -> bool:
        return self.source is not None and not self.reason


def parse_response(content: str | bytes | None, parent: str | None = None, *, finish_reason: Any = None,
                   reasoning: str | None = None, max_tokens: int | None = None) -> Parsed:
    """Read a completion (`read_answer`) and extract the rule from it (`extract_rule`)."""
    return extract_rule(read_answer(content, finish_reason, reasoning), parent, max_tokens=max_tokens)


def extract_rule(answer: Answer, parent: str | None = None, *, max_tokens: int | None = None) -> Parsed:
    """The checked rule in `answer`, or the reason there is none.

    SEARCH/REPLACE blocks are applied to `parent` when present; otherwise the last complete code
    block that defines `update` and passes the rule check is taken as a full rewrite (weak models
    often answer a diff prompt that way). `max_tokens` is only quoted in the truncation reason.
    """
    def no(kind: str, reason: str) -> Parsed:
        return Parsed(None, kind, reason, answer)

    text = answer.text
    if answer.truncated:
        limit = f"llm.max_tokens={max_tokens}" if max_tokens else "llm.max_tokens"
        where = " inside its reasoning" if answer.unclosed_reasoning else ""
        return no("none", f"truncated answer: the model hit the output limit ({limit}, finish_reason 'length')"
                          f"{where} before it finished, so the rule may be incomplete; give a shorter answer "
                          f"(a SEARCH/REPLACE diff, no commentary), or raise {limit.split('=')[0]}")
    if answer.finish_reason == "content_filter":
        return no("none", "the provider's content filter stopped the answer (finish_reason 'content_filter'); "
                          "the rule in it may be incomplete")
    if not text.strip():
        if answer.unclosed_reasoning:
            return no("none", "the answer ended inside an unclosed <think> block, so there is no final answer; "
                              "close the reasoning with </think> and give the code after it")
        if answer.reasoning:
            return no("none", "the answer after the reasoning is empty; give the code after </think>, "
                              "not inside the reasoning")
        return no("none", "empty completion: the model returned no text")

    diffs = diff_blocks(text)
    malformed = malformed_diff(text, len(diffs))
    if diffs and not malformed:
        if parent is None:
            return no("diff", "the answer is a SEARCH/REPLACE diff but there is no parent to apply it to")
        try:
            source = apply_diffs(parent, diffs)
        except DiffError as e:
            return no("diff", f"failed diff: {e}")
        return _checked(source, "diff", parent, answer)

    candidates = _full_rewrites(text, answer.finish_reason)
    if candidates:
        return _best_rewrite(candidates, parent, answer)
    if malformed:
        return no("diff", malformed)
    return no("none", _no_code_reason(text, answer))


def _checked(source: str, kind: str, parent: str | None, answer: Answer) -> Parsed:
    if parent is not None and source.strip() == parent.strip():
        return Parsed(source, kind, "no change: the result is identical to the parent", answer)
    problems = check_rule(source)
    if problems:
        return Parsed(source, kind, "rule check failed: " + "; ".join(str(p) for p in problems[:5]), answer)
    return Parsed(source, kind, "", answer)


def _full_rewrites(text: str, finish_reason: str) -> list[tuple[str, bool]]:
    """(source, complete) for every piece of the answer that may be a whole rule, in answer order."""
    blocks = fenced_blocks(text)
    found: list[tuple[str, bool]] = []
    for b in blocks:
        # an unclosed last block is complete when the model stopped on its own (it often omits the fence)
        complete = b.closed or finish_reason == "stop"
        pieces = _json_code(b.code) if b.lang == "json" or b.code.lstrip().startswith("{") else []
        for piece in pieces or [b.code]:
            if _DEFINES_UPDATE.search(piece):
                found.append((piece, complete))
    if found or blocks:
        return found
    found = [(piece, True) for piece in _json_code(text) if _DEFINES_UPDATE.search(piece)]  # {"code": "..."}
    if not found and _DEFINES_UPDATE.search(text):  # bare code, perhaps after a line of prose
        start = _CODE_START.search(text)
        found.append((text[start.start() if start else 0:].strip("\n") + "\n", True))
    return found


def _json_code(text: str) -> list[str]:
    """Code held in the string values of a JSON document (itself fenced, sometimes)."""
    out = []
    for piece in json_strings(text):
        piece = normalise_text(piece)
        inner = [b.code for b in fenced_blocks(piece)]
        out.extend(inner or [piece.strip("\n") + "\n"])
    return out


def _best_rewrite(candidates: list[tuple[str, bool]], parent: str | None, answer: Answer) -> Parsed:
    """The last complete candidate that passes the check; else the last candidate's reason."""
    ordered = [c for c in candidates if c[1]][::-1] + [c for c in candidates if not c[1]][::-1]
    results = [_checked(source, "full", parent, answer) for source, _ in ordered]
    for r in results:
        if r.ok:
            return r
    first = results[0]
    if len(results) == 1:
        return first
    return Parsed(first.source, "full", f"none of the {len(results)} code blocks defining update() is usable; "
                                        f"the last one: {first.reason}", answer)


def _no_code_reason(text: str, answer: Answer) -> str:
    blocks = fenced_blocks(text)
    if _UNIFIED_DIFF.search(text) or any(b.lang in ("diff", "patch", "udiff") for b in blocks):
        return ("the answer has a unified diff (---/+++/@@ lines), which is not applied; give SEARCH/REPLACE "
                "blocks or the whole rule in one ```python block")
    if any(b.lang in _PYTHON_LANGS for b in blocks):
        reason = ("the answer's code block(s) do not define update(p, g, state, ctx); give the whole rule "
                  "(LR, init, update) in one ```python block, or SEARCH/REPLACE blocks")
    else:
        reason = "no code block defining update() and no SEARCH/REPLACE diff in the answer"
    if _DEFINES_UPDATE.search(answer.reasoning) or SEARCH_LINE.search(answer.reasoning):
        reason += " (code inside the <think> reasoning is a draft and is not read; put the final code after it)"
    return reason
