"""The distributed-mode store: journal and outbox in Redis, shared by every alertbridge process.

`RedisStore` satisfies the same `Store` contract as `SQLiteStore`, with the same semantics, return
values and ordering guarantees, and it is checked by the same contract tests. It needs Redis >= 7.0
(Lua scripts with flags, `XADD key 0-*`); on Redis >= 7.2 it also confirms every write with
`WAITAOF`.

Key layout (every key starts with `prefix:`; for Redis Cluster, make the prefix a hash tag such as
`{alertbridge}` so that all keys live in one slot, as the scripts and transactions need)

    ==================================  ======  ====================================================
    key                                 type    holds
    ==================================  ======  ====================================================
    P:journal                           STREAM  one entry per journaled input, ID `0-<seq>`; fields
                                                at, kind, source, data (JSON), writer
    P:writers                           HASH    writer id -> fence token, one per open RedisStore
    P:outbox:ids                        STRING  the last delivery id handed out (INCR)
    P:outbox:keys                       HASH    idempotency key -> delivery id (enqueue dedup)
    P:outbox:delivery:<id>              HASH    one delivery: the `Delivery` fields and its `lane`
    P:outbox:lane:<sink>:<incident>     ZSET    the pending delivery ids of one (sink, incident),
                                                score = id; the lowest is the lane's head
    P:outbox:heads                      ZSET    the head of every non-empty lane, score = its
                                                next_at: the due index `due()` and `next_due_at()` read
    P:outbox:dead                       ZSET    dead delivery ids, score = id (newest first: reversed)
    P:outbox:counts                     HASH    state -> how many deliveries are in it
    ==================================  ======  ====================================================

    `due(now, limit)` reads the heads with next_at <= now and returns the lowest ids first (one
    read-only script, sorting the due heads: cheap for thousands of due lanes, so also after an
    outage of a sink). Every change of a delivery moves its lane's head entry in the same script.

    `<sink>` has `%` and `:` percent-encoded, so a lane key names exactly one (sink, incident).
    Deliveries are never deleted (as in SQLite); a future pruning of delivered ones must keep
    their idempotency keys long enough that a rebuild cannot re-enqueue them.

Why a stream for the journal
    Entries are added with `XADD P:journal 0-* ...`: the server picks the ID `0-<last seq + 1>`, so
    the seq is assigned by Redis itself, atomically with the write, with no separate counter that
    could drift from the log. The stream refuses any ID that is not above its last one (even after
    deletions), so seqs only grow; its radix tree makes `entries(after_seq)` an O(log n) seek plus
    a page read (`XRANGE (0-<after> + COUNT n`), where a list would walk to the offset; and other
    processes can tail it (`XREAD`) in distributed mode. Since Redis runs one command or script at
    a time, seq order is commit order across every process that appends, and an entry is visible
    only once all lower seqs are: a reader never sees a gap that fills in later.

Writes, batching and atomicity
    Like SQLite's writer thread, one writer task per store takes every queued write (up to
    `max_batch`) and sends them as ONE `MULTI ... EXEC` transaction, one round trip: each run of
    appends is one call of the append script, each outbox change one call of its script. Redis
    executes a transaction whole or not at all (a dropped connection before `EXEC` discards it;
    AOF logs it inside MULTI/EXEC, and on load a truncated tail transaction is dropped whole), and
    every script checks before it writes, so no reply can leave an entry without its seq, or a
    delivery without its lane and index entries. Scripts are declared with `#!lua`, which makes
    Redis refuse them up front when over `maxmemory` instead of failing between two writes. An
    outbox change that fails on its own (a Redis error for that command) fails alone.

    Batches run one after the other, and `on_commit(entries)` is called on the event loop with
    each batch's journal entries, in seq order, before the awaiting `append()` calls resume, as in
    SQLite. `on_commit` sees the entries THIS store appended; entries other processes append are
    read with `entries(after_seq)`.

    A batch whose connection fails after it was sent is in doubt: it may or may not have run.
    Every `append()` of it raises `StoreUnavailable`, and the store resolves the doubt before its
    next write: it fences its own old batches off (a new random token in `P:writers`; the append
    script writes nothing unless it carries the writer's current token, so a stale `EXEC` that
    Redis runs late, e.g. after a timeout, appends nothing), then reads the journal after the last
    seq it knew for entries marked with its writer id, and hands those to `on_commit` first. So
    `on_commit` sees every entry this store committed exactly once, in seq order, and the engine
    it feeds matches what a replay would rebuild. (The client of such an `append()` got a 503 and
    retries: the input is then journaled twice, as after a cancelled SQLite append.) Outbox
    changes need no such care: enqueue is idempotent by key, and a mark that lands late only
    repeats what the dispatcher re-decides.

Durability (a 2xx means journaled)
    A write returns once Redis has it on disk. On Redis >= 7.2 every batch is followed by
    `WAITAOF 1 0 <ms>`, which returns once the local AOF is fsynced up to it (whatever
    `appendfsync` says); a batch it cannot confirm raises `StoreUnavailable` to its callers
    (its entries are committed, so `on_commit` still sees them). Redis 7.0 and 7.1 have no WAITAOF:
    there the guarantee comes from `appendfsync always`, under which Redis fsyncs the AOF before it
    sends any reply; the store warns at connect if it can read another setting. With
    `require_aof=True` (the default) the store refuses to write to a Redis with `appendonly no`.

    Production Redis needs:
      appendonly yes            the AOF is the only per-write persistence (RDB snapshots lose
                                everything since the last one)
      appendfsync always        on Redis < 7.2, required for "durable before 2xx". On >= 7.2,
                                `everysec` is enough for that promise (WAITAOF waits for the next
                                fsync, adding up to 1 s of latency to a write, shared by a batch)
                                and `always` trades throughput for the lowest write latency
      maxmemory-policy noeviction   any eviction silently loses journal entries and deliveries;
                                with noeviction a full Redis refuses writes (503), loses nothing
      aof-use-rdb-preamble yes, auto-aof-rewrite-*  keep restarts fast as the journal grows

Unavailability
    Connection errors, timeouts and Redis errors become `StoreUnavailable` (HTTP 503), bounded by
    `timeout` (per command) and `connect_timeout`; redis-py's automatic retries are off, because
    resending an `EXEC` whose reply was lost would journal it twice. When Redis returns, the next
    call reconnects: the same store object works again, nothing to restart.

Loops and threads
    The async methods must be called from one event loop (the redis.asyncio connections belong to
    it); `entries()` and `last_seq()` use a separate synchronous connection, for the startup
    rebuild.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import secrets
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Final

import orjson
import redis
import redis.asyncio
import structlog
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from bridge.errors import StoreUnavailable
from bridge.store import redis_scripts as scripts
from bridge.store.base import CommitHook, Delivery, DeliveryState, JournalEntry, LazyAction, NewDelivery, settle

__all__ = ["DEFAULT_MAX_BATCH", "DEFAULT_TIMEOUT", "MIN_REDIS_VERSION", "RedisStore"]

#: Most write operations one transaction takes; bounds a batch's latency under a flood.
DEFAULT_MAX_BATCH: Final = 1000
#: Seconds one Redis command may take before the store gives up on it (StoreUnavailable).
DEFAULT_TIMEOUT: Final = 5.0
#: Seconds to establish a connection to Redis.
DEFAULT_CONNECT_TIMEOUT: Final = 2.0
#: Oldest Redis with what the scripts use (`#!lua` flags, `XADD key 0-*`).
MIN_REDIS_VERSION: Final = (7, 0)
#: First Redis with WAITAOF.
_WAITAOF_VERSION: Final = (7, 2)
#: Journal entries read per XRANGE by `entries()` and the in-doubt recovery.
_PAGE: Final = 1000

_log = structlog.get_logger("alertbridge.store")

#: The fields of a delivery hash, in the order the scripts return them (after the id).
_FIELDS: Final = ("idempotency_key", "sink", "incident_id", "revision", "kind", "action", "state",
                  "attempts", "next_at", "created_at", "updated_at", "last_error")


# ---------------------------------------------------------------------------------------- operations

class _Append:
    __slots__ = ("at", "blob", "future", "kind", "source")

    def __init__(self, kind: str, source: str, at: float, blob: bytes, future: asyncio.Future[Any]) -> None:
        self.kind, self.source, self.at, self.blob, self.future = kind, source, at, blob, future


class _Call:
    """An outbox write: one EVALSHA of `script` in the batch's transaction; `parse` makes its result."""

    __slots__ = ("args", "future", "keys", "parse", "script")

    def __init__(self, script: scripts.Script, keys: Sequence[str], args: Sequence[Any],
                 parse: Callable[[Any], Any], future: asyncio.Future[Any]) -> None:
        self.script, self.keys, self.args, self.parse, self.future = script, keys, args, parse, future


_Op = _Append | _Call
#: An operation, its result and its error (None: it succeeded).
_Done = tuple[_Op, Any, BaseException | None]


class RedisStore:
    """Journal and outbox in Redis under `prefix:`, written by one batching writer task per store.

    `on_commit` (settable later, e.g. once the engine is rebuilt from `entries()`) receives every
    committed batch of the journal entries this store appended, on the event loop, in seq order,
    before the batch's `append()` calls return. `timeout` bounds every Redis command (seconds),
    `connect_timeout` every connection attempt. `require_aof=False` lets the store write to a
    Redis without AOF (development only: a 2xx then no longer means durable).
    """

    # Key templates, all in one place (the scripts get keys and key prefixes from these).
    JOURNAL: ClassVar[str] = "{prefix}:journal"
    WRITERS: ClassVar[str] = "{prefix}:writers"
    DELIVERY_IDS: ClassVar[str] = "{prefix}:outbox:ids"
    IDEMPOTENCY_KEYS: ClassVar[str] = "{prefix}:outbox:keys"
    DELIVERY: ClassVar[str] = "{prefix}:outbox:delivery:{id}"
    LANE: ClassVar[str] = "{prefix}:outbox:lane:{sink}:{incident}"
    HEADS: ClassVar[str] = "{prefix}:outbox:heads"
    DEAD: ClassVar[str] = "{prefix}:outbox:dead"
    COUNTS: ClassVar[str] = "{prefix}:outbox:counts"
    ATTEMPTS: ClassVar[str] = "{prefix}:outbox:attempts"  # HASH "sink outcome" -> delivery attempts

    def __init__(self, url: str, *, prefix: str = "alertbridge", on_commit: CommitHook | None = None,
                 max_batch: int = DEFAULT_MAX_BATCH, timeout: float = DEFAULT_TIMEOUT,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, require_aof: bool = True) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if not prefix:
            raise ValueError("prefix must not be empty")
        self.prefix = prefix
        self.on_commit = on_commit
        self.max_batch = max_batch
        self.timeout = timeout
        self.require_aof = require_aof
        # No automatic retries: resending a transaction whose reply was lost would run it twice.
        options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": connect_timeout}
        try:
            self._client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(
                url, retry=AsyncRetry(NoBackoff(), 0), **options)
            self._sync: redis.Redis = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
        except ValueError as exc:
            raise StoreUnavailable(f"invalid redis url: {exc}") from exc
        kwargs = self._sync.connection_pool.connection_kwargs
        self._where = f"redis at {kwargs.get('host', kwargs.get('path', '?'))}:{kwargs.get('port', '')}"

        p = {"prefix": prefix}
        self._journal = self.JOURNAL.format(**p)
        self._writers = self.WRITERS.format(**p)
        self._ids = self.DELIVERY_IDS.format(**p)
        self._keys = self.IDEMPOTENCY_KEYS.format(**p)
        self._delivery_prefix = self.DELIVERY.format(prefix=prefix, id="")
        self._heads = self.HEADS.format(**p)
        self._dead = self.DEAD.format(**p)
        self._counts = self.COUNTS.format(**p)

        self._writer_id = secrets.token_hex(6)
        self._token = ""  # the fence token of the current connection; set by _connect()
        self._ready = False  # connected, scripts loaded, fenced; False after any failed batch
        self._in_doubt = False  # a batch with appends failed after it may have been sent
        self._floor = 0  # every entry this store appended that on_commit has not seen is above it
        self._waitaof = False
        self._down = False  # an outage is being reported (logged once, when it starts and ends)
        self._ops: collections.deque[_Op] = collections.deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def key(self, template: str, **fields: Any) -> str:
        """A key of this store: `store.key(RedisStore.DELIVERY, id=7)`."""
        return template.format(prefix=self.prefix, **fields)

    def lane_key(self, sink: str, incident_id: str) -> str:
        """The lane of (sink, incident); the sink is escaped so that the key names one pair only."""
        return self.key(self.LANE, sink=sink.replace("%", "%25").replace(":", "%3A"), incident=incident_id)

    # ------------------------------------------------------------------------------------- lifecycle

    async def aclose(self) -> None:
        """Write what is queued, stop the writer, withdraw the fence token and close the connections."""
        if self._closed:
            return
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        if self._ready:
            with contextlib.suppress(RedisError, OSError):
                await self._client.hdel(self._writers, self._writer_id)
        await self._client.aclose()
        self._sync.close()

    async def ping(self) -> None:
        """Raise StoreUnavailable unless Redis answers (for readiness checks)."""
        await self._read(self._client.ping())

    # --------------------------------------------------------------------------------------- journal

    async def append(self, kind: str, source: str, data: dict[str, Any], at: float) -> JournalEntry:
        """Journal one input; returns after it is durable and `on_commit` has seen it."""
        blob = orjson.dumps(data)
        future: asyncio.Future[JournalEntry] = asyncio.get_running_loop().create_future()
        self._submit(_Append(kind, source, float(at), blob, future))
        return await future

    def entries(self, after_seq: int = 0) -> Iterator[JournalEntry]:
        """Stream the entries with `seq > after_seq` in seq order, a page at a time."""
        last = after_seq
        while True:
            page = self._read_sync(self._sync.xrange, self._journal, f"(0-{last}", "+", _PAGE)
            if not page:
                return
            for stream_id, fields in page:
                yield _entry(stream_id, fields)
            last = _seq(page[-1][0])

    async def count_attempt(self, sink: str, outcome: str) -> None:
        """Count one delivery attempt (RQ workers: their attempts reach the bridge's /metrics through it)."""
        await self._read(self._client.hincrby(self.key(self.ATTEMPTS), f"{sink} {outcome}", 1))

    def attempts(self) -> dict[tuple[str, str], int]:
        """Delivery attempts by (sink, outcome), counted by every worker; sync, for a metrics scrape."""
        found = self._read_sync(self._sync.hgetall, self.key(self.ATTEMPTS))
        counts: dict[tuple[str, str], int] = {}
        for field, value in found.items():
            sink, _, outcome = _text(field).rpartition(" ")
            counts[(sink, outcome)] = int(value)
        return counts

    async def tail(self, after_seq: int, *, block: float = 1.0, count: int = _PAGE) -> list[JournalEntry]:
        """The next entries after `after_seq` (at most `count`), waiting up to `block` seconds for one
        to be appended, by any process (XREAD BLOCK): how the other processes follow the journal."""
        wait_ms = max(1, int(min(block, self.timeout / 2) * 1000))  # well inside the socket timeout
        found = await self._read(self._client.xread({self._journal: f"0-{after_seq}"}, count=count, block=wait_ms))
        if not found:
            return []
        return [_entry(stream_id, fields) for stream_id, fields in found[0][1]]

    def last_seq(self) -> int:
        """The highest committed seq; 0 for an empty journal."""
        top = self._read_sync(self._sync.xrevrange, self._journal, "+", "-", 1)
        return _seq(top[0][0]) if top else 0

    # ---------------------------------------------------------------------------------- outbox writes

    async def enqueue(self, deliveries: Sequence[NewDelivery], now: float) -> int:
        """Insert new pending deliveries due at `now`; returns how many keys were new."""
        return await self.enqueue_nowait(deliveries, now)

    def enqueue_nowait(self, deliveries: Sequence[NewDelivery], now: float, *,
                       fence: tuple[str, int] | None = None) -> asyncio.Future[int]:
        """`enqueue` for sync code on the loop: queued at once (in call order), never blocks.

        With `fence` (the partition lease's fence key and this owner's token), Redis itself refuses
        the write, and nothing is written, unless the token is still the partition owner's: an old
        owner that was paused past its lease cannot write (the future raises StoreUnavailable).
        """
        args: list[Any] = [self._delivery_prefix, _num(now)]
        for key, sink, incident_id, revision, kind, action in deliveries:
            args += [key, sink, incident_id, int(revision), kind, orjson.dumps(action),
                     self.lane_key(sink, incident_id)]
        keys = [self._ids, self._keys, self._heads, self._counts]
        if fence is not None:
            return self._call_nowait(scripts.ENQUEUE_FENCED, [fence[0], *keys], [fence[1], *args], int)
        return self._call_nowait(scripts.ENQUEUE, keys, args, int)

    async def mark_delivered(self, delivery_id: int, now: float) -> bool:
        """pending -> delivered. False if it was not pending."""
        return await self._transition(delivery_id, "delivered", now)

    async def mark_retry(self, delivery_id: int, next_at: float, error: str, now: float) -> bool:
        """Count a failed attempt and schedule the next one at `next_at`. False if not pending."""
        return await self._transition(delivery_id, "retry", now, _num(next_at), error)

    async def mark_dead(self, delivery_id: int, error: str, now: float, *, attempted: bool = True) -> bool:
        """pending -> dead; `attempted` counts the final attempt. False if it was not pending."""
        return await self._transition(delivery_id, "dead", now, error, 1 if attempted else 0)

    async def retry_dead(self, delivery_id: int, now: float) -> bool:
        """dead -> pending, due at `now`, attempts reset (last_error kept). False if not dead.

        An operator's call: if a later action of the same incident was delivered meanwhile, this
        one now reaches the sink after it.
        """
        return await self._transition(delivery_id, "revive", now)

    async def _transition(self, delivery_id: int, op: str, now: float, *extra: Any) -> bool:
        keys = [self.key(self.DELIVERY, id=int(delivery_id)), self._heads, self._dead, self._counts]
        args = [self._delivery_prefix, int(delivery_id), op, _num(now), *extra]
        return bool(await self._call_nowait(scripts.TRANSITION, keys, args, bool))

    # ----------------------------------------------------------------------------------- outbox reads

    async def due(self, now: float, limit: int) -> list[Delivery]:
        """Due pending deliveries, oldest first, only the oldest pending one per (sink, incident)."""
        if limit <= 0:
            return []
        rows = await self._script(scripts.DUE, [self._heads], [_num(now), limit, self._delivery_prefix, *_FIELDS])
        return [_delivery(row) for row in rows]

    async def next_due_at(self) -> float | None:
        """The earliest `next_at` among pending (sink, incident) heads; None if nothing is pending."""
        first = await self._read(self._client.zrange(self._heads, 0, 0, withscores=True))
        return float(first[0][1]) if first else None

    async def dead_letters(self, limit: int = 100, offset: int = 0) -> list[Delivery]:
        """Dead deliveries, newest first."""
        if limit <= 0:
            return []
        rows = await self._script(scripts.DEAD_LETTERS, [self._dead],
                                  [max(0, offset), limit, self._delivery_prefix, *_FIELDS])
        return [_delivery(row) for row in rows]

    async def get_delivery(self, delivery_id: int) -> Delivery | None:
        """One delivery by id, any state."""
        values = await self._read(self._client.hmget(self.key(self.DELIVERY, id=int(delivery_id)), _FIELDS))
        return None if values[0] is None else _delivery([delivery_id, *values])

    async def pending_count(self) -> int:
        """How many deliveries are pending."""
        return int(await self._read(self._client.hget(self._counts, DeliveryState.PENDING.value)) or 0)

    async def counts(self) -> dict[str, int]:
        """Deliveries per state, every state present."""
        states = [state.value for state in DeliveryState]
        values = await self._read(self._client.hmget(self._counts, states))
        return {state: int(n or 0) for state, n in zip(states, values, strict=True)}

    # ---------------------------------------------------------------------------------------- plumbing

    def _submit(self, op: _Op) -> None:
        if self._closed:
            raise StoreUnavailable("store is closed")
        self._ops.append(op)
        self._wakeup.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._write_loop(),
                                                                name="alertbridge-redis-writer")

    def _call_nowait(self, script: scripts.Script, keys: Sequence[str], args: Sequence[Any],
                     parse: Callable[[Any], Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._submit(_Call(script, keys, args, parse, future))
        return future

    async def _read(self, call: Any) -> Any:
        """Await one read command, as StoreUnavailable if Redis fails it."""
        if self._closed:
            call.close()  # the coroutine was made but will not run
            raise StoreUnavailable("store is closed")
        try:
            return await call
        except (RedisError, OSError) as exc:
            raise self._unavailable("read failed", exc) from exc

    async def _script(self, script: scripts.Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a read-only script, loading it first if this Redis does not know it yet."""
        try:
            return await self._read(self._client.evalsha(script.sha, len(keys), *keys, *args))
        except StoreUnavailable as exc:
            if not isinstance(exc.__cause__, NoScriptError):
                raise
        await self._read(self._client.script_load(script.source))
        return await self._read(self._client.evalsha(script.sha, len(keys), *keys, *args))

    def _read_sync(self, read: Callable[..., Any], *args: Any) -> Any:
        if self._closed:
            raise StoreUnavailable("store is closed")
        try:
            return read(*args)
        except (RedisError, OSError) as exc:
            raise self._unavailable("read failed", exc) from exc

    def _unavailable(self, what: str, exc: BaseException) -> StoreUnavailable:
        error = StoreUnavailable(f"{what}: {self._where}: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error

    # ----------------------------------------------------------------------------------- writer task

    async def _write_loop(self) -> None:
        ops = self._ops
        batch: list[_Op] = []
        try:
            while True:
                if not ops:
                    if self._closed:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                batch = [ops.popleft() for _ in range(min(len(ops), self.max_batch))]
                try:
                    await self._write_batch(batch)
                except Exception as exc:  # a bug here must not leave awaiters hanging forever
                    _log.exception("store writer failed")
                    self._ready = False
                    self._in_doubt = self._in_doubt or any(isinstance(op, _Append) for op in batch)
                    self._resolve([], [(op, None, self._unavailable("store writer failed", exc))
                                       for op in batch])
                batch = []
        finally:  # cancelled (the loop is shutting down): nobody will write what is left
            closed = StoreUnavailable("store is closed")
            for op in [*batch, *ops]:
                if not op.future.done():
                    op.future.set_exception(closed)
            ops.clear()

    async def _write_batch(self, batch: list[_Op]) -> None:
        has_appends = any(isinstance(op, _Append) for op in batch)
        try:
            if not self._ready:
                await self._connect()
            done_commands = await self._send(batch)
            if any(isinstance(result, NoScriptError) for _, result in done_commands):
                # SCRIPT FLUSH: those commands did not run (a definite answer), so send them again.
                await self._load_scripts()
                again = [op for ops, result in done_commands if isinstance(result, NoScriptError) for op in ops]
                done_commands = [pair for pair in done_commands if not isinstance(pair[1], NoScriptError)]
                done_commands += await self._send(again)
        except (RedisError, OSError, StoreUnavailable) as exc:
            # Maybe sent, maybe run: resolved by _connect() before the next batch.
            self._in_doubt = self._in_doubt or has_appends
            self._lost(exc)
            error = exc if isinstance(exc, StoreUnavailable) else self._unavailable("write failed", exc)
            self._resolve([], [(op, None, error) for op in batch])
            return

        entries: list[JournalEntry] = []
        done: list[_Done] = []
        for ops, result in done_commands:
            if isinstance(result, BaseException):
                error = self._unavailable("write failed", result)
                done += [(op, None, error) for op in ops]
            elif isinstance(ops[0], _Append):
                first = _seq(result[0])
                floor = float(_text(result[1])) if result[1] else None
                for i, op in enumerate(ops):
                    assert isinstance(op, _Append)
                    at = op.at if floor is None or op.at >= floor else floor  # as the script clamped it
                    floor = at
                    # The entry carries the data as it reads back from the journal (tuples become
                    # lists), so that what on_commit applies live is exactly what a replay applies.
                    entry = JournalEntry(first + i, at, op.kind, op.source, orjson.loads(op.blob))
                    entries.append(entry)
                    done.append((op, entry, None))
            else:
                call = ops[0]
                assert isinstance(call, _Call)
                done.append((call, call.parse(result), None))
        if entries:
            entries.sort(key=lambda entry: entry.seq)
            self._floor = max(self._floor, entries[-1].seq)

        durable_error = await self._wait_durable()
        if durable_error is not None:  # committed, but not confirmed on disk
            done = [(op, None, durable_error) if error is None else (op, value, error)
                    for op, value, error in done]
        self._resolve(entries, done)

    async def _send(self, batch: list[_Op]) -> list[tuple[list[_Op], Any]]:
        """Send the batch as one transaction; returns each command's operations and result."""
        pipe = self._client.pipeline(transaction=True)
        commands = self._queue_batch(pipe, batch)
        results = await self._execute(pipe)
        return list(zip(commands, results, strict=True))

    def _queue_batch(self, pipe: Any, batch: list[_Op]) -> list[list[_Op]]:
        """Queue the batch's commands on `pipe`; returns the operations each command serves."""
        commands: list[list[_Op]] = []
        run: list[_Op] = []

        def flush_appends() -> None:
            args: list[Any] = [self._writer_id, self._token]
            for op in run:
                assert isinstance(op, _Append)
                args += [_num(op.at), op.kind, op.source, op.blob]
            pipe.evalsha(scripts.APPEND.sha, 2, self._journal, self._writers, *args)
            commands.append(run.copy())
            run.clear()

        for op in batch:
            if isinstance(op, _Append):
                run.append(op)
                continue
            if run:
                flush_appends()
            pipe.evalsha(op.script.sha, len(op.keys), *op.keys, *op.args)
            commands.append([op])
        if run:
            flush_appends()
        return commands

    async def _execute(self, pipe: Any) -> list[Any]:
        # A method of its own so that tests can inject a lost reply or a late transaction.
        return list(await pipe.execute(raise_on_error=False))

    async def _wait_durable(self) -> StoreUnavailable | None:
        """WAITAOF for the batch just written (Redis >= 7.2); the error to report if unconfirmed."""
        if not self._waitaof:
            return None
        wait_ms = max(1, int(self.timeout * 500))  # well inside the socket timeout
        try:
            local, _replicas = await self._client.execute_command("WAITAOF", 1, 0, wait_ms)
        except (RedisError, OSError) as exc:
            self._lost(exc)
            return self._unavailable("write not confirmed durable", exc)
        if int(local) < 1:
            return StoreUnavailable(f"write not confirmed durable: {self._where}: no AOF fsync in {wait_ms} ms")
        return None

    def _lost(self, exc: BaseException) -> None:
        self._ready = False
        if not self._down:  # logged once per outage, not once per failed batch
            self._down = True
            _log.error("redis unavailable", where=self._where, error=f"{type(exc).__name__}: {exc}")

    async def _connect(self) -> None:
        """Check the server, load the write scripts, fence off old batches and resolve any in doubt."""
        token = secrets.token_hex(8)
        pipe = self._client.pipeline(transaction=False)
        pipe.info("server")
        pipe.info("persistence")
        for script in scripts.WRITE_SCRIPTS:  # EVALSHA inside MULTI cannot load a script: load them now
            pipe.script_load(script.source)
        pipe.hset(self._writers, self._writer_id, token)
        pipe.xrevrange(self._journal, "+", "-", count=1)
        server, persistence, *_loaded, _fenced, top = await pipe.execute()

        version = tuple(int(part) for part in str(server["redis_version"]).split(".")[:2])
        if version < MIN_REDIS_VERSION:
            raise StoreUnavailable(f"{self._where} runs Redis {server['redis_version']}; "
                                   f"alertbridge needs Redis >= {'.'.join(map(str, MIN_REDIS_VERSION))}")
        if not int(persistence.get("aof_enabled", 0)) and self.require_aof:
            raise StoreUnavailable(f"{self._where} has appendonly no: accepted input would not be durable "
                                   "(set appendonly yes, see bridge/store/redis.py)")
        self._waitaof = version >= _WAITAOF_VERSION and bool(int(persistence.get("aof_enabled", 0)))
        if not self._waitaof:
            await self._check_fsync_policy()

        self._token = token  # from here on, batches sent with an older token append nothing
        if self._in_doubt:
            await self._recover()
        self._floor = max(self._floor, _seq(top[0][0]) if top else 0)
        if self._down:
            self._down = False
            _log.info("redis available again", where=self._where)
        self._ready = True

    async def _load_scripts(self) -> None:
        pipe = self._client.pipeline(transaction=False)
        for script in scripts.WRITE_SCRIPTS:
            pipe.script_load(script.source)
        await pipe.execute()

    async def _check_fsync_policy(self) -> None:
        try:
            found: Any = await self._client.config_get("appendfsync")
        except RedisError:  # CONFIG is often renamed away on managed Redis: nothing to check then
            return
        policy = _text(next(iter(found.values()), b""))
        if policy != "always":
            _log.warning("redis appendfsync is not always: without WAITAOF (Redis < 7.2) a crash of the "
                         "redis host can lose acknowledged input", where=self._where, appendfsync=policy)

    async def _recover(self) -> None:
        """Hand on_commit the entries of in-doubt batches that did land (this store's, above the floor)."""
        found: list[JournalEntry] = []
        last = self._floor
        writer = self._writer_id.encode()
        while True:
            page: Any = await self._client.xrange(self._journal, f"(0-{last}", "+", count=_PAGE)
            if not page:
                break
            found += [_entry(stream_id, fields) for stream_id, fields in page if fields.get(b"writer") == writer]
            last = _seq(page[-1][0])
        self._in_doubt = False
        self._floor = last
        if found:
            _log.warning("in-doubt journal writes had landed", first_seq=found[0].seq, last_seq=found[-1].seq)
            self._resolve(found, [])

    def _resolve(self, entries: list[JournalEntry], done: list[_Done]) -> None:
        """Run on_commit for the committed entries, then resume the awaiters."""
        settle(self.on_commit, entries, done, lambda op: isinstance(op, _Append), _log)


# ------------------------------------------------------------------------------------------- codecs

def _num(value: float) -> str:
    # repr is the shortest string that reads back as the same float: times round-trip exactly.
    return repr(float(value))


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _seq(stream_id: bytes | str) -> int:
    return int(_text(stream_id).partition("-")[2])


def _entry(stream_id: bytes, fields: dict[bytes, bytes]) -> JournalEntry:
    return JournalEntry(_seq(stream_id), float(fields[b"at"]), fields[b"kind"].decode(),
                        fields[b"source"].decode(), orjson.loads(fields[b"data"]))


def _delivery(row: Sequence[Any]) -> Delivery:
    (id_, key, sink, incident_id, revision, kind, action, state, attempts, next_at, created_at,
     updated_at, last_error) = row
    return Delivery(int(id_), key.decode(), sink.decode(), incident_id.decode(), int(revision), kind.decode(),
                    LazyAction(action),  # type: ignore[arg-type]  # a read-only Mapping, decoded on use
                    DeliveryState(state.decode()), int(attempts), float(next_at), float(created_at),
                    float(updated_at), last_error.decode())
