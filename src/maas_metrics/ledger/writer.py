"""The background writer: `record()` never blocks a request; a thread writes batches.

A record waits in a bounded in-memory queue; a write starts at most half a
flush interval (`ledger.flush_interval_ms`, default 200 ms) after it arrived,
or as soon as `ledger.batch_rows` records are waiting, so it is committed
within one interval while a batch write takes less than the other half. When the database fails, the batch
and every later one go to the spool (appended in order, fsynced) until a
retry (`ledger.retry_seconds`) replays the spool and the writer resumes
writing directly. When the queue is full the record goes straight to the
spool, so memory stays bounded and nothing is dropped; only a spool that
cannot be written either loses records, and that is counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType

from sqlalchemy import exc

from maas_metrics.config import Ledger
from maas_metrics.ledger.record import RequestRecord
from maas_metrics.ledger.spool import Spool
from maas_metrics.ledger.store import LedgerStore, describe

log = logging.getLogger(__name__)


class LedgerStats:
    """What the writer did so far (read by `/metrics`)."""

    def __init__(self) -> None:
        self.written = 0
        self.duplicates = 0
        self.spooled = 0
        self.failed = 0
        self.store_up = True
        self.spool_pending = 0
        self.oldest_spooled_at: float | None = None
        self.last_error = ""


class LedgerWriter:
    """Batches records into a `LedgerStore` from one background thread, spooling while it is away."""

    def __init__(self, settings: Ledger, store: LedgerStore) -> None:
        self.settings = settings
        self.store = store
        self.spool = Spool(settings.spool_path)
        self.stats = LedgerStats()
        self.stats.spool_pending = self.spool.lines()
        if self.stats.spool_pending:
            self.stats.oldest_spooled_at = time.time()
        self._queue: deque[RequestRecord] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._next_retry = 0.0
        self._oldest_queued_at: float | None = None
        self._stats_lock = threading.Lock()

    # --- request side ------------------------------------------------------------------

    def record(self, record: RequestRecord) -> None:
        """Hand a record over; never waits for the database."""
        with self._cond:
            if len(self._queue) < self.settings.queue_max:
                if not self._queue:
                    self._oldest_queued_at = time.time()
                self._queue.append(record)
                if len(self._queue) >= self.settings.batch_rows:
                    self._cond.notify()
                return
        self._to_spool([record])  # over the memory bound: straight to disk

    @property
    def pending(self) -> int:
        return len(self._queue) + self.stats.spool_pending

    def oldest_pending_age(self) -> float:
        now = time.time()
        starts = [t for t in (self._oldest_queued_at, self.stats.oldest_spooled_at) if t]
        return max(0.0, now - min(starts)) if starts and self.pending else 0.0

    # --- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Write (or spool) everything still queued, then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        self.store.close()

    async def __aenter__(self) -> LedgerWriter:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def flush_now(self) -> None:
        """Wake the writer (tests and shutdown): it writes what is queued without waiting."""
        with self._cond:
            self._cond.notify()

    # --- writer thread -----------------------------------------------------------------

    def _due(self, lead: float) -> float | None:
        """Seconds until the oldest queued record must be handed to the database (None: none)."""
        oldest = self._oldest_queued_at
        if oldest is None or not self._queue:
            return None
        return oldest + lead - time.time()

    def _replay_due(self) -> bool:
        return time.monotonic() >= self._next_retry and self.spool.pending()

    def _run(self) -> None:
        # A write starts at most half an interval after its oldest record arrived, so it is
        # committed within one interval while a batch takes less than the other half.
        lead = self.settings.flush_interval_ms / 2000
        rows = self.settings.batch_rows
        while True:
            with self._cond:
                while not self._stopping and len(self._queue) < rows:
                    due = self._due(lead)
                    if due is not None and due <= 0:
                        break
                    if due is None and self._replay_due():
                        break  # no traffic, but a spool waits for the database
                    self._cond.wait(lead if due is None else due)
                stopping = self._stopping
                batch = list(self._queue)
                self._queue.clear()
                self._oldest_queued_at = None
            try:
                self._handle(batch)
            except Exception:  # the thread must outlive any bug; the records are spooled
                log.exception("ledger writer failed unexpectedly")
                self._to_spool(batch)
            if stopping:
                return

    def _handle(self, batch: list[RequestRecord]) -> None:
        if self.spool.pending() and not self._replay():
            self._to_spool(batch)
            return
        for start in range(0, len(batch), self.settings.batch_rows):
            chunk = batch[start : start + self.settings.batch_rows]
            if not self._write(chunk):
                self._to_spool(batch[start:])
                return

    def _write(self, chunk: list[RequestRecord]) -> bool:
        try:
            new = self.store.write(chunk)
        except (exc.SQLAlchemyError, OSError) as error:
            self._down(error)
            return False
        self.stats.written += new
        self.stats.duplicates += len(chunk) - new
        if not self.stats.store_up:
            log.warning("ledger database is back")
        self.stats.store_up = True
        return True

    def _down(self, error: BaseException) -> None:
        text = describe(error)
        if self.stats.store_up or text != self.stats.last_error:
            log.error("ledger database write failed (records are spooled): %s", text)
        self.stats.store_up = False
        self.stats.last_error = text
        self._next_retry = time.monotonic() + self.settings.retry_seconds

    def _replay(self) -> bool:
        """Replay the spool in order; True when it is empty afterwards."""
        if time.monotonic() < self._next_retry:
            return False
        while (path := self.spool.take()) is not None:
            for chunk in Spool.batches(path, self.settings.batch_rows):
                if not self._write(chunk):
                    return False
                self.stats.spool_pending = max(0, self.stats.spool_pending - len(chunk))
            Path(path).unlink(missing_ok=True)
        self.stats.spool_pending = 0
        self.stats.oldest_spooled_at = None
        return True

    def _to_spool(self, batch: list[RequestRecord]) -> None:
        if not batch:
            return
        try:
            self.spool.append(batch)
        except OSError as error:
            with self._stats_lock:
                self.stats.failed += len(batch)
            log.error(
                "ledger spool %s cannot be written, %d record(s) lost: %s",
                self.spool.path,
                len(batch),
                error.strerror or error,
            )
            return
        with self._stats_lock:
            self.stats.spooled += len(batch)
            self.stats.spool_pending += len(batch)
            if self.stats.oldest_spooled_at is None:
                self.stats.oldest_spooled_at = time.time()
