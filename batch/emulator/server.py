"""The emulator's HTTP plumbing: moto's app server and client, and the front's HTTP server.

Both servers are threaded HTTP/1.1 servers on 127.0.0.1 that keep connections alive and can
close them on stop. What the front answers is decided elsewhere (`batch.emulator.front`),
behind the `FrontDecisions` protocol; this module only carries bytes and `Reply` values.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit
from wsgiref.types import WSGIApplication

HOST = "127.0.0.1"
DEFAULT_REGION = "us-east-1"
TARGET_PREFIX = "AWSCognitoIdentityProviderService."
JSON_TYPE = "application/x-amz-json-1.1"
POLL_SECONDS = 0.05  # how soon serve_forever notices shutdown(); stop() waits this long
FORWARDED_HEADERS = ("Content-Type", "X-Amz-Target", "Authorization", "X-Amz-Date")


class EmulatorError(Exception):
    """A call to moto or to the admin API failed; `code` is the Cognito / admin error code."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def json_reply(status: int, payload: Any, *headers: tuple[str, str]) -> Reply:
    return Reply(status, json.dumps(payload).encode(), (("Content-Type", JSON_TYPE), *headers))


def error_reply(status: int, code: str, message: str) -> Reply:
    return json_reply(
        status, {"__type": code, "message": message}, ("x-amzn-ErrorType", f"{code}:")
    )


def auth_header(region: str) -> str:
    # moto routes and picks the region from the credential scope; it checks no signature.
    return (
        f"AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/cognito-idp/aws4_request, "
        "SignedHeaders=host, Signature=x"
    )


class Moto:
    """moto's cognito-idp app on a keep-alive WSGI server, and a keep-alive client for it."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import create_backend_app

        # Serving the cognito-idp app directly skips moto's DomainDispatcherApplication, which
        # rescans moto's package folder on every request (measured ~270 vs ~185 calls/s).
        self.server = _WSGIServer(create_backend_app("cognito-idp"))
        self.port = int(self.server.server_address[1])
        self._local = threading.local()
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            args=(POLL_SECONDS,),
            name="emulator-moto",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        stop_server(self.server, self._thread)

    def _connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
            self._local.conn = conn
        return conn

    def send(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes, str | None]:
        """POST / on this thread's connection; one retry on a stale keep-alive connection."""
        for attempt in (0, 1):
            conn = self._connection(fresh=attempt == 1)
            try:
                conn.request("POST", "/", body, dict(headers))
                response = conn.getresponse()
                data = response.read()
                return response.status, data, response.getheader("x-amzn-RequestId")
            except (OSError, http.client.HTTPException):
                conn.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def call(self, operation: str, payload: Mapping[str, Any], auth: str) -> dict[str, Any]:
        """One Cognito call straight to moto; raises EmulatorError on an error answer."""
        headers = {
            "Content-Type": JSON_TYPE,
            "X-Amz-Target": TARGET_PREFIX + operation,
            "Authorization": auth,
        }
        status, data, _ = self.send(json.dumps(payload).encode(), headers)
        try:
            answer: dict[str, Any] = json.loads(data) if data else {}
        except ValueError:
            answer = {"message": data[:200].decode("utf-8", "replace")}
        if status >= 300:
            code = str(answer.get("__type", "UnknownError")).rpartition("#")[2]
            raise EmulatorError(code, str(answer.get("message", "")), status)
        return answer


class FrontDecisions(Protocol):
    """What the front's HTTP server asks of the front (`batch.emulator.front.Front`)."""

    def admin(self, method: str, path: str, body: bytes) -> Reply: ...

    def cognito(self, body: bytes, headers: Mapping[str, str]) -> Reply | None:
        """None means: close the connection without answering."""
        ...


class _KeepAliveHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive (boto3's connection pool reuses connections), no Nagle, no access
    log; GET and POST read the body and hand it to ``respond``."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        self._respond_to_request()

    def do_GET(self) -> None:
        self._respond_to_request()

    def _respond_to_request(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.respond(self.rfile.read(length) if length else b"")

    def respond(self, body: bytes) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def reply(
        self,
        status: int,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        reason: str | None = None,
    ) -> None:
        self.send_response(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _FrontHandler(_KeepAliveHandler):
    server: FrontServer

    def respond(self, body: bytes) -> None:
        path = urlsplit(self.path).path
        front = self.server.front
        try:
            if path.startswith("/_emulator/"):
                refused = self._admin_refusal()
                reply: Reply | None = refused or front.admin(self.command, path, body)
            elif self.command == "POST":
                headers = {n: self.headers[n] for n in FORWARDED_HEADERS if n in self.headers}
                reply = front.cognito(body, headers)
            else:
                reply = json_reply(404, {"error": "NotFound", "message": path})
        except Exception as exc:  # the emulator's own failure: answer it like a service fault
            print(f"emulator: {type(exc).__name__}: {exc}", file=sys.stderr)
            reply = error_reply(500, "InternalErrorException", f"Emulator error: {exc}")
        if reply is None:
            self.close_connection = True  # the "drop": no status line, no bytes
            return
        self.reply(reply.status, reply.headers, reply.body)

    def _admin_refusal(self) -> Reply | None:
        """The admin API reconfigures the emulator: refuse what a browser page could send.
        DNS rebinding reaches 127.0.0.1 under another host name (so the Host header must be
        ours), and a cross-site form or simple fetch can POST only text/plain or form types
        without a preflight (so a POST must say application/json)."""
        port = self.server.server_address[1]
        if self.headers.get("Host") not in (f"{HOST}:{port}", f"localhost:{port}"):
            return json_reply(403, {"error": "Forbidden", "message": "unexpected Host header"})
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if self.command == "POST" and kind != "application/json":
            return json_reply(
                415, {"error": "UnsupportedMediaType", "message": "POST application/json"}
            )
        return None


class _Server(ThreadingHTTPServer):
    """A threaded HTTP/1.1 server on 127.0.0.1 that can close its keep-alive connections."""

    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 resets connections when many clients start at once

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((HOST, port), handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        # Keep-alive handler threads outlive shutdown(); end them so a stopped server is gone.
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def stop_server(server: _Server, thread: threading.Thread) -> None:
    server.shutdown()
    server.close_open_connections()
    server.server_close()
    thread.join()


class FrontServer(_Server):
    def __init__(self, front: FrontDecisions, port: int) -> None:
        self.front = front
        super().__init__(port, _FrontHandler)


class _WSGIHandler(_KeepAliveHandler):
    # werkzeug's dev server closes every connection after one response (werkzeug 3.x), so each
    # forwarded call paid a TCP connect and a new thread; this minimal one keeps them open.
    server: _WSGIServer

    def respond(self, body: bytes) -> None:
        path, _, query = self.path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, encoding="latin-1"),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "SERVER_NAME": HOST,
            "SERVER_PORT": str(self.server.server_address[1]),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[key] = value
        started: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            started[:] = [status, headers]
            return None

        chunks = self.server.app(environ, start_response)
        try:
            data = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        status, headers = started
        code, _, reason = str(status).partition(" ")
        hop_by_hop = ("content-length", "connection", "transfer-encoding")
        kept = [(n, v) for n, v in headers if n.lower() not in hop_by_hop]
        self.reply(int(code), kept, data, reason)


class _WSGIServer(_Server):
    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        super().__init__(0, _WSGIHandler)
