"""The model server one production variant runs: the framework inference contract.

Run as a script (stdlib only, so it starts fast and needs nothing but the model's own
dependencies): `python model_server.py --model-dir DIR --port N`. It imports the
entry point (SAGEMAKER_PROGRAM, default inference.py) from DIR/code, calls
`model_fn(model_dir)` once, answers GET /ping with 200 once the model is loaded, and
serves POST /invocations through `transform_fn`, or `input_fn` -> `predict_fn` ->
`output_fn`, with JSON/CSV defaults where the script defines none, as the SageMaker
inference toolkit does. A failing handler answers 500 (or the exception's
`status_code`) with the traceback, which InvokeEndpoint turns into ModelError.
"""

from __future__ import annotations

import argparse
import email.utils
import importlib.util
import io
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any


class InferenceError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status


def default_model_fn(model_dir: str) -> Any:
    """Without a model_fn there is no model object; predict_fn then echoes its input."""
    return None


NPY = "application/x-npy"


def _numpy() -> Any:
    """NumPy, for the toolkit's application/x-npy encoding (the SDK's default for the
    SKLearn and PyTorch predictors); imported only when a request uses it."""
    try:
        import numpy
    except ImportError as exc:
        raise InferenceError(415, "application/x-npy needs numpy in the model's "
                                  "environment") from exc
    return numpy


def default_input_fn(body: bytes, content_type: str) -> Any:
    kind = (content_type or "application/json").split(";")[0].strip().lower()
    if kind == NPY:
        return _numpy().load(io.BytesIO(body), allow_pickle=False)
    text = body.decode("utf-8")
    if kind == "application/json":
        return json.loads(text) if text.strip() else None
    if kind == "text/csv":
        rows = [line.split(",") for line in text.splitlines() if line.strip()]
        return [[_number(cell) for cell in row] for row in rows]
    if kind.startswith("text/"):
        return text
    raise InferenceError(415, f"Content type {content_type} is not supported by this model")


def _number(cell: str) -> Any:
    try:
        return float(cell)
    except ValueError:
        return cell.strip()


def default_predict_fn(data: Any, model: Any) -> Any:
    if model is None:
        return data
    if callable(model):
        return model(data)
    predict = getattr(model, "predict", None)
    if predict is None:
        raise InferenceError(500, "The model has neither predict() nor __call__; "
                                  "define predict_fn in inference.py")
    return predict(data)


def default_output_fn(prediction: Any, accept: str) -> tuple[Any, str]:
    kind = (accept or "application/json").split(";")[0].strip().lower()
    if _streams(prediction):
        # A generator predicts in pieces: each goes out as it comes (chunked).
        return (_piece(item) for item in prediction), \
            accept if accept and accept != "*/*" else "application/octet-stream"
    if kind == NPY:
        buffer = io.BytesIO()
        _numpy().save(buffer, _numpy().asarray(prediction), allow_pickle=False)
        return buffer.getvalue(), NPY
    if hasattr(prediction, "tolist"):
        prediction = prediction.tolist()
    if kind in ("application/json", "*/*", ""):
        return json.dumps(prediction).encode(), "application/json"
    if kind == "text/csv":
        rows = prediction if isinstance(prediction, list) else [prediction]
        lines = [",".join(str(c) for c in (r if isinstance(r, list) else [r])) for r in rows]
        return ("\n".join(lines) + "\n").encode(), "text/csv"
    raise InferenceError(406, f"Accept type {accept} is not supported by this model")


def _streams(value: Any) -> bool:
    """True for a result produced in pieces (a generator or other iterator)."""
    return isinstance(value, Iterator) and not isinstance(value, (bytes, str, bytearray))


def _piece(item: Any) -> bytes:
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    if isinstance(item, str):
        return item.encode()
    return json.dumps(item.tolist() if hasattr(item, "tolist") else item).encode()


def load_program(code_dir: str, program: str) -> ModuleType | None:
    path = os.path.join(code_dir, program)
    if not os.path.isfile(path):
        return None
    sys.path.insert(0, code_dir)
    name = os.path.splitext(os.path.basename(program))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Model:
    """The user's handlers (or the defaults) and the loaded model."""

    def __init__(self, model_dir: str, module: ModuleType | None) -> None:
        def pick(name: str, default: Callable[..., Any]) -> Callable[..., Any]:
            found = getattr(module, name, None) if module is not None else None
            return found if callable(found) else default

        self.transform_fn: Callable[..., Any] | None = (
            getattr(module, "transform_fn", None) if module is not None else None)
        self.input_fn = pick("input_fn", default_input_fn)
        self.predict_fn = pick("predict_fn", default_predict_fn)
        self.output_fn = pick("output_fn", default_output_fn)
        self.model = pick("model_fn", default_model_fn)(model_dir)
        self.lock = threading.Lock()

    def invoke(self, body: bytes, content_type: str, accept: str
               ) -> tuple[bytes | Iterator[bytes], str]:
        """The answer and its content type; an iterator answer is streamed piece by
        piece (call with `lock` held until it is consumed)."""
        if self.transform_fn is not None:
            result = self.transform_fn(self.model, body, content_type, accept)
        else:
            data = self.input_fn(body, content_type)
            prediction = self.predict_fn(data, self.model)
            result = self.output_fn(prediction, accept)
        if isinstance(result, tuple):
            payload, kind = result[0], str(result[1])
        else:
            payload, kind = result, accept if accept and accept != "*/*" else "application/json"
        if _streams(payload):
            return (_piece(item) for item in payload), kind
        if isinstance(payload, str):
            payload = payload.encode()
        return bytes(payload), kind


class AccessLog:
    """The access-log lines (one per request, as nginx or TorchServe in AWS's framework
    containers write them), written to stdout in batches: a write and flush per request
    cost the model server a syscall and kobako a wake-up of its log pump per
    invocation. Lines wait at most `delay` seconds."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._pending = threading.Event()
        threading.Thread(target=self._run, name="access-log", daemon=True).start()

    def add(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)
        self._pending.set()

    def _run(self) -> None:
        while True:
            self._pending.wait()
            time.sleep(self.delay)
            self._pending.clear()
            self.flush()

    def flush(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
        if lines:
            sys.stdout.write("".join(lines))
            sys.stdout.flush()


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The Date header, formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def handler_for(model: Model, access_log: AccessLog) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # The head and the body (or each streamed chunk) are separate writes: with
        # Nagle's algorithm the body would wait for the client's delayed ACK (~40 ms).
        disable_nagle_algorithm = True

        def _reply(self, status: int, body: bytes, kind: str = "text/plain") -> None:
            """Head and body in one send: as two, the caller wakes up twice per answer."""
            self.log_request(status, len(body))
            reason = self.responses.get(status, ("",))[0]
            head = (f"HTTP/1.1 {status} {reason}\r\nDate: {_http_date()}\r\n"
                    f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\n\r\n")
            self.wfile.write(head.encode("latin-1") + body)

        def do_GET(self) -> None:
            if self.path == "/ping":
                self._reply(200, b"")
            elif self.path == "/execution-parameters":
                self._reply(200, b'{"MaxConcurrentTransforms":1,"BatchStrategy":"MULTI_RECORD",'
                            b'"MaxPayloadInMB":6}', "application/json")
            else:
                self._reply(404, b"not found")

        def do_POST(self) -> None:
            if self.path != "/invocations":
                self._reply(404, b"not found")
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with model.lock:
                try:
                    payload, kind = model.invoke(body, self.headers.get("Content-Type") or "",
                                                 self.headers.get("Accept") or "")
                except Exception as error:
                    status = getattr(error, "status_code", 500)
                    status = status if isinstance(status, int) and 400 <= status < 600 else 500
                    text = traceback.format_exc()
                    sys.stderr.write(text)
                    self._reply(status, text.encode())
                    return
                if isinstance(payload, bytes):
                    self._reply(200, payload, kind)
                else:
                    self._stream(payload, kind)

        def _stream(self, pieces: Iterator[bytes], kind: str) -> None:
            """200 with a chunked body, one chunk per piece as the model yields it; a
            failure after the first piece can only cut the stream, which the caller sees
            as a broken stream."""
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for piece in pieces:
                    if piece:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            except Exception:
                sys.stderr.write(traceback.format_exc())
                self.close_connection = True
                return
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, format: str, *args: Any) -> None:
            access_log.add(f"{self.address_string()} - {format % args}\n")

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    program = os.environ.get("SAGEMAKER_PROGRAM") or "inference.py"
    module = load_program(os.path.join(args.model_dir, "code"), program)
    model = Model(args.model_dir, module)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(model, AccessLog()))
    print(f"Model server listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
