"""Minibatches of (task, seed) pairs of the search suite, drawn as the reference's sampler draws
training inputs (the reference implementation's step 3): every pair (each search task with each search seed) is
used once before any is used again, in an order shuffled afresh each epoch.

The order of epoch e is a pure function of (seed, e), so the state is two integers and a resumed
run draws exactly the minibatches the interrupted one would have. A draw that would run past the
end of an epoch starts the next one instead (the tail is skipped), so one minibatch never holds a
pair twice.
"""

from __future__ import annotations

import random
from typing import Any, Mapping, Sequence

Pair = tuple[str, int]


class PairSampler:
    """Draws (task, seed) pairs from `tasks` x `seeds` (the search suite's tasks and search seeds);
    `seed` fixes the shuffles (derive it from the run seed)."""

    def __init__(self, tasks: Sequence[str], seeds: Sequence[int], seed: int):
        if not tasks or not seeds:
            raise ValueError("the minibatch sampler needs at least one search task and one search seed")
        self.tasks = tuple(sorted(set(tasks)))
        self.seeds = tuple(sorted(set(int(s) for s in seeds)))
        self.seed = int(seed)
        self.epoch = 0
        self.position = 0

    @property
    def pool_size(self) -> int:
        return len(self.tasks) * len(self.seeds)

    def order(self, epoch: int) -> list[Pair]:
        """Every pair, in epoch `epoch`'s order."""
        pairs = [(t, s) for t in self.tasks for s in self.seeds]
        random.Random(f"polca-minibatch:{self.seed}:{epoch}").shuffle(pairs)  # str seeds hash stably (sha512)
        return pairs

    def draw(self, n: int) -> list[Pair]:
        """The next `n` distinct pairs."""
        if not 1 <= n <= self.pool_size:
            raise ValueError(f"cannot draw {n} distinct (task, seed) pairs from {len(self.tasks)} task(s) x "
                             f"{len(self.seeds)} search seed(s) = {self.pool_size}; lower strategy.batch_size x "
                             "strategy.num_batches, or use more search seeds")
        if self.position + n > self.pool_size:
            self.epoch, self.position = self.epoch + 1, 0
        out = self.order(self.epoch)[self.position:self.position + n]
        self.position += n
        return out

    def minibatches(self, batch_size: int, num_batches: int) -> list[list[Pair]]:
        """`num_batches` minibatches of `batch_size` pairs, all distinct."""
        pairs = self.draw(batch_size * num_batches)
        return [pairs[i * batch_size:(i + 1) * batch_size] for i in range(num_batches)]

    def state(self) -> dict[str, Any]:
        return {"tasks": list(self.tasks), "seeds": list(self.seeds), "seed": self.seed,
                "epoch": self.epoch, "position": self.position}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue where `state()` was taken; refuses a state drawn from other tasks, seeds or shuffles."""
        mine = {"tasks": list(self.tasks), "seeds": list(self.seeds), "seed": self.seed}
        theirs = {k: state.get(k) for k in mine}
        if theirs != mine:
            raise ValueError(f"the saved minibatch sampler drew from {theirs}, not {mine}: the search suite, its "
                             "search seeds or the run seed changed since; resume with the run's own config")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
