"""The embedded-mode store: journal and outbox in one SQLite file, `<data_dir>/alertbridge.db`.

Durability
    `journal_mode=WAL` and `synchronous=FULL`. In WAL mode, `synchronous=NORMAL` fsyncs only at
    checkpoints: a committed transaction survives a process crash but not a power loss or kernel
    panic, which would break "a 2xx means journaled". With FULL, every commit fsyncs the WAL, so a
    committed entry survives both. `fullfsync=ON` makes that fsync a real barrier on macOS (a
    no-op elsewhere). The cost of FULL (one fsync per commit) is paid once per *batch* by group
    commit, below.

Group commit
    All writes (journal appends and outbox changes) go through ONE writer thread with its own
    connection, so the event loop never blocks on an fsync and SQLite never sees two writers.
    The thread takes everything queued (up to `max_batch` operations), writes it in ONE
    transaction, commits (one fsync), and hands the batch back to the event loop with
    `loop.call_soon_threadsafe`. There, `on_commit(entries)` is called with the batch's journal
    entries in seq order and only then are the awaiting `append()` calls resumed: when
    `await append(...)` returns, the ingest pipeline has already applied the entry. Batches are
    handed back in commit order, so `on_commit` sees seqs 1, 2, 3, ... in order. There is no
    artificial linger: while one batch's fsync runs, the next batch queues up by itself.

    If the transaction fails, it is rolled back: nothing of the batch is visible, no seq is used,
    `on_commit` is not called, and every awaiter of the batch gets `StoreUnavailable`. An outbox
    operation that fails on its own (not the commit) runs in a savepoint and fails alone.

    `on_commit` should not raise. If it does, the error is logged and raised to every `append()`
    of that batch (the entries stay journaled, and a restart replays them).

Reads
    Reads use a second connection (WAL readers never wait for the writer). The async reads the
    loop makes (`due`, `counts`, ...) run in a worker thread; `entries()` and `last_seq()` are
    sync, for the startup rebuild, and page through the journal by seq.

Threads and loops
    The store may be used from any one event loop; each write completes on the loop that made it.
    Cancelling an `append()` does not un-append it: the entry is journaled all the same.

Deliveries are never deleted here; a future pruning of delivered rows must keep their idempotency
keys long enough that a rebuild cannot re-enqueue them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import orjson
import structlog

from bridge.errors import StoreUnavailable
from bridge.store.base import CommitHook, Delivery, DeliveryState, JournalEntry, LazyAction, NewDelivery, settle

__all__ = ["DB_FILENAME", "DEFAULT_MAX_BATCH", "CommitHook", "JournalMissing", "SQLiteStore", "read_journal"]

DB_FILENAME: Final = "alertbridge.db"
#: Most write operations one transaction takes; bounds a commit's latency under a flood.
DEFAULT_MAX_BATCH: Final = 1000
#: Journal entries read per query by `entries()`.
_PAGE: Final = 1000
_SCHEMA_VERSION: Final = 1


_log = structlog.get_logger("alertbridge.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq     INTEGER PRIMARY KEY,
    at      REAL    NOT NULL,
    kind    TEXT    NOT NULL,
    source  TEXT    NOT NULL,
    data    BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT    NOT NULL UNIQUE,
    sink            TEXT    NOT NULL,
    incident_id     TEXT    NOT NULL,
    revision        INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    action          BLOB    NOT NULL,
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at         REAL    NOT NULL,
    created_at      REAL    NOT NULL,
    updated_at      REAL    NOT NULL,
    last_error      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox (state, id);
CREATE INDEX IF NOT EXISTS outbox_pending_heads ON outbox (sink, incident_id, id) WHERE state = 'pending';
"""

_COLUMNS = ("id, idempotency_key, sink, incident_id, revision, kind, action, state, attempts, "
            "next_at, created_at, updated_at, last_error")

_INSERT_ENTRY = "INSERT INTO journal (seq, at, kind, source, data) VALUES (?, ?, ?, ?, ?)"
_INSERT_DELIVERY = (
    "INSERT OR IGNORE INTO outbox (idempotency_key, sink, incident_id, revision, kind, action, state,"
    " attempts, next_at, created_at, updated_at, last_error)"
    " VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, '')"
)
# The oldest pending delivery of each (sink, incident) is its head; only heads are eligible.
_NOT_BEHIND_ANOTHER = (
    "NOT EXISTS (SELECT 1 FROM outbox AS e WHERE e.state = 'pending' AND e.sink = o.sink"
    " AND e.incident_id = o.incident_id AND e.id < o.id)"
)
_DUE = (
    f"SELECT {_COLUMNS} FROM outbox AS o WHERE o.state = 'pending' AND o.next_at <= ?"
    f" AND {_NOT_BEHIND_ANOTHER} ORDER BY o.id LIMIT ?"
)
_NEXT_DUE_AT = f"SELECT MIN(o.next_at) FROM outbox AS o WHERE o.state = 'pending' AND {_NOT_BEHIND_ANOTHER}"


class _Append:
    __slots__ = ("at", "blob", "future", "kind", "loop", "source")

    def __init__(self, kind: str, source: str, at: float, blob: bytes,
                 loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.kind, self.source, self.at, self.blob = kind, source, at, blob
        self.loop, self.future = loop, future


class _Call:
    """Any other write: `fn(connection)` inside the batch's transaction, in its own savepoint."""

    __slots__ = ("fn", "future", "loop")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any],
                 loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.fn, self.loop, self.future = fn, loop, future


_Op = _Append | _Call
#: An operation, its result and its error (None: it succeeded).
_Done = tuple[_Op, Any, BaseException | None]
_STOP: Final = object()


class SQLiteStore:
    """Journal and outbox in `<data_dir>/alertbridge.db`, written by one group-committing thread.

    `on_commit` (settable later, e.g. once the engine is rebuilt from `entries()`) receives every
    committed batch of journal entries on the event loop, in seq order, before the batch's
    `append()` calls return.
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, on_commit: CommitHook | None = None,
                 max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.path = Path(data_dir) / DB_FILENAME
        self.on_commit = on_commit
        self.max_batch = max_batch
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._wconn = self._connect_writer()
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
        try:
            self._rconn = self._connect_reader()
        except sqlite3.Error as exc:
            self._wconn.close()
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
        self._rlock = threading.Lock()
        self._seq = self._max_seq(self._wconn)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._submit_lock = threading.Lock()
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="alertbridge-store-writer",
                                        daemon=True)
        self._writer.start()

    # ------------------------------------------------------------------------------------- lifecycle

    def _connect_writer(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves. The connection is made here and
        # used only by the writer thread from then on, hence check_same_thread=False.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise sqlite3.OperationalError(f"journal_mode=WAL not supported here (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA fullfsync=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA journal_size_limit=67108864")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            conn.close()
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this release's")
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA query_only=ON")
        return conn

    def close(self) -> None:
        """Commit what is queued, stop the writer and close the file (blocks; see `aclose`)."""
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._writer.join()
        self._wconn.close()
        with self._rlock:
            self._rconn.close()

    async def aclose(self) -> None:
        """`close()` without blocking the event loop."""
        await asyncio.to_thread(self.close)

    # --------------------------------------------------------------------------------------- journal

    async def append(self, kind: str, source: str, data: dict[str, Any], at: float) -> JournalEntry:
        """Journal one input; returns after it is committed and `on_commit` has seen it."""
        blob = orjson.dumps(data)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[JournalEntry] = loop.create_future()
        self._submit(_Append(kind, source, float(at), blob, loop, future))
        return await future

    def entries(self, after_seq: int = 0) -> Iterator[JournalEntry]:
        """Stream the entries with `seq > after_seq` in seq order, a page at a time."""
        return _entries(self._read_sync, after_seq)

    def last_seq(self) -> int:
        """The highest committed seq; 0 for an empty journal."""
        return int(self._read_sync("SELECT COALESCE(MAX(seq), 0) FROM journal", ())[0][0])

    # ---------------------------------------------------------------------------------- outbox writes

    async def enqueue(self, deliveries: Sequence[NewDelivery], now: float) -> int:
        """Insert new pending deliveries due at `now`; returns how many keys were new."""
        return await self.enqueue_nowait(deliveries, now)

    def enqueue_nowait(self, deliveries: Sequence[NewDelivery], now: float) -> asyncio.Future[int]:
        """`enqueue` for sync code on the loop: queued at once (in call order), never blocks."""
        rows = [(key, sink, incident_id, int(revision), kind, orjson.dumps(action), now, now, now)
                for key, sink, incident_id, revision, kind, action in deliveries]

        def insert(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(_INSERT_DELIVERY, rows)
            return conn.total_changes - before

        return self._call_nowait(insert)

    async def mark_delivered(self, delivery_id: int, now: float) -> bool:
        """pending -> delivered. False if it was not pending."""
        return await self._update(
            "UPDATE outbox SET state = 'delivered', updated_at = ? WHERE id = ? AND state = 'pending'",
            (now, delivery_id))

    async def mark_retry(self, delivery_id: int, next_at: float, error: str, now: float) -> bool:
        """Count a failed attempt and schedule the next one at `next_at`. False if not pending."""
        return await self._update(
            "UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ?, updated_at = ?"
            " WHERE id = ? AND state = 'pending'",
            (next_at, error, now, delivery_id))

    async def mark_dead(self, delivery_id: int, error: str, now: float, *, attempted: bool = True) -> bool:
        """pending -> dead; `attempted` counts the final attempt. False if it was not pending."""
        return await self._update(
            "UPDATE outbox SET state = 'dead', attempts = attempts + ?, last_error = ?, updated_at = ?"
            " WHERE id = ? AND state = 'pending'",
            (1 if attempted else 0, error, now, delivery_id))

    async def retry_dead(self, delivery_id: int, now: float) -> bool:
        """dead -> pending, due at `now`, attempts reset (last_error kept). False if not dead.

        An operator's call: if a later action of the same incident was delivered meanwhile, this
        one now reaches the sink after it.
        """
        return await self._update(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_at = ?, updated_at = ?"
            " WHERE id = ? AND state = 'dead'",
            (now, now, delivery_id))

    # ----------------------------------------------------------------------------------- outbox reads

    async def due(self, now: float, limit: int) -> list[Delivery]:
        """Due pending deliveries, oldest first, only the oldest pending one per (sink, incident)."""
        rows = await self._read(_DUE, (now, limit))
        return [_delivery(row) for row in rows]

    async def next_due_at(self) -> float | None:
        """The earliest `next_at` among pending (sink, incident) heads; None if nothing is pending."""
        rows = await self._read(_NEXT_DUE_AT, ())
        return None if rows[0][0] is None else float(rows[0][0])

    async def dead_letters(self, limit: int = 100, offset: int = 0) -> list[Delivery]:
        """Dead deliveries, newest first."""
        rows = await self._read(
            f"SELECT {_COLUMNS} FROM outbox WHERE state = 'dead' ORDER BY id DESC LIMIT ? OFFSET ?",
            (limit, offset))
        return [_delivery(row) for row in rows]

    async def get_delivery(self, delivery_id: int) -> Delivery | None:
        """One delivery by id, any state."""
        rows = await self._read(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (delivery_id,))
        return _delivery(rows[0]) if rows else None

    async def pending_count(self) -> int:
        """How many deliveries are pending."""
        rows = await self._read("SELECT COUNT(*) FROM outbox WHERE state = 'pending'", ())
        return int(rows[0][0])

    async def counts(self) -> dict[str, int]:
        """Deliveries per state, every state present."""
        rows = await self._read("SELECT state, COUNT(*) FROM outbox GROUP BY state", ())
        found = {state: 0 for state in DeliveryState}
        found.update({DeliveryState(state): int(n) for state, n in rows})
        return {state.value: n for state, n in found.items()}

    # ---------------------------------------------------------------------------------------- plumbing

    def _submit(self, op: _Op) -> None:
        with self._submit_lock:
            if self._closed:
                raise StoreUnavailable("store is closed")
            self._queue.put(op)

    def _call_nowait(self, fn: Callable[[sqlite3.Connection], Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._submit(_Call(fn, loop, future))
        return future

    async def _update(self, sql: str, params: tuple[Any, ...]) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute(sql, params).rowcount > 0

        return bool(await self._call_nowait(run))

    def _read_sync(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        with self._rlock:
            try:
                return self._rconn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:  # including "closed database" after close()
                raise StoreUnavailable(f"read failed: {exc}") from exc

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return await asyncio.to_thread(self._read_sync, sql, params)

    @staticmethod
    def _max_seq(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()[0])

    def _commit(self, conn: sqlite3.Connection) -> None:
        # A method of its own so that tests can inject a failing commit (disk full, I/O error).
        conn.execute("COMMIT")

    # --------------------------------------------------------------------------------- writer thread

    def _write_loop(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        stopping = False
        while not stopping:
            first = get()
            if first is _STOP:
                break
            batch: list[_Op] = [first]
            while len(batch) < self.max_batch:
                try:
                    op = get_nowait()
                except queue.Empty:
                    break
                if op is _STOP:
                    stopping = True
                    break
                batch.append(op)
            try:
                self._write_batch(batch)
            except BaseException as exc:  # a bug here must not leave awaiters hanging forever
                _log.exception("store writer failed")
                self._rollback(self._wconn)
                self._hand_back([(op, None, StoreUnavailable(f"store writer failed: {exc}"))
                                 for op in batch])

    def _write_batch(self, batch: list[_Op]) -> None:
        conn = self._wconn
        seq = self._seq
        results: list[_Done] = []
        rows: list[tuple[int, float, str, str, bytes]] = []  # appends not yet inserted
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                if isinstance(op, _Append):
                    seq += 1
                    rows.append((seq, op.at, op.kind, op.source, op.blob))
                    results.append((op, seq, None))
                    continue
                if rows:  # one executemany per run of appends: a third faster than one by one
                    conn.executemany(_INSERT_ENTRY, rows)
                    rows.clear()
                conn.execute("SAVEPOINT op")
                try:
                    value = op.fn(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    results.append((op, None, exc))
                else:
                    results.append((op, value, None))
                conn.execute("RELEASE op")
            if rows:
                conn.executemany(_INSERT_ENTRY, rows)
            self._commit(conn)
        except Exception as exc:
            self._rollback(conn)
            error = StoreUnavailable(f"commit failed: {exc}")
            error.__cause__ = exc
            _log.error("store commit failed", error=str(exc), operations=len(batch))
            self._hand_back([(op, None, error) for op in batch])
            return
        self._seq = seq
        # Entries carry the data as it will read back from the journal, so that what on_commit
        # applies live is exactly what a replay applies.
        done: list[_Done] = [
            (op, JournalEntry(value, op.at, op.kind, op.source, orjson.loads(op.blob)), None)
            if isinstance(op, _Append) else (op, value, error)
            for op, value, error in results
        ]
        self._hand_back(done)

    def _rollback(self, conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._seq = self._max_seq(conn)
        except sqlite3.Error as exc:
            _log.error("store rollback failed", error=str(exc))

    def _hand_back(self, done: list[_Done]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Done]] = {}
        for item in done:
            by_loop.setdefault(item[0].loop, []).append(item)
        for loop, items in by_loop.items():
            # RuntimeError: the loop is closed, so nobody is waiting for these any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._resolve, items)

    def _resolve(self, items: list[_Done]) -> None:
        """On the event loop: run on_commit for the batch's entries, then resume the awaiters."""
        entries = [value for op, value, error in items if isinstance(op, _Append) and error is None]
        settle(self.on_commit, entries, items, lambda op: isinstance(op, _Append), _log)


def _delivery(row: tuple[Any, ...]) -> Delivery:
    (id_, key, sink, incident_id, revision, kind, action, state, attempts, next_at, created_at,
     updated_at, last_error) = row
    return Delivery(id_, key, sink, incident_id, revision, kind, LazyAction(action),  # type: ignore[arg-type]
                    DeliveryState(state), attempts, next_at, created_at, updated_at, last_error)


def _entries(read: Callable[[str, tuple[Any, ...]], list[Any]], after_seq: int) -> Iterator[JournalEntry]:
    """Journal entries with `seq > after_seq` in seq order, read a page at a time with `read`."""
    last = after_seq
    while True:
        rows = read("SELECT seq, at, kind, source, data FROM journal WHERE seq > ? ORDER BY seq LIMIT ?", (last, _PAGE))
        if not rows:
            return
        for seq, at, kind, source, data in rows:
            yield JournalEntry(seq, at, kind, source, orjson.loads(data))
        last = rows[-1][0]


class JournalMissing(Exception):
    """The data directory has no readable journal."""


def read_journal(data_dir: Path) -> tuple[sqlite3.Connection, Iterator[Any]]:
    """The data directory's journal entries, read without writing anything in the directory.

    SQLite's `mode=ro` still creates the `-wal` and `-shm` files of a WAL database when they are
    missing. So without a `-wal` file (no server has the store open, and the last one checkpointed
    everything into the main file when it closed) the file is opened `immutable`: read as it is,
    with no lock and no side file. With one (a running server, or one that stopped abruptly), the
    existing `-wal` and `-shm` are read through with `mode=ro`. A server that starts during an
    immutable read writes to its own new `-wal`, not to the main file, until its first checkpoint
    (1000 pages), so the read stays consistent.
    """
    path = data_dir / DB_FILENAME
    if not path.is_file():
        raise JournalMissing(f"{data_dir}: no journal ({DB_FILENAME}) here")
    live = path.with_name(DB_FILENAME + "-wal").exists()
    uri = path.resolve().as_uri() + ("?mode=ro" if live else "?mode=ro&immutable=1")
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as err:
        raise JournalMissing(f"{path}: cannot open: {err}") from None
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("SELECT 1 FROM journal LIMIT 1").fetchall()
    except sqlite3.Error as err:
        conn.close()
        raise JournalMissing(f"{path}: not an alertbridge journal ({err})") from None

    return conn, _entries(lambda sql, params: conn.execute(sql, params).fetchall(), 0)
