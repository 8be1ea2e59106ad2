"""`alertbridge cluster`: distributed mode on one machine without Docker (`make run-distributed`).

Starts, on loopback: a `redis-server` with AOF on (unless `--redis URL` names one), `--replicas`
`alertbridge serve --redis URL` processes, `--workers` `rq worker --with-scheduler` processes,
and a round-robin TCP load balancer on `--listen` in front of the replicas (a connection that a
replica refuses goes to the next one). Ctrl-C stops everything. The same topology as
docker-compose.yml, for people who cannot run Docker; in production use nginx or HAProxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["run_cluster"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rq_command() -> list[str]:
    beside = Path(sys.executable).with_name("rq")
    found = str(beside) if beside.exists() else shutil.which("rq")
    if found is None:
        raise SystemExit("rq is not installed (pip install rq)")
    return [found]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class _Balancer:
    """Round robin over `backends`; a backend that refuses the connection is skipped."""

    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self._next = itertools.cycle(range(len(backends)))

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        for _ in self.backends:
            host, port = self.backends[next(self._next)]
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                continue
            await asyncio.gather(_pipe(client_reader, writer), _pipe(reader, client_writer))
            return
        client_writer.close()


def run_cluster(config: Path, listen: str, replicas: int, workers: int, data_dir: Path,
                redis_url: str | None) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    children: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "ALERTBRIDGE_CONFIG": str(config.resolve()), "PYTHONUNBUFFERED": "1"}
    started_redis = redis_url is None
    try:
        if redis_url is None:
            server = shutil.which("redis-server")
            if server is None:
                print("redis-server is not installed: apt-get install redis-server, or pass --redis URL",
                      file=sys.stderr)
                return 2
            port = _free_port()
            (data_dir / "redis").mkdir(exist_ok=True)
            children.append(subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str((data_dir / "redis").resolve()),
                 "--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction",
                 "--save", ""], stdout=subprocess.DEVNULL))
            redis_url = f"redis://127.0.0.1:{port}/0"
            _wait_port(port)
        env["ALERTBRIDGE_REDIS"] = redis_url
        ports = [_free_port() for _ in range(replicas)]
        for i, port in enumerate(ports):
            children.append(subprocess.Popen(
                [sys.executable, "-m", "bridge", "serve", "--config", str(config), "--redis", redis_url,
                 "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir / f"replica-{i + 1}")], env=env))
        for _ in range(workers):
            children.append(subprocess.Popen([*_rq_command(), "worker", "--with-scheduler",
                                              "-w", "rq.worker.SimpleWorker", "--url", redis_url, _queue(config)],
                                             env=env))
        host, _, lb_port = listen.rpartition(":")
        print(f"alertbridge cluster: redis {redis_url}, replicas on {', '.join(map(str, ports))}, "
              f"{workers} rq workers; POST to http://{listen}", flush=True)
        asyncio.run(_serve_balancer(host or "127.0.0.1", int(lb_port), [("127.0.0.1", p) for p in ports],
                                    children))
        return 0
    finally:
        # the replicas and workers first, Redis (the first child, when started here) last
        own_redis = children[:1] if children and started_redis else []
        for group in (children[len(own_redis):], own_redis):
            for child in group:
                if child.poll() is None:
                    child.terminate()
            for child in group:
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    child.kill()


def _queue(config: Path) -> str:
    from bridge.settings import load_settings

    return str(load_settings(config).redis.queue)


def _wait_port(port: int, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise SystemExit(f"redis-server did not start on port {port}")


async def _serve_balancer(host: str, port: int, backends: list[tuple[str, int]], children: list[Any]) -> None:
    balancer = _Balancer(backends)
    server = await asyncio.start_server(balancer.handle, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def watch() -> None:  # a child that exits ends the cluster (its log says why)
        while not stop.is_set():
            if any(child.poll() is not None for child in children):
                print("a cluster process exited; stopping", file=sys.stderr, flush=True)
                stop.set()
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch())
    async with server:
        await stop.wait()
    watcher.cancel()
