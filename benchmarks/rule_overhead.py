"""Step time of RuleOptimizer(adamw seed) against torch.optim.AdamW(foreach=False), side by side; and of
the symbolic search's AdamW program (rendered through its function library, as every symbolic
candidate is), for the library's per-statement overhead.

Target: ratio <= 1.5x for the seed. Run: python benchmarks/rule_overhead.py
Both optimizers step the same model on the same gradients; rounds alternate so machine noise hits both.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from optforge import seeds
from optforge.rule import RuleOptimizer, load_rule, param_groups
from optforge.search.symbolic import warmstarts
from optforge.search.symbolic.program import render


def digits_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))


def small_transformer() -> nn.Module:
    class LM(nn.Module):
        def __init__(self, vocab=256, d=48, layers=2, heads=2):
            super().__init__()
            self.emb = nn.Embedding(vocab, d)
            self.blocks = nn.ModuleList(
                nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True) for _ in range(layers)
            )
            self.head = nn.Linear(d, vocab)

        def forward(self, x):
            h = self.emb(x)
            for b in self.blocks:
                h = b(h)
            return self.head(h)

    return LM()


def time_steps(opt: torch.optim.Optimizer, params: list[torch.Tensor], grads: list[torch.Tensor], n: int) -> float:
    for p, g in zip(params, grads):
        p.grad = g
    t0 = time.perf_counter()
    for _ in range(n):
        opt.step()
    return (time.perf_counter() - t0) / n


def bench(name: str, make, rule, rounds: int = 7, steps: int = 100) -> tuple[float, float]:
    torch.manual_seed(0)
    m1, m2 = make(), make()
    m2.load_state_dict(m1.state_dict())
    p1, p2 = list(m1.parameters()), list(m2.parameters())
    grads = [torch.randn_like(p) * 1e-3 for p in p1]
    ours = RuleOptimizer(param_groups(m1), rule)
    ref = torch.optim.AdamW(p2, lr=1e-3, weight_decay=0.01, foreach=False)
    t_ours, t_ref = [], []
    for _ in range(rounds):
        t_ref.append(time_steps(ref, p2, grads, steps))
        t_ours.append(time_steps(ours, p1, grads, steps))
    a, b = statistics.median(t_ours), statistics.median(t_ref)
    n_params = sum(p.numel() for p in p1)
    print(f"{name:<28} {len(p1):>7} {n_params:>9} {b * 1e6:>12.1f} {a * 1e6:>14.1f} {a / b:>7.2f}x")
    return a, b


def main() -> None:
    torch.set_num_threads(1)
    print(f"{'model (rule)':<28} {'tensors':>7} {'params':>9} {'AdamW us/step':>12} {'RuleOpt us/step':>14} {'ratio':>8}")
    ratios = []
    symbolic = load_rule(render(warmstarts.program("adamw")), "symbolic adamw")
    for name, make in [("digits MLP", digits_mlp), ("byte transformer", small_transformer)]:
        a, b = bench(f"{name} (seed)", make, seeds.load("adamw"))
        ratios.append(a / b)
        bench(f"{name} (symbolic)", make, symbolic)
    print(f"\nworst seed ratio {max(ratios):.2f}x (target <= 1.5x); symbolic rows: no target, tracked")


if __name__ == "__main__":
    main()
