"""The scripted provider: a real OpenAI-compatible HTTP server on 127.0.0.1 that answers
`/v1/chat/completions` and `/v1/embeddings` from a script, for tests and benchmarks, and lists its
models at `GET /v1/models` (`GET /v1/models/<id>`: one), as clients and tools probe a server first.

It is reached through the same litellm path as a real provider (model "openai/<name>", api_base
`server.url`), so retries, cost accounting and parsing are exercised end to end with no network.
The script format is documented in docs/llm.md ("The scripted server"). In short, a script is a JSON
list of entries, or a mapping {"responses": [...], "embeddings": [...], "latency_s": x, "cycle": bool,
"embedding_dim": n, "reject_response_format": bool, "models": [ids]}; each entry answers one request:

    "text"                                    -> a completion with that content
    {"content": "...", "usage": {"prompt_tokens": 10, "completion_tokens": 5}, "sleep_s": 0.2}
    {"content": "...", "finish_reason": "length", "reasoning_content": "..."}   (default "stop", none)
    {"match": "regex", "content": "..."}      -> answers a request whose last user message matches
    {"match": "regex", "content": "...", "repeat": true}  -> ... and is never used up
    {"fault": "429", "retry_after": 0.1}      -> HTTP 429 with a Retry-After header
    {"fault": "500"}                          -> HTTP 500
    {"fault": "timeout", "sleep_s": 5}        -> sleeps, then drops the connection
    {"fault": "truncated"}                    -> HTTP 200 whose JSON body is cut short
    {"fault": "empty"}                        -> HTTP 200 with an empty completion

A request is answered by the first unused entry whose `match` regex (re.search) finds the last user
message; failing that, by the first unused entry without `match`, in script order. So interleaved
and parallel calls get their answers in any order. With "reject_response_format": true every
request carrying `response_format` gets HTTP 400, as from a server without structured output.

Without "usage", prompt tokens are ceil(chars / 4) of all message contents and completion tokens
ceil(chars / 4) of the content (clipped to the request's max_tokens, as providers do).
Every model name is answered alike; `GET /v1/models` lists `models` (default ["scripted"]).
Run by hand: `python -m optforge.llm.scripted script.json --port 8000`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import math
import re
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FAULTS = ("429", "500", "timeout", "truncated", "empty")
OPTIONS = ("latency_s", "cycle", "embeddings", "embedding_dim", "reject_response_format", "models")
DEFAULT_EMBEDDING_DIM = 64
DEFAULT_MODELS = ("scripted",)


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4) if text else 0


def load_script(script: str | Path | list | dict) -> tuple[list[dict], dict]:
    """Normalise a script (path, list or mapping) into entries and options. Raises ValueError naming
    the bad entry or key."""
    if isinstance(script, (str, Path)):
        try:
            script = json.loads(Path(script).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read script file {script}: {e}; it must be a JSON list of responses") from e
    options: dict = {}
    if isinstance(script, dict):
        unknown = sorted(set(script) - set(OPTIONS) - {"responses"})
        if unknown:
            raise ValueError(f"unknown script key(s) {', '.join(unknown)}; known: responses, {', '.join(OPTIONS)}")
        options = {k: v for k, v in script.items() if k != "responses"}
        script = script.get("responses", [])
    entries = [_entry(i, entry) for i, entry in enumerate(script)]
    options["embeddings"] = [_embedding_entry(i, e) for i, e in enumerate(options.get("embeddings") or [])]
    models = options.get("models", list(DEFAULT_MODELS))
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise ValueError(f"script key 'models' must be a list of model ids (strings), got {models!r}")
    options["models"] = models
    return entries, options


def _entry(i: int, entry: Any) -> dict:
    if isinstance(entry, str):
        entry = {"content": entry}
    if not isinstance(entry, dict):
        raise ValueError(f"script entry {i} must be a string or an object, got {type(entry).__name__}")
    fault = entry.get("fault")
    if fault is not None and str(fault) not in FAULTS:
        raise ValueError(f"script entry {i}: unknown fault {fault!r}; use one of {', '.join(FAULTS)}")
    if fault is None and "content" not in entry:
        raise ValueError(f"script entry {i} needs 'content' or 'fault'")
    out = dict(entry)
    if "match" in out:
        out["match"] = _regex(out["match"], f"script entry {i}")
    return out


def _embedding_entry(i: int, entry: Any) -> dict:
    if not isinstance(entry, dict) or "match" not in entry or not isinstance(entry.get("vector"), list):
        raise ValueError(f"embeddings entry {i} must be {{\"match\": regex, \"vector\": [numbers]}}")
    return {"match": _regex(entry["match"], f"embeddings entry {i}"), "vector": [float(x) for x in entry["vector"]]}


def _regex(pattern: Any, where: str) -> re.Pattern:
    try:
        return re.compile(str(pattern))
    except re.error as e:
        raise ValueError(f"{where}: 'match' {pattern!r} is not a valid regex: {e}") from e


def last_user_message(body: dict) -> str:
    """The text of the last user message of a chat request ("" when there is none)."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def hashed_embedding(text: str, dim: int = DEFAULT_EMBEDDING_DIM) -> list[float]:
    """A deterministic unit vector for `text`: the signed feature hashing of its lower-cased words
    (sha256 per word), so equal texts get equal vectors and texts sharing words point alike. All zeros
    for a text without words."""
    v = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()):
        h = hashlib.sha256(word.encode()).digest()
        v[int.from_bytes(h[:4], "little") % dim] += 1.0 if h[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v] if norm else v


@dataclass
class _State:
    entries: list[dict]
    latency_s: float = 0.0
    cycle: bool = False
    embeddings: list[dict] = field(default_factory=list)
    embedding_dim: int = DEFAULT_EMBEDDING_DIM
    reject_response_format: bool = False
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    created: int = field(default_factory=lambda: int(time.time()))  # the models' `created`: the server's start
    used: set[int] = field(default_factory=set)
    requests: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_entry(self, body: dict) -> dict | None:
        """The entry that answers `body` (marked used unless it repeats), or None when none is left."""
        text = last_user_message(body)
        with self.lock:
            self.requests.append(body)
            index = self._find(text)
            if index is None and self.cycle and self.entries:
                self.used.clear()
                index = self._find(text)
            if index is None:
                return None
            entry = self.entries[index]
            if not entry.get("repeat"):
                self.used.add(index)
            return entry

    def _find(self, text: str) -> int | None:
        free = [i for i in range(len(self.entries)) if i not in self.used]
        matched = next((i for i in free if "match" in self.entries[i] and self.entries[i]["match"].search(text)), None)
        if matched is not None:
            return matched
        return next((i for i in free if "match" not in self.entries[i]), None)

    def embedding(self, text: str, dim: int | None) -> list[float]:
        for entry in self.embeddings:
            if entry["match"].search(text):
                return list(entry["vector"])
        return hashed_embedding(text, int(dim or self.embedding_dim))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("scripted server: " + format, *args)

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None, length: int | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _error(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"error": {"message": message, "type": "scripted", "code": code}}).encode()
        self._send(code, body, headers)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        """OpenAI's model list (`/v1/models`) and model object (`/v1/models/<id>`; every id is served)."""
        state = self.server.state
        path = self.path.split("?", 1)[0].rstrip("/")
        head, _, model = path.partition("/models/")
        if path.endswith("/models"):
            payload: dict[str, Any] = {"object": "list", "data": [_model(m, state.created) for m in state.models]}
        elif model and head.endswith("/v1"):
            payload = _model(model, state.created)
        else:
            self._error(404, f"scripted server answers GET /v1/models and /v1/models/<id> only, not {self.path}")
            return
        self._send(200, json.dumps(payload).encode())

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        path = self.path.rstrip("/")
        if not path.endswith(("/chat/completions", "/embeddings")):
            self._error(404, f"scripted server answers only /v1/chat/completions and /v1/embeddings, not {self.path}")
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._error(400, "request body is not JSON")
            return
        state = self.server.state
        if path.endswith("/embeddings"):
            self._embeddings(body)
            return
        if state.reject_response_format and body.get("response_format") is not None:
            with state.lock:
                state.requests.append(body)
            self._error(400, "scripted server: response_format is not supported by this model")
            return
        entry = state.next_entry(body)
        if entry is None:
            self._error(400, f"scripted server: no script entry left for this request ({len(state.entries)} "
                             f"entries; last user message starts {last_user_message(body)[:80]!r})")
            return
        sleep_s = float(entry.get("sleep_s", 0.0)) + state.latency_s
        fault = entry.get("fault")
        if fault == "timeout":
            time.sleep(float(entry.get("sleep_s", 5.0)))
            self.close_connection = True
            return
        if sleep_s > 0:
            time.sleep(sleep_s)
        if fault == "429":
            self._error(429, "scripted rate limit", {"Retry-After": str(entry.get("retry_after", 0))})
            return
        if fault == "500":
            self._error(500, "scripted server error")
            return
        content = "" if fault == "empty" else str(entry.get("content", ""))
        messages = body.get("messages") or []
        prompt_chars = "".join(str(m.get("content") or "") for m in messages)
        usage = dict(entry.get("usage") or {})
        prompt_tokens = int(usage.get("prompt_tokens", _tokens(prompt_chars)))
        completion_tokens = int(usage.get("completion_tokens", _tokens(content)))
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        if max_tokens:
            completion_tokens = min(completion_tokens, int(max_tokens))
        with state.lock:
            n = len(state.requests)
        message = {"role": "assistant", "content": content}
        if entry.get("reasoning_content"):
            message["reasoning_content"] = str(entry["reasoning_content"])
        payload = {
            "id": f"chatcmpl-scripted-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [
                {"index": 0, "message": message, "finish_reason": entry.get("finish_reason", "stop")}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        data = json.dumps(payload).encode()
        if fault == "truncated":
            cut = data[: len(data) // 2]
            self._send(200, cut)
            self.close_connection = True
            return
        self._send(200, data)

    def _embeddings(self, body: dict) -> None:
        """OpenAI's embeddings response: a scripted vector (first `match` that finds the input) or a
        hashed one; base64 little-endian float32 when the request asks for `encoding_format: base64`."""
        state = self.server.state
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else list(raw or [])
        if not inputs or not all(isinstance(x, str) for x in inputs):
            self._error(400, "scripted server: embeddings 'input' must be a string or a list of strings")
            return
        data = []
        for i, text in enumerate(inputs):
            vector = state.embedding(text, body.get("dimensions"))
            if body.get("encoding_format") == "base64":
                encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            else:
                encoded = vector
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        tokens = sum(_tokens(t) for t in inputs)
        payload = {"object": "list", "data": data, "model": body.get("model", "scripted"),
                   "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        self._send(200, json.dumps(payload).encode())


def _model(model_id: str, created: int) -> dict[str, Any]:
    """An OpenAI model object."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": "optforge-scripted"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


class ScriptedServer:
    """Serve a script on 127.0.0.1 in a background thread. Use as a context manager."""

    def __init__(self, script: str | Path | list | dict, *, port: int = 0, latency_s: float | None = None,
                 cycle: bool | None = None):
        entries, options = load_script(script)
        self._state = _State(
            entries=entries,
            latency_s=float(options.get("latency_s", 0.0) if latency_s is None else latency_s),
            cycle=bool(options.get("cycle", False) if cycle is None else cycle),
            embeddings=options["embeddings"],
            embedding_dim=int(options.get("embedding_dim", DEFAULT_EMBEDDING_DIM)),
            reject_response_format=bool(options.get("reject_response_format", False)),
            models=list(options["models"]),
        )
        self._port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The api_base to configure: http://127.0.0.1:PORT/v1."""
        if self._httpd is None:
            raise RuntimeError("scripted server is not started; call start() or use it as a context manager")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def requests(self) -> list[dict]:
        """Every request body received so far, in arrival order."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def served(self) -> int:
        """How many chat requests reached the server (answered, refused or faulted)."""
        with self._state.lock:
            return len(self._state.requests)

    def start(self) -> "ScriptedServer":
        self._httpd = _Server(("127.0.0.1", self._port), _Handler)
        self._httpd.state = self._state
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="scripted-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "ScriptedServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a scripted OpenAI-compatible chat endpoint on 127.0.0.1.")
    parser.add_argument("script", help="JSON script file (a list of responses and faults)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=None, help="seconds added to every response")
    parser.add_argument("--cycle", action="store_true", help="restart the script when it runs out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    server = ScriptedServer(args.script, port=args.port, latency_s=args.latency, cycle=args.cycle or None).start()
    log.info("serving %s at %s (model: openai/<any name>)", args.script, server.url)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
