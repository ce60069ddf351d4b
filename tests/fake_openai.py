"""A real HTTP server on loopback that speaks enough of the OpenAI wire protocol for lmmrec:
chat completions, embeddings, files (upload, retrieve, content) and batches.

The real ``openai`` client, its retries, the cache and the batch code run against it end to
end. Faults are injected per request (optionally only for requests whose text contains a
marker): 429 with Retry-After, 500, a hung response, invalid JSON, JSON missing a field, an
empty answer, and refusal of ``response_format``. Every request is recorded (path, status,
body, the SHA-256 of its messages) so tests can count calls.

``FakeOpenAI.llama_cpp(...)`` answers like llama.cpp's OpenAI-compatible server
(``llama-cpp-python[server]`` 0.3.x with a small chat GGUF), as measured against the real one:

* it computes one answer at a time (``serial``): a request waits for the ones before it, and
  one whose client gave up while it waited is dropped unanswered ("Disconnected from client
  before llm invoked" in its log; recorded here with status 499);
* it refuses ``response_format: {"type": "json_schema"}`` with HTTP 500 and the pydantic
  message ``Input should be 'text' or 'json_object'``, and takes a schema in its own shape
  ``{"type": "json_object", "schema": {...}}``;
* ``/v1/embeddings`` of a model that does not pool returns one vector per token (a list of
  lists) unless started with a pooling mode (``pooling=True`` here).

Run standalone for benchmarks or manual tries::

    python tests/fake_openai.py --port 8089 --latency 0.2
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

FAULTS = (
    "429",  # rate limited, with Retry-After (retried by the client)
    "500",  # server error (retried by the client)
    "hang",  # no answer within the client's timeout (retried by the client)
    "invalid_json",  # 200 with prose instead of JSON (task-level repair)
    "missing_field",  # 200 with JSON lacking "summary" (task-level repair)
    "empty",  # 200 with an empty message (task-level repair)
)


@dataclass
class Fault:
    kind: str
    match: str | None = None  # only requests whose messages contain this text
    times: int = 1  # how many matching requests it hits


@dataclass
class Record:
    path: str
    status: int
    body: Any
    messages_sha: str | None
    time: float
    fault: str | None = None


def messages_sha(messages: list[dict[str, Any]]) -> str:
    text = json.dumps(messages, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def default_answer(prompt: str) -> dict[str, Any]:
    """A deterministic, valid answer that depends on the prompt."""
    digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8]
    title = re.search(r"Title: (.*)", prompt)
    subject = title.group(1).strip() if title else "this user"
    return {
        "active": [f"quality {digest}", f"appeal of {subject[:40]}"],
        "passive": [f"drawback {digest[:4]}"],
        "summary": f"Motivations of {subject[:60]} ({digest}).",
        "reasoning": "It is what the data says.",
    }


# llama-cpp-python's server answers a "json_schema" response_format with this (HTTP 500).
LLAMA_CPP_FORMAT_REFUSAL = {
    "error": {
        "message": "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n"
        "  Input should be 'text' or 'json_object' [type=literal_error, "
        "input_value='json_schema', input_type=str]",
        "type": "internal_server_error",
        "param": None,
        "code": None,
    }
}


@dataclass
class FakeState:
    api_key: str | None = None
    latency: float = 0.0
    hang_seconds: float = 5.0
    retry_after: str = "0.01"
    supports_json_schema: bool = True
    supports_json_object: bool = True
    batch_polls_until_done: int = 1  # a batch completes on this retrieve
    refuse_batch_create: int = 0  # answer this many POST /batches with 400
    llama_cpp: bool = False  # answer refusals and embeddings the way llama.cpp's server does
    serial: bool = False  # compute one answer at a time; the others queue
    pooling: bool = False  # llama.cpp: embeddings pooled to one vector per text
    compute: threading.Lock = field(default_factory=threading.Lock)
    faults: list[Fault] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    counter: int = 0

    def next_id(self, prefix: str) -> str:
        with self.lock:
            self.counter += 1
            return f"{prefix}-{self.counter:06d}"

    def take_fault(self, text: str) -> str | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and (fault.match is None or fault.match in text):
                    fault.times -= 1
                    return fault.kind
        return None


class _QuietServer(ThreadingHTTPServer):
    """Clients that give up (timeouts, a killed process) reset connections; that is expected
    here and is recorded instead of printed over the test output."""

    errors: list[str]
    request_queue_size = 256  # listen backlog: 32+ clients connect at once
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        self.errors.append(repr(sys.exc_info()[1]))


class FakeOpenAI:
    """``with FakeOpenAI() as server: server.url`` → ``http://127.0.0.1:PORT/v1``."""

    def __init__(self, port: int = 0, **settings: Any) -> None:
        self.state = FakeState(**settings)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = _QuietServer(("127.0.0.1", port), handler)
        self.httpd.errors = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @classmethod
    def llama_cpp(cls, latency: float = 0.0, **settings: Any) -> FakeOpenAI:
        """A server that behaves like llama.cpp's (see the module docstring)."""
        return cls(llama_cpp=True, serial=True, latency=latency, **settings)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- test helpers -----------------------------------------------------------------------

    def add_fault(self, kind: str, match: str | None = None, times: int = 1) -> None:
        assert kind in FAULTS, kind
        with self.state.lock:
            self.state.faults.append(Fault(kind, match, times))

    def records(self, path_suffix: str = "/chat/completions") -> list[Record]:
        with self.state.lock:
            return [r for r in self.state.records if r.path.endswith(path_suffix)]

    def chat_calls(self) -> int:
        return len(self.records("/chat/completions"))

    def abandoned(self) -> int:
        """Requests whose client gave up while they queued (llama.cpp mode)."""
        return sum(r.fault == "disconnected" for r in self.records())

    def answered_shas(self) -> list[str]:
        """Requests that got a good answer (not a 200 carrying an injected bad one)."""
        return [
            r.messages_sha
            for r in self.records("/chat/completions")
            if r.status == 200 and r.messages_sha and r.fault is None
        ]


class _Handler(BaseHTTPRequestHandler):
    state: FakeState
    protocol_version = "HTTP/1.1"
    # Like a production server: TCP_NODELAY, and the status line, headers and body leave in
    # one write (a buffered wfile, flushed after each request). Without these the body waited
    # on Nagle's algorithm for the ACK of the headers (the client's delayed ACK: up to 40 ms a
    # call), which capped the benchmark at ~70% of the ideal rate whatever the client did.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- plumbing ---------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> None:
        data = raw if raw is not None else json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header(
                "Content-Type", "application/json" if raw is None else "application/octet-stream"
            )
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(
            status, {"error": {"message": message, "type": "fake_error", "code": None}}, headers
        )

    def _record(
        self, status: int, body: Any, sha: str | None = None, fault: str | None = None
    ) -> None:
        with self.state.lock:
            self.state.records.append(Record(self.path, status, body, sha, time.time(), fault))

    def _authorised(self) -> bool:
        if self.state.api_key is None:
            return True
        if self.headers.get("Authorization") == f"Bearer {self.state.api_key}":
            return True
        self._record(401, None)
        self._error(401, "Incorrect API key provided.")
        return False

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # -- routes -----------------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802
        raw = self._body()
        if not self._authorised():
            return
        path = self.path.split("?")[0]
        if path.endswith("/chat/completions"):
            status, payload, headers = self._chat(json.loads(raw), record=True)
            if status is None:
                return
            self._send(status, payload, headers)
        elif path.endswith("/embeddings"):
            self._embeddings(json.loads(raw))
        elif path.endswith("/files"):
            self._upload(raw)
        elif path.endswith("/batches"):
            self._create_batch(json.loads(raw))
        else:
            self._error(404, f"no route {path}")

    def do_GET(self) -> None:  # noqa: N802
        if not self._authorised():
            return
        path = self.path.split("?")[0]
        match = re.search(r"/files/([^/]+)/content$", path)
        if match:
            stored = self.state.files.get(match.group(1))
            if stored is None:
                self._error(404, "no such file")
                return
            self._record(200, None)
            self._send(200, None, raw=stored["content"])
            return
        match = re.search(r"/files/([^/]+)$", path)
        if match and match.group(1) in self.state.files:
            self._send(200, self.state.files[match.group(1)]["object"])
            return
        if path.endswith("/batches"):
            batches = [b["object"] for b in self.state.batches.values()]
            self._send(
                200,
                {
                    "object": "list",
                    "data": batches,
                    "has_more": False,
                    "first_id": batches[0]["id"] if batches else None,
                    "last_id": batches[-1]["id"] if batches else None,
                },
            )
            return
        match = re.search(r"/batches/([^/]+)$", path)
        if match and match.group(1) in self.state.batches:
            self._record(200, None)
            self._send(200, self._poll_batch(match.group(1)))
            return
        self._error(404, f"no route {path}")

    # -- chat -------------------------------------------------------------------------------

    def _chat(self, body: dict[str, Any], record: bool) -> tuple[int | None, Any, dict[str, str]]:
        """(status, payload, headers); status None when the connection was left hanging."""
        state = self.state
        messages = body.get("messages") or []
        sha = messages_sha(messages)
        text = "\n".join(str(m.get("content", "")) for m in messages)
        response_format = (body.get("response_format") or {}).get("type")
        if response_format == "json_schema" and state.llama_cpp:
            if record:
                self._record(500, body, sha, "refuse_schema")
            return 500, LLAMA_CPP_FORMAT_REFUSAL, {}
        if response_format == "json_schema" and not state.supports_json_schema:
            if record:
                self._record(400, body, sha, "refuse_schema")
            return (
                400,
                {
                    "error": {
                        "message": "response_format json_schema is not supported",
                        "type": "invalid_request_error",
                    }
                },
                {},
            )
        if response_format == "json_object" and not state.supports_json_object:
            if record:
                self._record(400, body, sha, "refuse_json_object")
            return (
                400,
                {
                    "error": {
                        "message": "response_format json_object is not supported",
                        "type": "invalid_request_error",
                    }
                },
                {},
            )
        fault = state.take_fault(text)
        if state.serial and record:
            with state.compute:  # one answer at a time; the others wait here
                if self._client_gone():
                    self._record(499, body, sha, "disconnected")
                    return None, None, {}
                if state.latency:
                    state.stop.wait(state.latency)
        elif state.latency:
            state.stop.wait(state.latency)
        if fault == "429":
            if record:
                self._record(429, body, sha, fault)
            return (
                429,
                {"error": {"message": "Rate limit reached", "type": "rate_limit"}},
                {"Retry-After": state.retry_after},
            )
        if fault == "500":
            if record:
                self._record(500, body, sha, fault)
            return (
                500,
                {"error": {"message": "The server had an error", "type": "server_error"}},
                {"Retry-After": state.retry_after},
            )
        if fault == "hang":
            if record:
                self._record(0, body, sha, fault)
            state.stop.wait(state.hang_seconds)
            if not record:
                return 500, {"error": {"message": "hung"}}, {}
            return None, None, {}
        last_user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        first_user = next((m["content"] for m in messages if m.get("role") == "user"), "")
        answer = default_answer(first_user if "could not be used" in last_user else last_user)
        content = json.dumps(answer)
        if fault == "invalid_json":
            content = "Sure! Here are the motivations: active ones are quality and price."
        elif fault == "missing_field":
            content = json.dumps({k: v for k, v in answer.items() if k != "summary"})
        elif fault == "empty":
            content = ""
        elif response_format is None:
            content = f"Here is the analysis.\n```json\n{content}\n```\nHope this helps."
        prompt_tokens = len(text) // 4
        payload = {
            "id": f"chatcmpl-{sha[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(content) // 4,
                "total_tokens": prompt_tokens + len(content) // 4,
            },
        }
        if record:
            self._record(200, body, sha, fault)
        return 200, payload, {}

    def _client_gone(self) -> bool:
        """True when the client closed the connection (it timed out, or was killed)."""
        import select
        import socket

        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    # -- embeddings -------------------------------------------------------------------------

    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        dims = int(body.get("dimensions") or 64)
        fault = self.state.take_fault("\n".join(map(str, inputs)))
        if self.state.latency:
            self.state.stop.wait(self.state.latency)
        if fault in ("429", "500"):
            self._record(int(fault), body)
            self._error(int(fault), "try again", {"Retry-After": self.state.retry_after})
            return
        data = []
        for index, text in enumerate(inputs):
            seed = int(hashlib.sha256(str(text).encode("utf-8")).hexdigest()[:8], 16)
            vector = np.random.default_rng(seed).standard_normal(dims).astype(np.float32)
            if self.state.llama_cpp and not self.state.pooling:
                # One vector per token (words + the BOS token), as a non-pooling model gives.
                tokens = len(str(text).split()) + 1
                per_token = np.random.default_rng(seed).standard_normal((tokens, dims))
                data.append({"object": "embedding", "index": index, "embedding": per_token.tolist()})
                continue
            if body.get("encoding_format") == "base64":
                embedding: Any = base64.b64encode(vector.tobytes()).decode("ascii")
            else:
                embedding = vector.tolist()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(str(t)) // 4 for t in inputs)
        self._record(200, body)
        self._send(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    # -- files and batches ------------------------------------------------------------------

    def _upload(self, raw: bytes) -> None:
        header = f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + raw)
        content = b""
        filename = "upload.jsonl"
        purpose = "batch"
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name == "file":
                content = part.get_payload(decode=True) or b""
                filename = part.get_filename() or filename
            elif name == "purpose":
                purpose = (part.get_payload(decode=True) or b"").decode()
        file_id = self.state.next_id("file")
        obj = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        self.state.files[file_id] = {"object": obj, "content": content}
        self._record(200, {"purpose": purpose, "bytes": len(content)})
        self._send(200, obj)

    def _create_batch(self, body: dict[str, Any]) -> None:
        with self.state.lock:
            refuse = self.state.refuse_batch_create > 0
            self.state.refuse_batch_create -= int(refuse)
        if refuse:
            self._record(400, None)
            self._error(400, "batch creation refused (injected)")
            return
        if body.get("input_file_id") not in self.state.files:
            self._error(400, "input file not found")
            return
        batch_id = self.state.next_id("batch")
        obj = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "input_file_id": body["input_file_id"],
            "completion_window": body.get("completion_window", "24h"),
            "status": "validating",
            "created_at": int(time.time()),
            "output_file_id": None,
            "error_file_id": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
        }
        self.state.batches[batch_id] = {"object": obj, "polls": 0}
        self._record(200, body)
        self._send(200, obj)

    def _poll_batch(self, batch_id: str) -> dict[str, Any]:
        entry = self.state.batches[batch_id]
        obj = entry["object"]
        entry["polls"] += 1
        if obj["status"] != "completed" and entry["polls"] >= self.state.batch_polls_until_done:
            self._run_batch(obj)
        elif obj["status"] == "validating":
            obj["status"] = "in_progress"
        return obj

    def _run_batch(self, obj: dict[str, Any]) -> None:
        lines = self.state.files[obj["input_file_id"]]["content"].decode("utf-8").splitlines()
        outputs, errors = [], []
        for line in lines:
            if not line.strip():
                continue
            request = json.loads(line)
            status, payload, _ = self._chat(request["body"], record=False)
            with self.state.lock:
                self.state.records.append(
                    Record(
                        "batch:chat.completions",
                        status or 0,
                        request["body"],
                        messages_sha(request["body"].get("messages") or []),
                        time.time(),
                    )
                )
            entry = {
                "id": f"resp-{request['custom_id'][:8]}",
                "custom_id": request["custom_id"],
                "response": {"status_code": status or 500, "request_id": "req", "body": payload},
                "error": None,
            }
            (outputs if status == 200 else errors).append(json.dumps(entry))
        for kind, rows in (("output_file_id", outputs), ("error_file_id", errors)):
            if rows:
                file_id = self.state.next_id("file")
                content = ("\n".join(rows) + "\n").encode("utf-8")
                self.state.files[file_id] = {
                    "object": {
                        "id": file_id,
                        "object": "file",
                        "bytes": len(content),
                        "created_at": int(time.time()),
                        "filename": f"{kind}.jsonl",
                        "purpose": "batch_output",
                        "status": "processed",
                    },
                    "content": content,
                }
                obj[kind] = file_id
        obj["status"] = "completed"
        obj["request_counts"] = {
            "total": len(outputs) + len(errors),
            "completed": len(outputs),
            "failed": len(errors),
        }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument(
        "--llama-cpp", action="store_true", help="behave like llama.cpp (one answer at a time)"
    )
    args = parser.parse_args()
    make = FakeOpenAI.llama_cpp if args.llama_cpp else FakeOpenAI
    with make(port=args.port, latency=args.latency) as server:
        print(server.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
