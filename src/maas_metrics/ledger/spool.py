"""The local append-only spool: records the database could not take yet, in arrival order.

One JSON object per line, appended and fsynced per batch, so a record
handed to the spool survives a crash of the gateway. Replay reads the file
from the start; the store ignores ids it already holds, so a replay cut
short by a crash simply runs again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson

from maas_metrics.ledger.record import RequestRecord


class Spool:
    """An append-only file of records waiting for the database."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, batch: Sequence[RequestRecord]) -> None:
        """Append and fsync; raises OSError (disk full, read-only) for the caller to count."""
        data = b"".join(orjson.dumps(r.to_json()) + b"\n" for r in batch)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)

    @property
    def replaying_path(self) -> Path:
        return self.path.with_name(self.path.name + ".replaying")

    def take(self) -> Path | None:
        """Move the spool aside for replay (appends go to a fresh file meanwhile); None when empty.

        A file left aside by a crash mid-replay is older than the spool, so it is returned first.
        """
        with self._lock:
            aside = self.replaying_path
            if aside.exists():
                return aside
            if not self.path.exists():
                return None
            self.path.rename(aside)
            return aside

    def pending(self) -> bool:
        return self.path.exists() or self.replaying_path.exists()

    @staticmethod
    def batches(path: Path, size: int) -> Iterator[list[RequestRecord]]:
        """The records of a spool file in order, `size` at a time (a torn line from a crash is skipped)."""
        batch: list[RequestRecord] = []
        with path.open("rb") as handle:
            for line in handle:
                try:
                    batch.append(RequestRecord.from_json(orjson.loads(line)))
                except (orjson.JSONDecodeError, TypeError):
                    continue
                if len(batch) >= size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def lines(self) -> int:
        total = 0
        for path in (self.replaying_path, self.path):
            if path.exists():
                with path.open("rb") as handle:
                    total += sum(1 for _ in handle)
        return total
