"""A real `redis-server` for tests: on a free loopback port, with its data in a temp dir.

    with running_redis() as server:          # or RedisServer(dir).start() ... .close()
        store = RedisStore(server.url)
        server.stop(); server.start()        # an outage: same port, same dir, AOF reloaded
        server.kill(); server.start()        # a crash (SIGKILL): only what was fsynced survives

The server runs with `--appendonly yes --appendfsync always --save ''`: what production needs for
"durable before 2xx" (see bridge/store/redis.py), and no RDB snapshots to muddy crash tests. Tests
never use a Redis they did not start (a developer's 127.0.0.1:6379 stays untouched).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

__all__ = ["NOT_INSTALLED", "RedisServer", "free_port", "running_redis"]

NOT_INSTALLED = "redis-server is not installed: apt-get install redis-server (.ci/run installs it)"
#: Seconds a server gets to answer PING after it was started, and to exit after SIGTERM.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server subprocess; `start()` again after `stop()`/`kill()` reuses its port and dir."""

    def __init__(self, data_dir: Path, *extra_args: str) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.fail(NOT_INSTALLED, pytrace=False)
        self.dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.extra_args = extra_args
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A plain client of this server (for checks the store's API does not offer)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    # ------------------------------------------------------------------------------------- lifecycle

    def start(self) -> RedisServer:
        """Start the server and wait (bounded) until it answers PING with its dataset loaded."""
        if self.process is not None:
            raise RuntimeError("redis-server is already running")
        if self.port:  # a restart: the same port, so that clients reconnect to it
            self._launch_and_wait()
            return self
        for _ in range(3):  # a free port can be taken between free_port() and the bind
            self.port = free_port()
            try:
                self._launch_and_wait()
                return self
            except _AddressInUse:
                continue
        raise RuntimeError("redis-server found no free port in 3 tries")

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM: it flushes the AOF and exits)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """Crash the server (SIGKILL): it writes nothing more."""
        self._signal(signal.SIGKILL)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing is answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Unfreeze a paused server (SIGCONT)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Kill the server if it runs; the data dir is left to its owner."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGKILL's cleanup
            self.kill()

    # -------------------------------------------------------------------------------------- internals

    def _launch_and_wait(self) -> None:
        assert self.binary is not None
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
                "--logfile", str(self.log), *self.extra_args]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        probe = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            while True:
                if self.process.poll() is not None:
                    self.process = None
                    log = self._log_tail()
                    if "Address already in use" in log:
                        raise _AddressInUse(log)
                    raise RuntimeError(f"redis-server exited at start:\n{log}")
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    if probe.ping():
                        return
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"redis-server did not answer PING in {START_TIMEOUT:g}s:\n"
                                       f"{self._log_tail()}")
                time.sleep(0.02)  # bounded polling for the server to come up
        finally:
            probe.close()

    def _signal(self, sig: signal.Signals) -> None:
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
        self.process = None

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class _AddressInUse(RuntimeError):
    pass


@contextlib.contextmanager
def running_redis(data_dir: Path | None = None, *extra_args: str) -> Iterator[RedisServer]:
    """A started server, killed on exit; its data dir is `data_dir`, or a temp dir removed on exit."""
    made = data_dir is None
    path = Path(tempfile.mkdtemp(prefix="alertbridge-redis-")) if data_dir is None else data_dir
    try:
        server = RedisServer(path, *extra_args).start()
        try:
            yield server
        finally:
            server.close()
    finally:
        if made:
            shutil.rmtree(path, ignore_errors=True)

