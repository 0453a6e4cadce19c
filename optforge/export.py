"""Turn a rule into one standalone module with a `torch.optim.Optimizer` subclass.

The exported file has no optforge import. It carries the runtime of `optforge.rule` (RuleOptimizer,
Ctx, role inference) rendered from this package's own source, so the optimizer a user drops into their
training code steps exactly like the one that was scored. The rule's literal UPPER_CASE constants become
checked constructor arguments; its functions are closed over them in a factory, so two instances with
different hyperparameters coexist.

A rule is exported only if it passes the static check the sandbox applies (`check_rule`: contract and
`RULE_POLICY`): the exported file runs on the user's machine with no sandbox at all. Task detection
flags (`optforge.rule_flags`) are written into the docstring.
"""

from __future__ import annotations

import ast
import inspect
import keyword
import math
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optforge import roles as roles_mod
from optforge import rule_hparams, rule_optimizer
from optforge.evaluators.scoring import format_score
from optforge.rule import RuleError, check_rule, literal_constants
from optforge.rule_flags import Flag, task_detection_flags

_RUNTIME = (
    RuleError,
    rule_optimizer._StepShared,
    rule_optimizer.Ctx,
    roles_mod.default_role,
    rule_optimizer.RuleOptimizer,
    rule_optimizer._real,
    rule_optimizer.check_lr,
    rule_optimizer._as_tuple,
    rule_optimizer._momentum_mirror,
    rule_optimizer._check_mirror,
    rule_optimizer._bad_delta,
    roles_mod._named_like_head,
    roles_mod._in_repeated_block,
    roles_mod.infer_roles,
    roles_mod.param_groups,
    rule_hparams.hparam_kind,
    rule_hparams.hparam_problem,
)


@dataclass
class ExportInfo:
    """Provenance and usage facts written into the exported docstring."""

    title: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)  # run, candidate, parents, strategy, suite...
    scores: dict[str, Any] = field(default_factory=dict)  # stage -> {"fitness", "fitness_hw", "tasks": {t: (score, hw)}}
    lr_by_family: dict[str, float] = field(default_factory=dict)
    weight_decay: float = 0.0
    wd_by_task: dict[str, float] = field(default_factory=dict)  # tuned on the held-out tasks (empty: not tuned)
    step_time_ratio: float | None = None
    state_bytes_per_param: float | None = None
    from_run: bool = False  # the facts above come from a run's evaluation of this rule (False: a file or seed)
    schedule: str = "linear warmup over 5% of the steps, then cosine decay to 10% of the peak lr"  # optforge's


def class_name_ok(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name) and name[0].isupper()


def _split_rule(source: str) -> tuple[str, list[str], dict[str, Any]]:
    """(docstring, body statements as source text, literal hyperparameters)."""
    tree = ast.parse(source)
    consts = literal_constants(source)
    doc = ast.get_docstring(tree) or ""
    lines = source.splitlines()
    body: list[str] = []
    for i, node in enumerate(tree.body):
        if i == 0 and isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant):
            continue  # module docstring
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue  # the exported module imports torch and math itself
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and getattr(node.targets[0], "id", None) in consts:
            continue  # becomes a factory argument
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) in consts:
            continue  # `BETA: float = 0.9` too: left in, it would shadow the argument
        start = node.lineno - 1
        if getattr(node, "decorator_list", None):
            start = node.decorator_list[0].lineno - 1
        body.append("\n".join(lines[start : node.end_lineno]))
    return doc, body, consts


def _doc_block(info: ExportInfo, rule_doc: str, class_name: str, hparams: dict[str, Any], flags: list[Flag]) -> str:
    out = [info.title or f"{class_name}: an optimizer exported by optforge."]
    if info.provenance:
        out.append("")
        out.append("Provenance:")
        out += [f"    {k}: {v}" for k, v in info.provenance.items()]
    if info.scores:
        out.append("")
        out.append("Scores (mean log2 speedup over tuned AdamW; 0 = as fast, 1 = twice as fast; ± a 95 % interval")
        out.append("from the seed noise of the references, measured in the baselines):")
        for stage, s in info.scores.items():
            tasks = s.get("tasks") or {}
            per = ", ".join(f"{t} {format_score(v, hw)}" for t, (v, hw) in tasks.items())
            fit = format_score(s.get("fitness", float("nan")), s.get("fitness_hw"), 3)
            out.append(f"    {stage}: {fit}" + (f"  ({per})" if per else ""))
    out.append("")
    out.append("How to use:")
    out.append(f"    opt = {class_name}(param_groups(model), total_steps=num_steps)")
    out.append("    param_groups(model) tags each tensor with a role (hidden_matrix, conv, embedding, head,")
    out.append("    vector, scalar); plain `model.parameters()` also works, but roles then come from shapes alone:")
    out.append("    every 2-D tensor is a hidden matrix, so a role-aware rule (Muon-like) treats the embedding and")
    out.append("    the output head as hidden layers. Schedulers that cycle momentum (OneCycleLR, CyclicLR) need")
    out.append("    cycle_momentum=False: the rule's constants fix it.")
    out.append(f"    Default lr: {hparams['LR']:g}.")
    if info.lr_by_family:
        fam = ", ".join(f"{k} {v:.3g}" for k, v in sorted(info.lr_by_family.items()))
        out.append(f"    Tuned lr per task family: {fam}.")
    out += _schedule_lines(info)
    own = [k for k in hparams if k.upper().startswith(("WD", "WEIGHT_DECAY"))]
    if own:
        # the rule's own decay and the outer weight_decay= add up: torch.optim.AdamW(weight_decay=x) is
        # wd=x here with weight_decay=0, not weight_decay=x (which decays twice)
        k = own[0]
        out.append(f"    This rule decays the weights itself: its {k.lower()}= (default {hparams[k]:g}) is the decoupled")
        out.append("    decay of its update, like torch.optim.AdamW's weight_decay. weight_decay= is a second, outer")
        out.append(f"    decay on top (p *= 1 - lr_t * weight_decay); for torch's weight_decay=x pass {k.lower()}=x and")
        out.append("    leave weight_decay at 0.")
    if info.wd_by_task:
        per = ", ".join(f"{t} {w:g}" for t, w in sorted(info.wd_by_task.items()))
        out.append(f"    Outer decoupled weight decay (p *= 1 - lr_t * weight_decay): default {info.weight_decay:g}, the value tuned")
        out.append(f"    on most held-out tasks ({per}).")
    elif info.from_run:
        out.append(f"    Outer decoupled weight decay it was evaluated with: weight_decay={info.weight_decay:g} (not tuned")
        out.append("    in this run).")
    else:
        out.append(f"    Outer decoupled weight decay (p *= 1 - lr_t * weight_decay): default {info.weight_decay:g}.")
    if info.step_time_ratio is not None:
        out.append(f"    Step time vs AdamW: {info.step_time_ratio:.2f}x.")
    if info.state_bytes_per_param is not None:
        out.append(f"    Optimizer state: {info.state_bytes_per_param:.1f} bytes per parameter (AdamW: 8).")
    if flags:
        out.append("")
        out.append("Task detection flagged (the rule compares set-up quantities with specific numbers, so it may")
        out.append("behave differently on optforge's scoring set-ups than on yours; check it on your own task):")
        out += [f"    {f}" for f in flags]
    if rule_doc:
        out.append("")
        out.append("The rule:")
        out += ["    " + ln if ln else "" for ln in rule_doc.splitlines()]
    return "\n".join(out).replace('"""', "'''").replace("\\", "\\\\")


def _schedule_lines(info: ExportInfo) -> list[str]:
    """What total_steps does (tells the rule the run's length) and what it does not (schedule the lr)."""
    if info.from_run:
        lines = [f"    Scored with the lr schedule: {info.schedule}.",
                 "    The optimizer applies no schedule itself; to train as it was scored, use a",
                 "    torch.optim.lr_scheduler."]
    else:
        lines = ["    The optimizer applies no lr schedule itself; use a torch.optim.lr_scheduler (optforge",
                 f"    scores rules with {info.schedule})."]
    return lines + ["    total_steps: the length of your run in steps, which the rule reads as ctx.T (None:",
                    "    unknown); it changes no lr."]


def render_module(source: str, class_name: str = "DiscoveredOptimizer", info: ExportInfo | None = None) -> str:
    """The text of a standalone module exporting `class_name` (a torch.optim.Optimizer).

    Raises RuleError naming the lines when `source` fails `check_rule`, ValueError for a bad class name.
    """
    problems = check_rule(source)
    if problems:
        raise RuleError(
            "cannot export this rule: it fails the static check the sandbox holds every rule to "
            "(rule contract and RULE_POLICY): " + "; ".join(map(str, problems))
        )
    if not class_name_ok(class_name):
        raise ValueError(f"--name {class_name!r} is not a usable class name; use CamelCase letters, e.g. MyOptimizer")
    info = info or ExportInfo()
    rule_doc, body, hparams = _split_rule(source)
    args = [k for k in hparams if k != "LR"]
    arg_names = {k: k.lower() for k in args}
    taken = {"params", "lr", "total_steps", "weight_decay", "self"}
    for k, a in arg_names.items():
        if a in taken or keyword.iskeyword(a):
            arg_names[k] = a + "_"
    factory_params = ", ".join(hparams)
    factory_body = textwrap.indent("\n\n".join(body), "    ")
    returns = "init, update, " + ("eval_point" if re.search(r"^def eval_point\(", "\n".join(body), re.M) else "None")

    sig = [f"        lr: float | torch.Tensor = {hparams['LR']!r},"]
    sig += [f"        {arg_names[k]}: {type(hparams[k]).__name__} = {hparams[k]!r}," for k in args]
    sig += ["        total_steps: int | None = None,", f"        weight_decay: float = {info.weight_decay!r},"]
    checks = "\n".join(f"        hp[{k!r}] = {arg_names[k]}" for k in args)
    if {"BETA1", "BETA2"} <= set(args) and "betas" not in arg_names.values():
        # torch.optim's spelling too (Adam, AdamW, Lion take betas=(b1, b2)); the param groups show it
        sig.append("        betas: tuple[float, float] | None = None,")
        b1, b2 = arg_names["BETA1"], arg_names["BETA2"]
        checks = f"        if betas is not None:\n            {b1}, {b2} = betas\n" + checks
    runtime = "\n\n\n".join(inspect.getsource(obj) for obj in _RUNTIME)
    runtime = runtime.replace("class RuleOptimizer(", "class _RuleOptimizer(")
    doc = _doc_block(info, rule_doc, class_name, hparams, task_detection_flags(source))
    return _TEMPLATE.format(
        doc=doc,
        class_name=class_name,
        roles=repr(roles_mod.ROLES),
        head_names=repr(roles_mod._HEAD_NAMES),
        mirrored=repr(rule_optimizer.MIRRORED),
        runtime=runtime,
        factory_params=factory_params,
        factory_body=factory_body,
        returns=returns,
        arg_map=repr({k: arg_names[k] for k in args}),
        signature="\n".join(sig),
        lr_const=repr(hparams["LR"]),
        hp_assign=checks,  # empty for a rule whose only constant is LR: a blank line
    )


_TEMPLATE = '''"""{doc}
"""
# Generated by `optforge export`. Standalone: needs only torch.

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

__all__ = ["{class_name}", "param_groups", "infer_roles"]

ROLES = {roles}
_HEAD_NAMES = {head_names}
MIRRORED = {mirrored}  # param group keys that show the rule's constants
_ARGS = {arg_map}  # rule constant -> constructor argument


{runtime}


def _make_rule({factory_params}):
    """The update rule, closed over its hyperparameters."""
{factory_body}

    return {returns}


@dataclass(frozen=True)
class _BoundRule:
    name: str
    hparams: Mapping[str, Any]
    init: Callable[..., dict]
    update: Callable[..., torch.Tensor]
    eval_point: Callable[..., torch.Tensor] | None

    @property
    def lr(self) -> float:
        return float(self.hparams["LR"])


class {class_name}(_RuleOptimizer):
    """See the module docstring. Param groups may carry `lr`, `role` and `weight_decay`."""

    def __init__(
        self,
        params: Iterable[Any],
{signature}
    ):
        hp = {{"LR": {lr_const}}}
{hp_assign}
        bad = [p for p in (hparam_problem(_ARGS.get(k, k), v) for k, v in hp.items()) if p]
        if bad:
            raise ValueError("Invalid hyperparameter(s) for {class_name}: " + "; ".join(bad))
        check_lr(lr)
        self.hparams = dict(hp)
        rule = _BoundRule("{class_name}", hp, *_make_rule(**hp))
        super().__init__(params, rule, lr=lr, total_steps=total_steps, weight_decay=weight_decay)
'''


# ---------------------------------------------------------------------------------------------
# from a run


def _family_lrs(metrics: dict[str, Any]) -> dict[str, float]:
    by_family: dict[str, list[float]] = {}
    for t in (metrics.get("tasks") or {}).values():
        if t.get("lr") and t.get("family"):
            by_family.setdefault(t["family"], []).append(float(t["lr"]))
    # geometric mean per family: lrs live on a log grid
    return {f: math.exp(sum(math.log(v) for v in vs) / len(vs)) for f, vs in by_family.items()}


def choose_best(store: Any, stage: str = "train") -> str | None:
    """The candidate a user wants by default: the best promoted one, else the best at `stage`.

    A simplified child (note `simplifies`: the id it simplifies) replaces its parent when it scores within the
    simplification tolerance (note `tolerance`) of it at `stage`.
    """
    promoted = {p.candidate_id for p in store.promotions() if p.passed and p.stage == "promoted"}
    ranked = [r for r in store.leaderboard(stage) if r.evaluation.ok]
    pool = [r for r in ranked if r.candidate.id in promoted] or ranked
    if not pool:
        return None
    best = pool[0]
    for r in ranked:
        note = r.candidate.note
        if note.get("simplifies") == best.candidate.id:
            tol = float(note.get("tolerance", 0.05))
            if r.evaluation.fitness >= best.evaluation.fitness - tol:
                return r.candidate.id
    return best.candidate.id


def export_info_from_run(store: Any, candidate_id: str) -> ExportInfo:
    """Provenance and measured usage facts of one stored candidate."""
    cand = store.candidate(candidate_id)
    train = store.evaluation(cand.id, "train")
    scores: dict[str, Any] = {}
    for stage in ("train", "train_fresh_seeds", "heldout"):
        ev = store.evaluation(cand.id, stage)
        if ev is not None and ev.ok:
            tasks = {t: (float(v.get("score", 0.0)), v.get("hw")) for t, v in (ev.metrics.get("tasks") or {}).items()}
            scores[stage] = {"fitness": ev.fitness, "fitness_hw": ev.metrics.get("fitness_hw"), "tasks": tasks}
    heldout = store.evaluation(cand.id, "heldout")
    tuned = heldout is not None and heldout.ok and bool(heldout.artifacts.get("wd_tuned"))
    wd_metrics = heldout.metrics if tuned else {}
    metrics = train.metrics if train is not None else {}
    suite = f"{train.suite}@{train.suite_version}" if train is not None else "?"
    return ExportInfo(
        title=f"Discovered by optforge ({cand.strategy or 'unknown'} strategy).",
        provenance={
            # absolute: the exported file is read from elsewhere, where a path relative to the caller means nothing
            "run": str(Path(store.run_dir).resolve()),
            "candidate": cand.id,
            "parents": ", ".join(cand.parents) or "none",
            "strategy": cand.strategy,
            "search suite": suite,
        },
        scores=scores,
        lr_by_family=_family_lrs(metrics),
        weight_decay=float(wd_metrics.get("weight_decay", 0.0) or 0.0),
        wd_by_task={t: float(v["weight_decay"]) for t, v in (wd_metrics.get("tasks") or {}).items()
                    if v.get("weight_decay") is not None},
        step_time_ratio=metrics.get("step_time_ratio"),
        state_bytes_per_param=metrics.get("state_bytes_per_param"),
        from_run=True,
    )
