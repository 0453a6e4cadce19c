"""`RuleOptimizer`: a loaded rule run as a `torch.optim.Optimizer`, the one code path the evaluator, the
seed tests and exports share (`optforge.export` renders this module's runtime into exported files), with
the per-tensor `Ctx` a rule sees."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import torch

from optforge.roles import ROLES, default_role
from optforge.rule_check import RuleError

if TYPE_CHECKING:
    from optforge.rule import Rule


class _StepShared:
    """Per-step values shared by every tensor's ctx; the global grad norm is computed on first use."""

    __slots__ = ("_params", "_norm")

    def __init__(self, params: list[torch.Tensor]):
        self._params = params
        self._norm: float | None = None

    def grad_norm(self) -> float:
        if self._norm is None:
            total = 0.0
            for p in self._params:
                total += float(_real(p.grad).detach().double().pow(2).sum())
            self._norm = math.sqrt(total)
        return self._norm


@dataclass(frozen=True)
class Ctx:
    """What a rule sees besides p, g and its state. Never the task's name or data."""

    lr: float
    t: int
    T: int | None
    role: str
    shape: tuple[int, ...]
    _shared: _StepShared | None = field(default=None, repr=False, compare=False)

    @property
    def grad_norm(self) -> float:
        """Global gradient norm over every parameter with a gradient this step."""
        return self._shared.grad_norm() if self._shared is not None else 0.0


class RuleOptimizer(torch.optim.Optimizer):
    """A `torch.optim.Optimizer` that runs a rule. `lr=None` means the rule's `LR`.

    It keeps torch.optim's contract for every parameter torch.optim accepts:

    - Param groups carry their own `lr` (a number or a one-element tensor; torch schedulers work), an
      optional `role`, and an optional `weight_decay`: decoupled decay p *= 1 - lr * wd applied before
      the rule, outside it, so that every rule gets the same decay. Groups may be added at any time
      (`add_param_group`), and are checked there.
    - `ctx.t` counts the tensor's own updates (state `"_step"`), as torch counts steps per parameter:
      a tensor whose grad is None is not stepped and its count does not move.
    - Zero-element tensors are skipped (no state, no update), as torch.optim.Adam makes them a no-op.
    - `load_state_dict` moves each state tensor to the dtype and device the rule's `init` gives for
      the parameter now (an fp32 checkpoint into a bf16 model and the reverse).
    - Groups show the rule's public hyperparameters only: `lr`, `weight_decay`, `role`, and, when the
      rule has them, its `BETA1`/`BETA2` as `betas` and its `MOMENTUM` (else `BETA`) as `momentum`,
      so that schedulers which cycle momentum (OneCycleLR, CyclicLR) can be constructed; the rule's
      constants cannot follow them, so `step()` raises ValueError once they have changed. A rule
      with neither has no such key, and those schedulers refuse it unless `cycle_momentum=False`.
    - A complex parameter reaches the rule as its real view (`torch.view_as_real`, shape (..., 2)),
      as torch.optim steps complex parameters.
    - A rule's error names the parameter it failed on (an exception note).

    `train()` and `eval()` swap in the rule's `eval_point` weights.
    """

    def __init__(
        self,
        params: Iterable[Any],
        rule: Rule,
        lr: float | torch.Tensor | None = None,
        total_steps: int | None = None,
        weight_decay: float = 0.0,
    ):
        lr = rule.lr if lr is None else lr
        check_lr(lr, allow_zero=True)
        if total_steps is not None and total_steps < 1:
            raise ValueError(f"Invalid total_steps: {total_steps!r}; use a positive int or None")
        if not isinstance(weight_decay, (int, float)) or not math.isfinite(weight_decay) or weight_decay < 0:
            raise ValueError(f"Invalid weight_decay: {weight_decay!r}; use a finite number >= 0")
        self.rule = rule
        self.total_steps = total_steps
        defaults = {"lr": lr if isinstance(lr, torch.Tensor) else float(lr), "role": None,
                    "weight_decay": float(weight_decay)}
        # what the groups show of the rule's constants, kept here to tell a scheduler's change from them
        self._mirror = _momentum_mirror(getattr(rule, "hparams", None) or {})
        defaults.update(self._mirror)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's `add_param_group`, plus the group's role check and this optimizer's bookkeeping
        (eval mode follows the other groups). Called by the constructor for every initial group."""
        role = param_group.get("role")
        if role is not None and role not in ROLES:
            raise ValueError(f"Invalid role {role!r} in a param group; use one of {', '.join(ROLES)}")
        if "lr" in param_group:
            check_lr(param_group["lr"], allow_zero=True)
        for key in MIRRORED:
            if key not in param_group:
                continue
            if key not in self._mirror:
                raise ValueError(
                    f"param group {key}={param_group[key]!r}: rule '{self.rule.name}' has no {key} constant, "
                    f"so it would ignore this; leave {key} out of the group"
                )
            value = self._mirror[key]
            if tuple(_as_tuple(param_group[key])) != tuple(_as_tuple(value)):
                raise ValueError(
                    f"param group {key}={param_group[key]!r}: rule '{self.rule.name}' takes {key} from its "
                    f"constants ({value!r}); set them on the optimizer's constructor instead"
                )
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["eval_mode"] = any(g.get("eval_mode", False) for g in self.param_groups[:-1])

    def _ctx(self, group: dict, p: torch.Tensor, shared: _StepShared | None, t: int) -> Ctx:
        return Ctx(
            lr=float(group["lr"]),
            t=t,
            T=self.total_steps,
            role=group["role"] or default_role(_real(p)),
            shape=tuple(_real(p).shape),
            _shared=shared,
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        rule = self.rule
        with_grad = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        shared = _StepShared(with_grad)
        todo = []  # (group index, param index, group, p, ctx) of every tensor this step updates
        for gi, group in enumerate(self.param_groups):
            if group["eval_mode"]:
                raise RuntimeError("step() was called in eval mode; call optimizer.train() before training")
            _check_mirror(group, gi, self._mirror)
            for pi, p in enumerate(group["params"]):
                if p.grad is None or p.numel() == 0:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(
                        f"RuleOptimizer does not support sparse gradients (param {pi} of group {gi}, "
                        f"shape {tuple(p.shape)}); use a dense gradient (e.g. nn.Embedding(sparse=False))"
                    )
                t = self.state[p].get("_step", 0) + 1
                todo.append((gi, pi, group, p, self._ctx(group, p, shared, t)))
        fresh = [w for w in todo if "_step" not in self.state[w[3]]]
        inits = self._call("init", [(_real(p), ctx) for _, _, _, p, ctx in fresh], [w[:2] for w in fresh]) if fresh else []
        for (gi, pi, _, p, _), init in zip(fresh, inits):
            if not isinstance(init, dict):
                raise RuleError(
                    f"rule '{rule.name}': init must return a dict, got {type(init).__name__} "
                    f"(param {pi} of group {gi}, shape {tuple(p.shape)})"
                )
            self.state[p].update(init)
        for _, _, group, p, ctx in todo:
            self.state[p]["_step"] = ctx.t
            if group["weight_decay"]:
                # decoupled decay outside the rule, the same for every rule (held-out wd grid)
                p.mul_(1 - ctx.lr * group["weight_decay"])
        args = [(_real(p), _real(p.grad), self.state[p], ctx) for _, _, _, p, ctx in todo]
        deltas = self._call("update", args, [w[:2] for w in todo])
        for (gi, pi, _, _, _), (p, *_), delta in zip(todo, args, deltas):
            if (
                type(delta) is not torch.Tensor
                or delta.shape != p.shape
                or delta.dtype != p.dtype
                or delta.device != p.device
            ):
                raise RuleError(_bad_delta(rule, delta, p, gi, pi))
            p.add_(delta)
        return loss

    def _call(self, op: str, args: list[tuple], where: list[tuple[int, int]] | None = None) -> list[Any]:
        """The rule's `op` ("init", "update", "eval_point") on each tensor's arguments, in order.

        A rule that runs in another process (it has `batch`) gets every tensor in one round trip.
        In process, an exception from the rule gets a note naming the parameter (`where`: the
        (group index, param index) of each argument tuple).
        """
        batch = getattr(self.rule, "batch", None)
        if batch is not None:
            return batch(op, args)
        fn = getattr(self.rule, op)
        out = []
        for k, a in enumerate(args):
            try:
                out.append(fn(*a))
            except Exception as e:
                if where is not None:
                    gi, pi = where[k]
                    p = a[0]
                    e.add_note(
                        f"rule '{self.rule.name}': {op} failed for param {pi} of group {gi} "
                        f"(shape {tuple(p.shape)}, {p.dtype}, {p.device}, role {a[-1].role})"
                    )
                raise
        return out

    def _swap(self, to_eval: bool) -> None:
        rule = self.rule
        todo = []
        for gi, group in enumerate(self.param_groups):
            if group["eval_mode"] == to_eval:
                continue
            group["eval_mode"] = to_eval
            if rule.eval_point is None:
                continue
            for pi, p in enumerate(group["params"]):
                state = self.state.get(p)
                if not state or "_step" not in state:
                    continue
                if to_eval:
                    state["_train_point"] = p.detach().clone()
                    todo.append((gi, pi, _real(p), state, self._ctx(group, p, None, state["_step"])))
                else:
                    p.copy_(state.pop("_train_point"))
        points = self._call("eval_point", [(p, state, ctx) for _, _, p, state, ctx in todo], [w[:2] for w in todo]) if todo else []
        for (gi, pi, p, _, _), point in zip(todo, points):
            if (
                type(point) is not torch.Tensor
                or point.shape != p.shape
                or point.dtype != p.dtype
                or point.device != p.device
            ):
                raise RuleError(_bad_delta(rule, point, p, gi, pi, "eval_point"))
            p.copy_(point)

    @torch.no_grad()
    def eval(self) -> None:
        """Swap in the rule's evaluation weights (schedule-free, averaging); no-op for other rules."""
        self._swap(True)

    @torch.no_grad()
    def train(self) -> None:
        """Restore the training weights after `eval()`."""
        self._swap(False)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's `load_state_dict`, then each state tensor goes to the dtype and device that the
        rule's `init` gives for the parameter as it is now (torch itself would cast every floating
        tensor to the parameter's dtype, which is wrong for a rule that keeps e.g. fp32 state for
        bf16 weights). A checkpoint without per-tensor counts (`"_step"`; written before they
        existed) takes its group's `step`."""
        group_steps = [g.get("step") for g in state_dict["param_groups"]]
        super().load_state_dict(state_dict)
        init = getattr(self.rule, "init", None)
        with torch.no_grad():
            for gi, group in enumerate(self.param_groups):
                old_step = group.pop("step", None) if gi < len(group_steps) else None
                # the rule's constants, not the checkpoint's, decide betas/momentum (see _check_mirror);
                # a checkpoint from before they were kept off the groups also carries "_mirror"
                for key in ("_mirror", *MIRRORED):
                    group.pop(key, None)
                group.update(self._mirror)
                for p in group["params"]:
                    st = self.state.get(p)
                    if not st:
                        continue
                    if "_step" not in st:
                        if old_step is None:
                            continue
                        st["_step"] = int(old_step)
                    if init is None:
                        continue  # a remote rule's state lives in its own process
                    like = init(_real(p), self._ctx(group, p, None, st["_step"]))
                    for key, want in like.items():
                        have = st.get(key)
                        if isinstance(want, torch.Tensor) and isinstance(have, torch.Tensor):
                            st[key] = have.to(device=want.device, dtype=want.dtype)
                    if "_train_point" in st:
                        st["_train_point"] = st["_train_point"].to(device=p.device, dtype=p.dtype)


def _real(t: torch.Tensor) -> torch.Tensor:
    """A complex tensor as the real view a rule sees (shape (..., 2)), as torch.optim steps complex
    parameters; a real tensor itself."""
    return torch.view_as_real(t) if t.is_complex() else t


def check_lr(lr: Any, allow_zero: bool = False) -> None:
    """Raise ValueError unless `lr` is a finite number (or one-element tensor) > 0 (>= 0 with
    `allow_zero`, as a scheduler may reach 0)."""
    if isinstance(lr, torch.Tensor):
        if lr.numel() != 1:
            raise ValueError(f"Invalid learning rate: a tensor lr must have one element, got shape {tuple(lr.shape)}")
        value = float(lr)
    elif isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise ValueError(f"Invalid learning rate: {lr!r}; use a finite number or a one-element tensor")
    else:
        value = float(lr)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"Invalid learning rate: {lr!r}; use a finite number {'>=' if allow_zero else '>'} 0")


def _as_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


MIRRORED = ("betas", "momentum")
"""The param group keys that show a rule's constants (`_momentum_mirror`)."""


def _momentum_mirror(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The `betas` and `momentum` a param group shows for a rule's constants: `betas` = (BETA1, BETA2)
    when the rule has BETA1 (BETA2 defaulting to 0.999), `momentum` = MOMENTUM (else BETA) when it has
    either; nothing for a rule with none of them (a `momentum` of 0.0 would claim a constant it lacks)."""

    def num(name: str) -> float | None:
        v = hparams.get(name)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    out: dict[str, Any] = {}
    if num("BETA1") is not None:
        out["betas"] = (num("BETA1"), num("BETA2") if num("BETA2") is not None else 0.999)
    momentum = num("MOMENTUM") if num("MOMENTUM") is not None else num("BETA")
    if momentum is not None:
        out["momentum"] = momentum
    return out


def _check_mirror(group: dict, gi: int, mirror: Mapping[str, Any]) -> None:
    """Raise ValueError if group `gi` no longer shows the rule's `mirror` (`_momentum_mirror`)."""
    for key, value in mirror.items():
        if tuple(_as_tuple(group.get(key, value))) != tuple(_as_tuple(value)):
            raise ValueError(
                f"param group {gi}: {key} changed from {value!r} to {group[key]!r} (a scheduler that cycles "
                f"momentum, such as OneCycleLR or CyclicLR?); this rule's {key} is fixed by its constants, so "
                "construct the scheduler with cycle_momentum=False"
            )


def _bad_delta(rule: Rule, delta: Any, p: torch.Tensor, gi: int, pi: int, fn: str = "update") -> str:
    where = f"param {pi} of group {gi} (shape {tuple(p.shape)}, {p.dtype}, {p.device})"
    if not isinstance(delta, torch.Tensor):
        got = f"a {type(delta).__name__}"
    else:
        got = f"a tensor of shape {tuple(delta.shape)}, {delta.dtype}, {delta.device}"
    return (
        f"rule '{rule.name}': {fn} must return a tensor with the parameter's shape, dtype and device "
        f"for {where}, got {got}"
    )
