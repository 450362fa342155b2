"""The emulator's S3: moto's S3 app on its own port of 127.0.0.1, with a thin front.

moto's server holds every service; this serves its S3 app (path-style requests, which is what
botocore sends to an IP endpoint) so tests and the demo exercise S3 over real HTTP. Point a
client at it with ``AWS_ENDPOINT_URL_S3=Emulator.s3_endpoint_url``: botocore reads that
variable itself, as the AWS CLI does.

The front adds two things moto lacks: denied prefixes (``deny``), answered ``403
AccessDenied`` as S3 does for a missing permission (moto enforces IAM only when authentication
is switched on for the whole process), and request counts by method (``stats``), so a test or
a benchmark can see how many GETs a read took.

What moto 5.2.5's S3 honours for conditional requests (read in moto/s3/responses.py and
checked over HTTP in tests/test_storage.py): PutObject with ``If-None-Match: *`` (412
PreconditionFailed when the key exists) and ``If-Match: ETAG`` (412 on a different ETag, 404
NoSuchKey when there is no object); CompleteMultipartUpload ``If-None-Match: *``;
GetObject/HeadObject ``If-Match`` / ``If-None-Match``; DeleteObject ``If-Match``. moto checks
and then writes without a lock, so two racing conditional PUTs can both succeed there; real S3
lets exactly one win (the other gets 412, or 409 ConditionalRequestConflict while both are in
flight). A test of that race needs real S3, not moto.
"""

from __future__ import annotations

import html
import io
import re
import threading
from collections.abc import Iterable
from typing import Any

from batch.emulator.server import HOST, POLL_SECONDS

_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)


class S3Server:
    """moto's S3 on a threaded werkzeug server bound to 127.0.0.1."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import create_backend_app
        from werkzeug.serving import WSGIRequestHandler, make_server

        class _Quiet(WSGIRequestHandler):
            def log(self, type: str, message: str, *args: Any) -> None:
                pass

        self._app = create_backend_app("s3")
        self._lock = threading.Lock()
        self._denied: set[tuple[str, str]] = set()
        self._denied_deletes: set[tuple[str, str]] = set()
        self._counts: dict[str, int] = {}
        self.server = make_server(HOST, 0, self._wsgi, threaded=True, request_handler=_Quiet)
        self.port = int(self.server.server_port)
        self._thread = threading.Thread(target=self.server.serve_forever, args=(POLL_SECONDS,),
                                        name="emulator-s3", daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    def deny(self, bucket: str, prefix: str = "", *, action: str = "") -> None:
        """Answer 403 AccessDenied for every request on ``bucket`` whose key starts with
        ``prefix`` (the whole bucket, listing included, when ``prefix`` is empty).
        ``action="DeleteObject"``: only deletes are denied, as a policy without
        ``s3:DeleteObject`` does: DeleteObject answers 403, and DeleteObjects answers 200 with
        an ``AccessDenied`` error for each key under the prefix (S3's own behaviour)."""
        if action not in ("", "DeleteObject"):
            raise ValueError(f"deny: unknown action {action!r}")
        with self._lock:
            if action:
                self._denied_deletes.add((bucket, prefix))
            else:
                self._denied.add((bucket, prefix))

    def reset(self) -> None:
        """Forget denials and counts; moto's buckets and objects stay."""
        with self._lock:
            self._denied.clear()
            self._denied_deletes.clear()
            self._counts.clear()

    def stats(self) -> dict[str, int]:
        """Requests served, by HTTP method."""
        with self._lock:
            return dict(self._counts)

    def _is_denied(self, path: str, method: str = "GET") -> bool:
        bucket, _, key = path.lstrip("/").partition("/")
        with self._lock:
            rules = self._denied | (self._denied_deletes if method == "DELETE" else set())
            return any(b == bucket and key.startswith(p) for b, p in rules)

    def _refused_deletes(self, environ: dict[str, Any]) -> bytes | None:
        """A DeleteObjects whose every key is under a delete-denied prefix: S3's answer, one
        ``AccessDenied`` error a key. (A request mixing allowed and denied keys goes to moto
        whole: the tests do not send one.)"""
        bucket = str(environ.get("PATH_INFO", "")).strip("/").partition("/")[0]
        with self._lock:
            prefixes = [p for b, p in self._denied_deletes if b == bucket]
        if not prefixes:
            return None
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size)
        environ["wsgi.input"] = io.BytesIO(body)
        keys = [html.unescape(k) for k in re.findall(r"<Key>(.*?)</Key>", body.decode())]
        if not keys or not all(any(k.startswith(p) for p in prefixes) for k in keys):
            return None
        errors = "".join(f"<Error><Key>{html.escape(k)}</Key><Code>AccessDenied</Code>"
                         "<Message>Access Denied</Message></Error>" for k in keys)
        return ('<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult xmlns='
                f'"http://s3.amazonaws.com/doc/2006-03-01/">{errors}</DeleteResult>').encode()

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", ""))
        with self._lock:
            self._counts[method] = self._counts.get(method, 0) + 1
        query = str(environ.get("QUERY_STRING", "")).split("&")
        if method == "POST" and any(q.partition("=")[0] == "delete" for q in query):
            refused = self._refused_deletes(environ)
            if refused is not None:
                start_response("200 OK", [("Content-Type", "application/xml"),
                                          ("Content-Length", str(len(refused)))])
                return [refused]
        if self._is_denied(str(environ.get("PATH_INFO", "")), method):
            start_response("403 Forbidden", [("Content-Type", "application/xml"),
                                             ("Content-Length", str(len(_DENIED)))])
            return [b"" if method == "HEAD" else _DENIED]
        result: Iterable[bytes] = self._app(environ, start_response)
        return result
