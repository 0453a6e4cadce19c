"""The scripted provider's own features, through the litellm path the client uses (real HTTP on 127.0.0.1)."""

import base64
import json
import math
import struct
import urllib.error
import urllib.request

import pytest

from optforge.llm import LLMError
from optforge.llm.pricing import litellm
from optforge.llm.scripted import ScriptedServer, hashed_embedding, load_script


def test_match_entries_answer_interleaved_parallel_calls_in_any_order(scripted):
    script = [{"match": r"^propose", "content": f"rule {i}"} for i in range(3)]
    script += [{"match": r"^summarise", "content": "summary", "repeat": True}, "fallback"]
    client, server, _ = scripted(script, concurrency=6)
    prompts = ["summarise run", "propose a", "other", "propose b", "summarise again", "propose c"]
    answers = client.complete_many([{"messages": p} for p in prompts])
    texts = [a.text for a in answers]
    assert texts[0] == texts[4] == "summary" and texts[2] == "fallback"  # repeat: never used up
    assert sorted(texts[i] for i in (1, 3, 5)) == ["rule 0", "rule 1", "rule 2"]
    assert server.served == 6


def test_match_reads_the_last_user_message_only(scripted):
    client, _, _ = scripted([{"match": "PARENT", "content": "wrong"}, {"match": "child", "content": "right"}])
    messages = [{"role": "system", "content": "PARENT"}, {"role": "user", "content": "PARENT rule"},
                {"role": "assistant", "content": "ok"}, {"role": "user", "content": "now the child"}]
    assert client.complete(messages).text == "right"


def test_no_entry_left_is_an_error_naming_the_request(scripted):
    client, _, _ = scripted([{"match": "yes", "content": "a"}], max_retries=0)
    with pytest.raises(LLMError, match="no script entry left.*'no match here'"):
        client.complete("no match here")


def test_finish_reason_and_reasoning_content_per_entry(scripted):
    client, _, _ = scripted([{"match": "cut", "content": "def upd", "finish_reason": "length"},
                             {"match": "think", "content": "done", "reasoning_content": "step by step"}])
    thought, cut = client.complete("think"), client.complete("cut")
    assert (cut.text, cut.finish_reason) == ("def upd", "length")
    assert (thought.text, thought.finish_reason, thought.reasoning) == ("done", "stop", "step by step")


def test_response_format_fault_rejects_structured_output_only(scripted):
    client, server, _ = scripted({"responses": ["plain"], "reject_response_format": True}, max_retries=0,
                                 extra={"response_format": {"type": "json_object"}})
    with pytest.raises(LLMError, match="response_format is not supported"):
        client.complete("json please")
    plain, _, _ = scripted({"responses": ["plain"], "reject_response_format": True})
    assert plain.complete("text please").text == "plain"
    assert server.requests[0]["response_format"] == {"type": "json_object"}


def _embed(server, inputs, model="openai/scripted", **kw):
    resp = litellm().embedding(model=model, input=inputs, api_base=server.url, api_key="no-key", **kw)
    return [list(d["embedding"]) for d in resp.data]


def test_embeddings_are_scripted_or_hashed_and_deterministic():
    script = {"responses": [], "embeddings": [{"match": "^pinned", "vector": [1, 0, 0]}], "embedding_dim": 8}
    with ScriptedServer(script) as server:
        pinned, a, a_again, b = _embed(server, ["pinned text", "adam with momentum", "adam with momentum",
                                                "lion sign update"])
        assert pinned == [1.0, 0.0, 0.0]
        assert a == a_again and a == pytest.approx(hashed_embedding("adam with momentum", 8))
        assert len(a) == 8 and math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-6) and a != b
        (short,) = _embed(server, ["adam with momentum"], dimensions=4,
                          model="openai/text-embedding-3-small")  # litellm passes `dimensions` for this one
        assert short == pytest.approx(hashed_embedding("adam with momentum", 4))
        resp = litellm().embedding(model="openai/scripted", input=["adam with momentum"], api_base=server.url,
                                   api_key="no-key", encoding_format="base64")
        raw = base64.b64decode(resp.data[0]["embedding"])  # asked for base64: handed back as sent
        assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(a, abs=1e-6)  # little-endian float32


def test_hashed_embeddings_of_texts_sharing_words_point_alike():
    def cos(u, v):
        return sum(x * y for x, y in zip(u, v))

    a, b, c = (hashed_embedding(t) for t in ("adam momentum decay", "adam momentum clip", "sign lion sgd"))
    assert cos(a, b) > cos(a, c)
    assert hashed_embedding("...") == [0.0] * 64


@pytest.mark.parametrize("script, message", [
    ({"responses": [], "latency": 1}, "unknown script key"),
    ([{"match": "(", "content": "x"}], "not a valid regex"),
    ([{"fault": "teapot"}], "unknown fault"),
    ({"embeddings": [{"match": "x"}]}, "embeddings entry 0"),
    ({"models": "scripted"}, "'models' must be a list"),
])
def test_bad_scripts_are_named(script, message):
    with pytest.raises(ValueError, match=message):
        load_script(script)


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.headers["Content-Type"], json.loads(resp.read())


def test_models_are_listed_as_openai_lists_them():
    with ScriptedServer(["a"]) as server:
        status, ctype, body = _get(server.url + "/models")
        assert (status, ctype) == (200, "application/json")
        assert body["object"] == "list" and [m["id"] for m in body["data"]] == ["scripted"]
        model = body["data"][0]
        assert model["object"] == "model" and isinstance(model["created"], int) and model["owned_by"]
        # one model by id: any id is served, as any model name is answered
        assert _get(server.url + "/models/openai/gpt-x")[2]["id"] == "openai/gpt-x"
        with pytest.raises(urllib.error.HTTPError) as info:
            _get(server.url + "/nothing")
        assert info.value.code == 404 and "GET /v1/models" in json.loads(info.value.read())["error"]["message"]
        assert server.served == 0  # probes use up no script entry


def test_the_openai_client_lists_the_scripted_models():
    import openai

    with ScriptedServer({"responses": ["a"], "models": ["m1", "m2"]}) as server:
        client = openai.OpenAI(base_url=server.url, api_key="no-key", max_retries=0)
        assert [m.id for m in client.models.list()] == ["m1", "m2"]
        assert client.models.retrieve("m2").id == "m2"
        assert client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}]
                                              ).choices[0].message.content == "a"
