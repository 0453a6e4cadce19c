"""Parameter roles: what kind of tensor each parameter is, so matrix-aware rules can treat
matrices, embeddings, heads and vectors differently (reference A.5)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

ROLES = ("hidden_matrix", "conv", "embedding", "head", "vector", "scalar")
MATRIX_ROLES = ("hidden_matrix", "conv")


def default_role(p: torch.Tensor) -> str:
    """The role of a tensor with no explicit role, from its shape alone."""
    if p.ndim == 0:
        return "scalar"
    if p.ndim == 1:
        return "vector"
    if p.ndim >= 3:
        return "conv"
    return "hidden_matrix"


_HEAD_NAMES = ("head", "classifier", "lm_head", "output", "readout", "decoder")


def infer_roles(model: nn.Module) -> dict[str, str]:
    """Map each parameter name of `model` to a role.

    `embedding`: nn.Embedding weights; `conv`: conv weights; `head`: the output projection (a Linear
    named like a head, else the last Linear registered); `hidden_matrix`: other >= 2-D;
    `vector`: 1-D; `scalar`: 0-D. A weight shared by several modules keeps its first role.
    """
    roles: dict[str, str] = {}
    by_id: dict[int, str] = {}
    linears: list[tuple[str, nn.Linear]] = []
    for mod_name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            linears.append((mod_name, mod))
    head_mod = None
    for mod_name, mod in linears:
        if any(h in mod_name.split(".")[-1].lower() for h in _HEAD_NAMES):
            head_mod = mod
    if head_mod is None and linears:
        head_mod = linears[-1][1]
    special: dict[int, str] = {}
    for mod in model.modules():
        if isinstance(mod, nn.Embedding):
            special.setdefault(id(mod.weight), "embedding")
        elif isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)):
            special.setdefault(id(mod.weight), "conv")
    if head_mod is not None:
        special.setdefault(id(head_mod.weight), "head")
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in by_id:
            roles[name] = by_id[id(p)]
            continue
        if id(p) in special:
            role = special[id(p)]
        elif p.ndim == 0:
            role = "scalar"
        elif p.ndim == 1:
            role = "vector"
        else:
            role = "hidden_matrix"
        roles[name] = by_id[id(p)] = role
    return roles


def param_groups(model: nn.Module, lr: float | None = None) -> list[dict[str, Any]]:
    """Role-tagged param groups for `RuleOptimizer` (or any optimizer that reads `role`)."""
    roles = infer_roles(model)
    grouped: dict[str, list[torch.Tensor]] = {}
    for name, p in model.named_parameters():
        grouped.setdefault(roles[name], []).append(p)
    groups = []
    for role in ROLES:
        if role in grouped:
            group: dict[str, Any] = {"params": grouped[role], "role": role}
            if lr is not None:
                group["lr"] = lr
            groups.append(group)
    return groups
