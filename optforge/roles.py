"""Parameter roles: what kind of tensor each parameter is, so matrix-aware rules can treat
matrices, embeddings, heads and vectors differently: Muon and the other matrix-structured optimizers
run their matrix step on 2-D hidden weights and an Adam fallback on biases, gains, embeddings and the
head."""

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


def _named_like_head(mod_name: str) -> bool:
    # whole words of the last name part ("lm_head", "cls_head", "output"), not substrings ("multihead")
    last = mod_name.split(".")[-1].lower()
    return last in _HEAD_NAMES or any(word in _HEAD_NAMES for word in last.split("_"))


def _in_repeated_block(mod_name: str) -> bool:
    # "blocks.3.mlp.fc2": inside the 4th of a stack of blocks, so not the model's output projection;
    # "net.2" (the last layer of a Sequential) is not
    parts = mod_name.split(".")
    return any(part.isdigit() for part in parts[:-1])


def infer_roles(model: nn.Module) -> dict[str, str]:
    """Map each parameter name of `model` to a role.

    `embedding`: nn.Embedding weights, also where a Linear shares them (a tied language-model head);
    `conv`: weights of every convolution, transposed ones included (>= 3-D); `head`: the output
    projection: every Linear named like a head (a whole word of its name among `_HEAD_NAMES`), else the
    last Linear registered, unless it sits inside a stack of blocks (`blocks.3.mlp.fc2`: a model whose
    output is a tied embedding or a pooled convolution) or a convolution is registered after it (a
    decoder ending in ConvTranspose); a model with no such Linear has no head. `hidden_matrix`: other
    >= 2-D, fused attention projections included (nn.MultiheadAttention's in_proj_weight);
    `vector`: 1-D; `scalar`: 0-D. A weight shared by several modules keeps its first role.
    """
    roles: dict[str, str] = {}
    by_id: dict[int, str] = {}
    special: dict[int, str] = {}
    heads: list[nn.Linear] = []
    last_linear: tuple[str, nn.Linear] | None = None
    conv_after_last_linear = False
    for mod_name, mod in model.named_modules():
        if isinstance(mod, nn.Embedding):
            special.setdefault(id(mod.weight), "embedding")
        elif isinstance(mod, nn.modules.conv._ConvNd):
            special.setdefault(id(mod.weight), "conv")
            conv_after_last_linear = True
        elif isinstance(mod, nn.Linear):
            last_linear, conv_after_last_linear = (mod_name, mod), False
            if _named_like_head(mod_name):
                heads.append(mod)
    if not heads and last_linear is not None:
        name, mod = last_linear
        if not _in_repeated_block(name) and not conv_after_last_linear:
            heads.append(mod)
    for mod in heads:
        special.setdefault(id(mod.weight), "head")
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
