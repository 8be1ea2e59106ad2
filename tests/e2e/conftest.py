"""End-to-end fixtures: real processes on free loopback ports, cleaned up after each test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@dataclass
class Receiver:
    """A fake webhook receiver on loopback, run in its own thread; records every request."""

    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            with self._lock:
                self.requests.append({"path": request.path, "headers": dict(request.headers),
                                      "json": json.loads(body) if body else None})
            return web.Response(status=200)

        async def start() -> web.AppRunner:
            app = web.Application()
            app.router.add_post("/{tail:.*}", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return runner

        self._runner = self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> Receiver:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        async def stop() -> None:
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def actions(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(r["json"]["incident"]["id"], r["json"]["action"]) for r in self.requests if r["json"]]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


@dataclass
class Server:
    """`alertbridge serve` as a subprocess on a free port."""

    config: dict[str, Any]
    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        config_path = self.data_dir.parent / f"config-{self.port}.yaml"
        config_path.write_text(yaml.safe_dump(self.config))
        self.log_path = self.data_dir.parent / f"serve-{self.port}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve", "--config", str(config_path),
             "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir)],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
        )
        wait_until(self._ready, 30, "alertbridge /readyz")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"alertbridge exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return http("GET", self.base + "/readyz")[0] == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        code = self.proc.returncode
        self.proc = None
        return code

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        return http("POST", self.base + path, body, {"Content-Type": "application/json", **(headers or {})})

    def get_json(self, path: str) -> Any:
        status, body = http("GET", self.base + path)
        assert status == 200, (status, body)
        return json.loads(body)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    """Servers a test starts are stopped (and their logs shown on failure) afterwards."""
    started: list[Server] = []
    yield started
    for server in started:
        with contextlib.suppress(Exception):
            server.stop()


def e2e_config(sink_url: str, **route: Any) -> dict[str, Any]:
    return {
        "sources": [{"name": "am", "type": "alertmanager"}, {"name": "prom", "type": "prometheus"},
                    {"name": "pagerduty_events_v2", "type": "pagerduty"}],
        "sinks": [{"name": "hook", "type": "webhook", "url": sink_url}],
        "routes": [{"name": "default", "group_by": ["alertname"], "group_wait": 0, "group_interval": 0,
                    "sinks": ["hook"], **route}],
        "dispatch": {"initial_backoff": "100ms", "max_backoff": "1s"},
        "server": {"tick": "100ms"},
    }
