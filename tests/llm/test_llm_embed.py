"""`LLMClient.embed`: text embeddings through litellm's `embedding`, budgeted, recorded and replayed
like chat calls (real HTTP on 127.0.0.1 to the scripted server)."""

import pytest

from optforge.llm import LLMClient, ReplayError
from optforge.llm.budget import BudgetExhausted
from optforge.llm.errors import LLMConfigError
from optforge.llm.scripted import hashed_embedding
from optforge.store import Store


def test_embed_returns_one_vector_per_text_in_order_and_counts_one_request(scripted):
    client, _, _ = scripted({"responses": [], "embedding_dim": 8}, embedding_model="openai/scripted-embed")
    texts = ["adam with momentum", "sign of the momentum", "adam with momentum"]
    vectors = client.embed(texts)
    assert vectors == [pytest.approx(hashed_embedding(t, 8)) for t in texts]
    assert client.calls_made == 1


def test_embed_needs_an_embedding_model(scripted):
    client, _, _ = scripted({"responses": []})
    with pytest.raises(LLMConfigError, match="llm.embedding_model"):
        client.embed(["x"])
    assert client.calls_made == 0


def test_embed_stops_at_the_call_budget(scripted):
    client, _, _ = scripted({"responses": []}, budget={"max_llm_calls": 1}, embedding_model="openai/e")
    client.embed(["a"])
    with pytest.raises(BudgetExhausted):
        client.embed(["b"])
    assert client.calls_made == 1


def test_embed_is_recorded_and_replayed_without_the_server(scripted, tmp_path):
    store = Store(tmp_path)
    client, _, _ = scripted({"responses": ["a rule"], "embedding_dim": 4}, recorder=store.record_llm_call,
                            embedding_model="openai/e")
    live = client.embed(["one", "two"])
    assert client.complete("propose").text == "a rule"
    store.close()
    replay = LLMClient({"model": "openai/scripted", "embedding_model": "openai/e", "replay": str(tmp_path),
                        "api_key_env": None, "input_cost_per_token": 0.0, "output_cost_per_token": 0.0})
    assert replay.embed(["one", "two"]) == live
    assert replay.complete("propose").text == "a rule"
    assert replay.calls_made == 2
    with pytest.raises(ReplayError, match="never recorded"):
        replay.embed(["three"])
