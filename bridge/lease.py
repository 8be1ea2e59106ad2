"""One owner per partition: a lease in Redis with fencing tokens, so that a stale owner cannot write.

The engine's state is partitioned (one partition, "default", unless a partition label such as
`cluster` or `tenant` is configured: `partition_of()`). Exactly one process owns a partition at a
time; the others stand by. `PartitionLease` is the lease of one partition for one holder (one
process: `new_holder_id()`), and `PartitionLease.run()` is the owner/standby loop around it.

Protocol
    acquire   One script: if the lease key is free (absent or expired), INCR the partition's fence
              key and SET the lease key to `<token>:<holder>` with PX = ttl. The INCR'd value is the
              holder's **fencing token**: strictly above every token handed out before, never reused.
              Another holder's live lease is left alone (the caller learns who has it and for how
              much longer); this holder's own live lease (a retry whose reply was lost) is granted
              again under a NEW token, which fences off anything still in flight from the old one.
    renew     One script: PEXPIRE the lease key only if it still reads `<token>:<holder>`
              (compare-and-extend). Any acquisition by another holder writes another value, so a
              renew after a takeover finds it lost and returns False.
    release   One script: burn the token (INCR the fence, if it still equals the token) and delete
              the lease key if it still reads `<token>:<holder>` (compare-and-delete). Burning means
              a late write of the releasing process is refused too, and a standby may take over at once.
    fencing   Every write of the owner goes through `fenced_call()`: the script is prefixed with
              `FENCE_GUARD`, which lets it run only if the fence key still holds the writer's
              token. The check happens in Redis, atomically with the write, not in the client: an old
              owner that still believes it holds the lease (it was paused right after checking) is
              refused by the storage itself, because the new owner's acquisition moved the fence.

Key layout (like bridge/store/redis.py, every key starts with `prefix:`; for Redis Cluster make the
prefix a hash tag such as `{alertbridge}`: a fenced write touches the fence key and the store's keys
in one script, so they must share a slot)

    ==========================  ======  ==================================================================
    key                         type    holds
    ==========================  ======  ==================================================================
    P:lease:<partition>         STRING  `<token>:<holder>` of the current owner, PX = ttl (absent: free)
    P:fence:<partition>         STRING  the last token issued or burned (INCR; no expiry, never deleted)
    ==========================  ======  ==================================================================

    The fence key is both the token counter and the fence: one key, so the two can never disagree.
    "The fence equals my token" then means exactly "nobody acquired the partition since I did, and
    I did not release it". `<partition>` has `%`, `{` and `}` percent-encoded, so that a label value
    can never turn into a Redis Cluster hash tag.

Why a local deadline with a margin (`held`)
    Redis expires the lease ttl after it ran the acquire or renew command; the holder cannot know
    when that was, only that it was after it sent the request. So the holder counts from the
    monotonic clock reading taken BEFORE sending: its deadline `sent + ttl - margin` falls before
    the expiry in Redis, whatever the network and Redis delays were, as long as the two monotonic
    clocks advance at the same rate within the margin (`margin` defaults to ttl/10: a rate error
    of 10 %, far above what NTP-disciplined or even free-running quartz clocks show; wall clocks
    are never used, so clock steps do not matter). `held` turns False at the deadline without
    asking Redis: a process that was stopped (SIGSTOP, a long GC or swap pause, a VM migration)
    and wakes up finds `held` False before it writes anything, and `run()` calls `on_lost` at the
    deadline even if Redis never answers. What the deadline cannot cover (a write checked just
    before the deadline and delayed in flight past a takeover) is what the fence in Redis covers.

Takeover time
    The owner renews every `renew_every` (default ttl/3), so it survives a lost renew or two. When
    it dies, its lease expires in Redis at most `ttl` after its last successful renew; a standby
    sleeps until the lease's remaining PTTL (bounded by `renew_every`) and takes over right after
    it: takeover within about `ttl` (plus one Redis round trip), and never before the old owner's
    local deadline. With the default ttl of 5 s: a standby owns the partition about 5 s after the
    owner was killed, rebuilds its state from the journal (the lease is renewed meanwhile), and
    fires the timers that fell due in between: late by at most the takeover plus rebuild time.
    A graceful shutdown releases the lease: the standby takes over within one `renew_every`.

Redis persistence and failover caveat
    The lease lives in one Redis. If Redis loses recent writes (a crash without `appendonly yes`
    and `appendfsync always`, or a failover to a replica that had not received them), a lease can
    be granted twice. Fencing still protects the writes as long as the fence key is never older
    than a token handed out: then the two owners hold different tokens and only the newer one
    passes the guard. If the fence key itself is lost, tokens are reused and nothing protects the
    data: run Redis with the persistence bridge/store/redis.py requires (AOF, fsync always or
    WAITAOF) and, with replicas, make the fence writes durable on them before using a token.

Requests and errors
    Every request is bounded by `timeout` (default ttl/3); Redis errors, connection failures and
    timeouts raise `StoreUnavailable`, a refused fenced write `Fenced`. `run()` never lets them
    out: it treats them as "could not renew" and calls `on_lost` once the local deadline passes.
    `clock` is injected for tests of `held`; `run()` sleeps on the event loop's clock, so `clock`
    must advance at the real rate when `run()` is used.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar, Final

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

from bridge.errors import BridgeError, StoreUnavailable
from bridge.log import get_logger

__all__ = [
    "DEFAULT_PARTITION",
    "DEFAULT_TTL",
    "FENCE_GUARD",
    "Fenced",
    "PartitionLease",
    "fenced_script",
    "new_holder_id",
    "partition_of",
]

#: The partition of every alert when no partition label is configured, or the label is missing.
DEFAULT_PARTITION: Final = "default"
#: Seconds a lease lives in Redis without a renew; also bounds how long a takeover takes.
DEFAULT_TTL: Final = 5.0
#: Shortest sleep of `run()` between two tries (a standby waking at the lease's expiry, a slow reply).
_MIN_PAUSE: Final = 0.01
#: Prefix of the error the guard returns; Redis error replies start with their code.
_FENCED: Final = "FENCED"


class Fenced(BridgeError):
    """A write was refused: this process no longer owns the partition (locally, or by the fence in Redis)."""

    status = 503
    code = "not_partition_owner"

    def __init__(self, partition: str, token: int | None, detail: str) -> None:
        super().__init__(f"partition {partition!r}: {detail}")
        self.partition = partition
        self.token = token


# ------------------------------------------------------------------------------------------ scripts

FENCE_GUARD: Final = """\
--[[ alertbridge partition fence (bridge/lease.py), run before the script below.
KEYS[1] the partition's fence key   ARGV[1] the writer's fencing token
Returns the error FENCED, having run nothing, unless ARGV[1] is still the partition's token.
Then drops both, so that the script below sees its own KEYS and ARGV from index 1. ]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED token ' .. tostring(ARGV[1]) .. ' is not the current partition owner')
end
local fenced_keys, fenced_argv = {}, {}
for i = 2, #KEYS do fenced_keys[i - 1] = KEYS[i] end
for i = 2, #ARGV do fenced_argv[i - 1] = ARGV[i] end
local KEYS, ARGV = fenced_keys, fenced_argv
"""


def fenced_script(source: str) -> str:
    """`source` guarded by `FENCE_GUARD`: call it with KEYS = [fence key, *keys], ARGV = [token, *args].

    A `#!lua` shebang line (which Redis only reads on the first line) stays first. The script's
    own KEYS and ARGV keep their indexes; `#KEYS` and `#ARGV` count only its own.
    """
    if source.startswith("#!"):
        shebang, _, body = source.partition("\n")
        return f"{shebang}\n{FENCE_GUARD}{body}"
    return FENCE_GUARD + source


_ACQUIRE: Final = """#!lua
--[[ Take a partition's lease if it is free, or held by this same holder (a retry whose reply was lost).
KEYS[1] lease (STRING "<token>:<holder>", PX)   KEYS[2] fence (STRING, the last token issued or burned)
ARGV[1] holder   ARGV[2] ttl (ms)
Returns {token} when granted, token = INCR fence: above every token issued before, so a new one also
for this holder's own lease. Returns {0, pttl (ms, -1: no expiry), holder} when another holder has it. ]]
local current = redis.call('GET', KEYS[1])
if current then
  local sep = string.find(current, ':', 1, true)
  local holder = sep and string.sub(current, sep + 1) or current
  if holder ~= ARGV[1] then
    return {0, redis.call('PTTL', KEYS[1]), holder}
  end
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], tostring(token) .. ':' .. ARGV[1], 'PX', ARGV[2])
return {token}
"""

_RENEW: Final = """#!lua
--[[ Extend a lease, only if its holder still holds it under the same token (compare-and-extend).
KEYS[1] lease   ARGV[1] "<token>:<holder>"   ARGV[2] ttl (ms)
Returns 1 if extended, 0 if the lease expired or another holder took it. ]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE: Final = """#!lua
--[[ Give a lease up: burn its token and free the lease, if still this holder's (compare-and-delete).
KEYS[1] lease   KEYS[2] fence   ARGV[1] "<token>:<holder>"   ARGV[2] token
The fence moves past the token only if it still equals it, so late writes carrying it are refused.
Returns 1 if the lease was this holder's and is now free, else 0. ]]
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('INCR', KEYS[2]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


# ------------------------------------------------------------------------------------------ helpers

def partition_of(alert_labels: Mapping[str, str], label: str | None) -> str:
    """The partition of an alert: its value of the partition `label`; "default" without one.

    No label configured, the label missing and an empty value (Prometheus's "not set") all give
    "default", which is therefore shared with a label value spelled "default".
    """
    if label is None:
        return DEFAULT_PARTITION
    return alert_labels.get(label) or DEFAULT_PARTITION


def new_holder_id() -> str:
    """A holder id unique to this process: `host:pid:random` (the random part survives pid reuse)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


OnAcquired = Callable[[int], Awaitable[Any]]
OnLost = Callable[[], Awaitable[Any]]


# -------------------------------------------------------------------------------------------- lease

class PartitionLease:
    """The lease of one partition for one holder: acquire, renew, release, and fenced writes.

    `holder` must be unique per process (`new_holder_id()`). `ttl` is the lease's life in Redis
    without a renew (seconds); `margin` (default ttl/10) is subtracted from it for the local
    deadline; `timeout` (default ttl/3) bounds every request. `clock` is a monotonic clock.
    """

    # Key templates, all in one place.
    LEASE: ClassVar[str] = "{prefix}:lease:{partition}"
    FENCE: ClassVar[str] = "{prefix}:fence:{partition}"

    def __init__(self, client: Redis, partition: str, holder: str, *, ttl: float = DEFAULT_TTL,
                 prefix: str = "alertbridge", clock: Callable[[], float] = time.monotonic,
                 margin: float | None = None, timeout: float | None = None) -> None:
        if not prefix:
            raise ValueError("prefix must not be empty")
        if not partition:
            raise ValueError("partition must not be empty")
        if not holder:
            raise ValueError("holder must not be empty")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        margin = ttl / 10 if margin is None else margin
        if not 0 <= margin < ttl:
            raise ValueError("margin must be at least 0 and below ttl")
        self.client = client
        self.partition = partition
        self.holder = holder
        self.ttl = ttl
        self.margin = margin
        self.timeout = ttl / 3 if timeout is None else timeout
        self.prefix = prefix
        self._clock = clock
        escaped = partition.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
        self.lease_key = self.LEASE.format(prefix=prefix, partition=escaped)
        self.fence_key = self.FENCE.format(prefix=prefix, partition=escaped)
        self._ttl_ms = max(1, round(ttl * 1000))

        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._fenced: dict[str, AsyncScript] = {}  # script source -> its guarded version

        self._token: int | None = None
        self._deadline = float("-inf")
        #: From the last refused acquire: who holds the lease, and for how many more seconds.
        self._other: str | None = None
        self._other_expires_in: float | None = None
        self._down = False  # run(): a Redis outage is being reported (logged once per outage)
        self._log = get_logger("alertbridge.lease").bind(partition=partition, holder=holder)

    # ------------------------------------------------------------------------------------ state

    @property
    def held(self) -> bool:
        """True while this holder holds the lease and its local deadline has not passed (no I/O)."""
        return self._token is not None and self._clock() < self._deadline

    @property
    def token(self) -> int | None:
        """The fencing token of the lease while `held`, else None."""
        return self._token if self.held else None

    def _value(self, token: int) -> str:
        return f"{token}:{self.holder}"

    def _forget(self) -> None:
        self._token = None
        self._deadline = float("-inf")

    # ------------------------------------------------------------------------------- operations

    async def acquire(self) -> int | None:
        """Take the lease if it is free; the new fencing token, or None if another holder has it."""
        sent = self._clock()
        reply = await self._call(self._acquire, [self.lease_key, self.fence_key], [self.holder, self._ttl_ms])
        token = int(reply[0])
        if token == 0:
            self._other = _text(reply[2])
            pttl = int(reply[1])
            self._other_expires_in = pttl / 1000 if pttl >= 0 else None
            return None
        self._other = self._other_expires_in = None
        self._token = token
        self._deadline = sent + self.ttl - self.margin
        return token

    async def renew(self) -> bool:
        """Extend the lease if this holder still holds it under its token; False if it was lost."""
        token = self._token
        if token is None:
            return False
        sent = self._clock()
        extended = await self._call(self._renew, [self.lease_key], [self._value(token), self._ttl_ms])
        if self._token != token:  # released meanwhile
            return False
        if not extended:
            self._forget()
            return False
        self._deadline = sent + self.ttl - self.margin
        return True

    async def release(self) -> bool:
        """Give the lease up and burn its token; True if it was still this holder's in Redis.

        The local state is dropped first: even if Redis cannot be told (StoreUnavailable), this
        object no longer holds the lease, and the lease expires in Redis by itself.
        """
        token = self._token
        if token is None:
            return False
        self._forget()
        released = await self._call(self._release, [self.lease_key, self.fence_key],
                                    [self._value(token), token])
        return bool(released)

    async def current(self) -> tuple[str, int] | None:
        """Who holds the lease in Redis now, as (holder, token); None if it is free."""
        value = await self._request(self.client.get(self.lease_key))
        if value is None:
            return None
        token, _, holder = _text(value).partition(":")
        return holder, int(token)

    async def fenced_call(self, script: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run `script` (Lua, with its own KEYS and ARGV) as this owner's write, guarded by the fence.

        Raises `Fenced` without sending anything if the lease is not `held`, and when Redis
        refuses it because another holder acquired the partition since (nothing of it ran).
        """
        token = self.token
        if token is None:
            raise Fenced(self.partition, None, "not the owner (the lease is not held)")
        guarded = self._fenced.get(script)
        if guarded is None:
            guarded = self._fenced[script] = self.client.register_script(fenced_script(script))
        try:
            return await self._call(guarded, [self.fence_key, *keys], [token, *args])
        except StoreUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, ResponseError) and str(cause).startswith(_FENCED):
                raise Fenced(self.partition, token, f"write refused by redis: {cause}") from cause
            raise

    async def _call(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return await self._request(script(keys=keys, args=args))

    async def _request(self, request: Awaitable[Any]) -> Any:
        """Await one request, bounded by `timeout`; any failure is StoreUnavailable."""
        try:
            async with asyncio.timeout(self.timeout):
                return await request
        except (RedisError, OSError, TimeoutError) as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__} after {self.timeout:g}s"
            raise StoreUnavailable(f"partition lease {self.partition!r}: {detail}") from exc

    # -------------------------------------------------------------------------------------- loop

    async def run(self, on_acquired: OnAcquired, on_lost: OnLost, *, renew_every: float | None = None) -> None:
        """Stand by until the lease is free, own the partition while it is held, and again, until cancelled.

        `await on_acquired(token)` runs when the lease is taken (as a task, while the lease is
        renewed every `renew_every` seconds, default ttl/3: a long rebuild does not lose it);
        `await on_lost()` runs after each on_acquired, once the lease is lost (a renew found it
        taken over, or the local deadline passed without a successful renew), when on_acquired
        raised, or when run() is cancelled. An on_acquired still running then is cancelled first.
        Redis errors never end the loop. When cancelled, the lease is released (after on_lost).
        """
        every = self.ttl / 3 if renew_every is None else renew_every
        if not 0 < every < self.ttl - self.margin:
            raise ValueError("renew_every must be positive and below ttl - margin")
        try:
            while True:
                token = await self._stand_by(every)
                if not await self._own(token, on_acquired, on_lost, every):
                    await asyncio.sleep(every)  # on_acquired failed: let another holder try first
        finally:
            if self._token is not None:  # cancelled while holding it, or right after acquiring it
                await self._release_quietly()

    async def _stand_by(self, every: float) -> int:
        """Try to acquire until granted; sleeps until the other holder's lease expires (at most `every`)."""
        announced = False
        while True:
            pause = every
            try:
                token = await self.acquire()
            except StoreUnavailable as exc:
                self._redis_down(exc)
            else:
                self._redis_up()
                if token is not None:
                    if self.held:
                        return token
                    pause = _MIN_PAUSE  # granted, but the reply came after its own deadline: again
                else:
                    if not announced:
                        announced = True
                        self._log.info("partition lease held by another holder", owner=self._other)
                    if self._other_expires_in is not None:
                        pause = min(every, max(_MIN_PAUSE, self._other_expires_in))
            await asyncio.sleep(pause)

    async def _own(self, token: int, on_acquired: OnAcquired, on_lost: OnLost, every: float) -> bool:
        """Hold the lease from `token` on, until lost; False if on_acquired failed."""
        self._log.info("partition lease acquired", token=token)
        starting = asyncio.ensure_future(on_acquired(token))
        reason = "cancelled"
        try:
            reason = await self._keep(every, starting)
        finally:
            if not starting.done():
                starting.cancel()
                await asyncio.wait([starting])
            if reason != "cancelled":
                self._log.warning("partition lease lost", token=token, reason=reason)
            try:
                await on_lost()
            except Exception:
                self._log.exception("partition on_lost failed", token=token)
            if reason == "start failed":
                await self._release_quietly()
            elif reason != "cancelled":
                self._forget()
        return reason != "start failed"

    async def _keep(self, every: float, starting: asyncio.Future[Any]) -> str:
        """Renew every `every` seconds; returns why the lease ended: taken over, deadline passed, start failed."""
        loop = asyncio.get_running_loop()
        next_renew = loop.time() + every
        while True:
            if starting.done() and (starting.cancelled() or starting.exception() is not None):
                error = None if starting.cancelled() else starting.exception()
                self._log.error("partition owner start failed", exc_info=error)
                return "start failed"
            remaining = self._deadline - self._clock()
            if remaining <= 0:
                return "deadline passed"
            wait = min(next_renew - loop.time(), remaining)
            if wait > 0:
                if starting.done():
                    await asyncio.sleep(wait)
                else:
                    await asyncio.wait([starting], timeout=wait)
                continue
            next_renew = loop.time() + every
            try:
                async with asyncio.timeout(remaining):  # a renew answered after the deadline is no use
                    renewed = await self.renew()
            except (StoreUnavailable, TimeoutError) as exc:
                self._redis_down(exc)
                continue
            self._redis_up()
            if not renewed:
                return "taken over"

    async def _release_quietly(self) -> None:
        token = self._token
        try:
            released = await self.release()
        except StoreUnavailable as exc:
            self._redis_down(exc)
            self._log.warning("partition lease not released; it expires by itself", token=token)
        else:
            self._log.info("partition lease released", token=token, was_held=released)

    def _redis_down(self, exc: BaseException) -> None:
        if not self._down:  # once per outage, not once per retry
            self._down = True
            self._log.warning("partition lease redis unavailable", error=f"{type(exc).__name__}: {exc}")

    def _redis_up(self) -> None:
        if self._down:
            self._down = False
            self._log.info("partition lease redis available again")
