"""The registry tells "no such alias" from "the registry failed": only the first may read as no champion."""

import threading
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from resources.model_registry import CHAMPION, ModelRegistry, RegistryUnavailable


@contextmanager
def flaky_registry(upstream: str | None, fails):
    """A loopback HTTP proxy in front of an MLflow server: requests ``fails(path)`` picks answer 503.

    With no upstream every request fails, as a registry behind a restarting load balancer does.
    """

    class Handler(BaseHTTPRequestHandler):
        def _forward(self):
            if upstream is None or fails(self.path):
                self.send_response(503)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"temporarily unavailable")
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
            request = urllib.request.Request(upstream + self.path, data=body, method=self.command)
            request.add_header("Content-Type", self.headers.get("Content-Type") or "application/json")
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:
                    status, payload = answer.status, answer.read()
            except urllib.error.HTTPError as error:
                status, payload = error.code, error.read()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_DELETE = _forward

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_no_model_or_no_alias_is_none(tmp_path):
    registry = ModelRegistry(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=str(tmp_path / "a"))
    assert registry.version(CHAMPION) is None  # no registered model at all
    registry.activate().create_registered_model(registry.model_name)
    assert registry.version(CHAMPION) is None  # a model without the alias


def test_a_failing_registry_raises_instead_of_reading_as_no_champion(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with flaky_registry(None, lambda path: True) as url:
        registry = ModelRegistry(tracking_uri=url, artifact_location=str(tmp_path / "a"))
        with pytest.raises(RegistryUnavailable, match="the registry failed"):
            registry.version(CHAMPION)
