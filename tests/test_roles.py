"""Role inference on the architectures people train (issue 16 item 3): tied-embedding language models,
transposed convolutions, attention with fused QKV, and models with no output Linear."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from optforge.roles import infer_roles, param_groups


class Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.c_attn = nn.Linear(d, 3 * d)  # fused QKV
        self.c_proj = nn.Linear(d, d)
        self.fc = nn.Linear(d, 4 * d)
        self.proj = nn.Linear(4 * d, d)


class TiedLM(nn.Module):
    """GPT-2 style: lm_head shares the token embedding."""

    def __init__(self, vocab=11, d=8, layers=2, head_module=True):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(16, d)
        self.h = nn.ModuleList(Block(d) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        if head_module:
            self.lm_head = nn.Linear(d, vocab, bias=False)
            self.lm_head.weight = self.wte.weight

    def logits(self, x):
        return F.linear(self.ln_f(self.wte(x)), self.wte.weight)


def test_tied_lm_head_is_the_embedding_and_no_hidden_layer_is_a_head():
    for head_module in (True, False):
        roles = infer_roles(TiedLM(head_module=head_module))
        assert roles["wte.weight"] == roles["wpe.weight"] == "embedding"
        if head_module:
            assert roles["lm_head.weight"] == "embedding"
        assert "head" not in roles.values()  # the output projection is the (tied) embedding
        assert roles["h.1.proj.weight"] == roles["h.0.c_attn.weight"] == "hidden_matrix"
        assert roles["h.1.proj.bias"] == roles["ln_f.weight"] == "vector"


def test_untied_lm_head_is_the_head():
    model = TiedLM()
    model.lm_head.weight = nn.Parameter(torch.randn(11, 8))
    roles = infer_roles(model)
    assert roles["lm_head.weight"] == "head" and roles["wte.weight"] == "embedding"
    assert [r for r in roles.values()].count("head") == 1


def test_fused_qkv_attention_is_hidden_and_the_classifier_is_the_head():
    layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, batch_first=True)
    model = nn.Module()
    model.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    model.classifier = nn.Linear(8, 3)
    roles = infer_roles(model)
    assert roles["encoder.layers.0.self_attn.in_proj_weight"] == "hidden_matrix"  # (3d, d) fused QKV
    assert roles["encoder.layers.1.self_attn.out_proj.weight"] == "hidden_matrix"
    assert roles["encoder.layers.1.linear2.weight"] == "hidden_matrix"
    assert roles["classifier.weight"] == "head" and roles["classifier.bias"] == "vector"


def test_attention_stack_with_no_output_linear_has_no_head():
    layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    roles = infer_roles(model)
    assert "head" not in roles.values()  # the last Linear is inside the stack (layers.1.linear2)


def test_conv_transpose_decoder_after_a_linear():
    model = nn.Sequential(
        nn.Linear(4, 32), nn.Unflatten(1, (2, 4, 4)),
        nn.ConvTranspose2d(2, 3, 3), nn.ReLU(), nn.ConvTranspose2d(3, 1, 3, stride=2),
    )
    roles = infer_roles(model)
    assert roles["2.weight"] == roles["4.weight"] == "conv"
    assert roles["0.weight"] == "hidden_matrix"  # a convolution comes after it: not the output layer
    assert "head" not in roles.values()
    for cls, shape in ((nn.ConvTranspose1d, (1, 2, 5)), (nn.ConvTranspose3d, (1, 2, 3, 3, 3))):
        assert infer_roles(nn.Sequential(cls(2, 2, 2)))["0.weight"] == "conv"


def test_all_conv_classifier_has_no_head():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 10, 1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
    roles = infer_roles(model)
    assert set(roles.values()) == {"conv", "vector"}


def test_mlp_last_layer_is_the_head_and_words_not_substrings_name_heads():
    roles = infer_roles(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)))
    assert roles["4.weight"] == "head" and roles["0.weight"] == roles["2.weight"] == "hidden_matrix"
    model = nn.Module()
    model.multihead_proj = nn.Linear(4, 4)
    model.mix = nn.Linear(4, 4)
    model.cls_head = nn.Linear(4, 2)
    model.aux_head = nn.Linear(4, 2)
    roles = infer_roles(model)
    assert roles["multihead_proj.weight"] == roles["mix.weight"] == "hidden_matrix"
    assert roles["cls_head.weight"] == roles["aux_head.weight"] == "head"


def test_param_groups_lists_a_tied_weight_once():
    model = TiedLM()
    groups = param_groups(model)
    listed = [id(p) for g in groups for p in g["params"]]
    assert len(listed) == len(set(listed)) == len(list(model.parameters()))
