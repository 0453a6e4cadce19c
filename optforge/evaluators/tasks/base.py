"""The task contract: a `Task` builds a `Problem` (model, data, losses, roles) from a seed.

The idea comes from learned_optimization: a task is a recipe, a problem is one seeded instance of
it. Every rule trained on (task, seed) sees the same init and the same data order (common random
numbers), so score differences come from the rule alone. Randomness comes from `torch.Generator`
objects derived from the seed; the global RNG is never read for anything that matters.

A problem built with `validation=False` holds no validation data at all: that is the instance the
untrusted training job gets. Trusted code rebuilds it with `validation=True` to score snapshots.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import torch
from torch import nn

from optforge.rule import ROLES, infer_roles

FAMILIES = ("quadratic", "matrix", "convex", "mlp", "cnn", "lm", "rnn", "smoke")


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple of names and numbers; stable across processes and versions."""
    text = "/".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def generator(*parts: object) -> torch.Generator:
    """A fresh CPU `torch.Generator` seeded from `derive_seed(*parts)`."""
    return torch.Generator().manual_seed(derive_seed(*parts))


class Problem:
    """One seeded instance of a task: the model, its batch loss, and (trusted side only) validation.

    `batch_loss(step)` returns the training loss on the batch of 0-based `step`; it must be a pure
    function of (seed, step) for the data, so that a prefix of a run is the same run. `val_fn`
    is given only when the problem was built with validation data; `recalibrate` (BatchNorm tasks)
    recomputes normalisation statistics at the current weights from training data.
    """

    def __init__(
        self,
        model: nn.Module,
        batch_loss: Callable[[int], torch.Tensor],
        val_fn: Callable[[], float] | None = None,
        roles: dict[str, str] | None = None,
        recalibrate: Callable[[], None] | None = None,
    ):
        self.model = model
        self.roles = dict(roles) if roles is not None else infer_roles(model)
        names = [n for n, _ in model.named_parameters()]
        missing = [n for n in names if n not in self.roles]
        if missing:
            raise ValueError(f"problem roles lack parameters {missing}; give a role for every parameter")
        bad = {n: r for n, r in self.roles.items() if r not in ROLES}
        if bad:
            raise ValueError(f"unknown roles {bad}; use one of {', '.join(ROLES)}")
        self._batch_loss = batch_loss
        self._val_fn = val_fn
        self._recalibrate = recalibrate

    @property
    def has_validation(self) -> bool:
        return self._val_fn is not None

    def train_loss(self, step: int) -> torch.Tensor:
        """Scalar training loss (with graph) on the batch of 0-based `step`."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        self.model.train()
        return self._batch_loss(step)

    @torch.no_grad()
    def val_loss(self) -> float:
        """Validation loss at the current weights (the exact objective for synthetic tasks).

        Raises RuntimeError on a problem built with validation=False: the untrusted side never
        holds validation data.
        """
        if self._val_fn is None:
            raise RuntimeError(
                "this problem was built with validation=False and holds no validation data; "
                "rebuild it with task.build(seed, validation=True) on the trusted side"
            )
        was_training = self.model.training
        self.model.eval()
        try:
            value = float(self._val_fn())
        finally:
            self.model.train(was_training)
        return value if math.isfinite(value) else math.inf

    @torch.no_grad()
    def prepare_eval(self) -> None:
        """Bring non-parameter state (BatchNorm statistics) in line with the current weights."""
        if self._recalibrate is not None:
            self._recalibrate()


@runtime_checkable
class Task(Protocol):
    """A recipe for problems. Implementations are small frozen dataclasses (picklable, hashable)."""

    name: str
    family: str
    steps: int
    batch_size: int

    def build(self, seed: int, *, validation: bool) -> Problem: ...


SEED_SETS = ("selection", "report", "search")
"""The three seed sets of a suite, by the names used everywhere (config, baselines, docs)."""


@dataclass(frozen=True)
class Suite:
    """A versioned set of tasks with its three seed sets. Scores compare only within one (name, version).

    - `selection_seeds` pick the lr (and weight decay) of every rule, AdamW's included;
    - `report_seeds` are the fresh seeds of promotion (the t-test), never used by search;
    - `search_seeds` are a pool a search strategy may request rollouts on (search suites only;
      held-out suites and gates have none).

    The three sets are disjoint; every seed of them has AdamW baselines.
    """

    name: str
    version: str
    tasks: tuple
    selection_seeds: tuple[int, ...] = (0, 1)
    report_seeds: tuple[int, ...] = (2, 3, 4)
    description: str = ""
    search_seeds: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or not self.version:
            raise ValueError(f"a Suite needs a name and a version, got name={self.name!r} version={self.version!r}")
        if not self.tasks:
            raise ValueError(f"suite '{self.name}' has no tasks")
        object.__setattr__(self, "tasks", tuple(self.tasks))
        for t in self.tasks:
            if not isinstance(t, Task):
                raise TypeError(
                    f"suite '{self.name}': {t!r} is not a Task (needs name, family, steps, batch_size and build())"
                )
            if int(t.steps) < 1:
                raise ValueError(f"task '{t.name}' has steps={t.steps}; use a positive number of steps")
        names = [t.name for t in self.tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"suite '{self.name}' has duplicate task names {dupes}; task names must be unique")
        for kind in SEED_SETS:
            object.__setattr__(self, f"{kind}_seeds", tuple(int(s) for s in getattr(self, f"{kind}_seeds")))
        if not self.selection_seeds:
            raise ValueError(f"suite '{self.name}' has no selection seeds; give at least one")
        seen: dict[int, str] = {}
        for kind in SEED_SETS:
            for s in getattr(self, f"{kind}_seeds"):
                if s in seen:
                    where = "twice in" if seen[s] == kind else f"in both {seen[s]} and"
                    raise ValueError(
                        f"suite '{self.name}': seed {s} is {where} {kind} seeds; the selection, report and "
                        "search seed sets must be disjoint and without repeats"
                    )
                seen[s] = kind

    def seeds_of(self, kind: str) -> tuple[int, ...]:
        """The seed set called `kind` (one of SEED_SETS)."""
        if kind not in SEED_SETS:
            raise ValueError(f"unknown seed set {kind!r}; use one of {', '.join(SEED_SETS)}")
        return getattr(self, f"{kind}_seeds")

    @property
    def all_seeds(self) -> tuple[int, ...]:
        """Every seed of the suite: selection, then report, then search (the seeds its baselines hold)."""
        return self.selection_seeds + self.report_seeds + self.search_seeds

    def task(self, name: str):
        """The task called `name` in this suite."""
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"suite '{self.name}' has no task '{name}'; tasks: {', '.join(t.name for t in self.tasks)}")

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)


# ---------------------------------------------------------------------------------------------
# helpers shared by the task modules


def build_model(factory: Callable[[], nn.Module], gen: torch.Generator) -> nn.Module:
    """Construct a module and re-initialise every parameter from `gen`.

    Construction runs under `fork_rng`, so the global RNG is untouched; `init_params` then sets
    every parameter from the generator alone (torch's default schemes, drawn from `gen`).
    """
    with torch.random.fork_rng(devices=[]):
        model = factory()
    init_params(model, gen)
    return model.float()


@torch.no_grad()
def init_params(model: nn.Module, gen: torch.Generator) -> None:
    """torch's default initialisations, drawn from `gen`; an unknown parameterised module raises."""
    done: set[int] = set()
    for mod in model.modules():
        own = [p for p in mod.parameters(recurse=False)]
        if not own:
            continue
        if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            fan_in = mod.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            _uniform(mod.weight, bound, gen)
            if mod.bias is not None:
                _uniform(mod.bias, bound, gen)
        elif isinstance(mod, nn.Embedding):
            mod.weight.normal_(0.0, 1.0, generator=gen)
        elif isinstance(mod, (nn.GRU, nn.LSTM, nn.RNN)):
            bound = 1.0 / math.sqrt(mod.hidden_size)
            for p in own:
                _uniform(p, bound, gen)
        elif isinstance(mod, (nn.LayerNorm, nn.RMSNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)):
            for name, p in mod.named_parameters(recurse=False):
                p.fill_(1.0 if name == "weight" else 0.0)
        elif hasattr(mod, "reset_parameters_from"):
            mod.reset_parameters_from(gen)
        else:
            raise TypeError(
                f"init_params does not know how to initialise {type(mod).__name__}; "
                "give it a reset_parameters_from(gen) method"
            )
        done.update(id(p) for p in own)
    left = [n for n, p in model.named_parameters() if id(p) not in done]
    if left:
        raise TypeError(f"init_params left parameters {left} uninitialised")


def _uniform(p: torch.Tensor, bound: float, gen: torch.Generator) -> None:
    p.uniform_(-bound, bound, generator=gen)


class EpochSampler:
    """Batch indices for step k: a fresh permutation of the data per epoch, from the seed.

    Any step can be asked for in any order and gets the same indices, so a run can be cut into
    prefixes (successive halving) or extended (baselines to 4T) without changing its data.
    """

    def __init__(self, n: int, batch_size: int, *seed_parts: object):
        if batch_size > n:
            raise ValueError(f"batch_size {batch_size} exceeds the {n} training examples")
        self.n, self.batch_size, self.seed_parts = n, batch_size, seed_parts
        self._per_epoch = n // batch_size
        self._cache: dict[int, torch.Tensor] = {}

    def __call__(self, step: int) -> torch.Tensor:
        if self.batch_size == self.n:
            return torch.arange(self.n)
        epoch, k = divmod(step, self._per_epoch)
        perm = self._cache.get(epoch)
        if perm is None:
            if len(self._cache) > 4:
                self._cache.clear()
            perm = torch.randperm(self.n, generator=generator(*self.seed_parts, "epoch", epoch))
            self._cache[epoch] = perm
        return perm[k * self.batch_size : (k + 1) * self.batch_size]


def step_generator(*parts: object) -> torch.Generator:
    """The generator for one step's synthetic batch; alias of `generator`, named for intent."""
    return generator(*parts)
