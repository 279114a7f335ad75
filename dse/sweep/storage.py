"""Where a study lives: an embedded journal file by default, a database URL when shared.

The journal file (one per results folder) takes many processes on one host without
SQLite's "database is locked"; PostgreSQL (or MySQL) serves workers on many hosts.
SQLite is refused for sweeps: Optuna's own FAQ advises against it for parallel runs.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import optuna

from dse.errors import StorageError

JOURNAL_FILE = "study.journal"
_RDB_SCHEMES = ("postgresql", "postgres", "mysql")
CONNECT_ATTEMPTS = 3


def mask(url: str | None) -> str:
    """The URL with any password replaced by ``***``: safe for output and logs."""
    if url is None:
        return "(embedded journal)"
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def open_storage(url: str | None, results_dir: Path) -> optuna.storages.BaseStorage:
    """The study storage for ``url`` (``None``: the journal file in ``results_dir``)."""
    if url is None:
        results_dir.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(results_dir / JOURNAL_FILE))
        return optuna.storages.JournalStorage(backend)
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        raise StorageError(f"storage {mask(url)}: SQLite locks under parallel workers; use the default journal file "
                           "(omit storage) on one machine, or PostgreSQL across machines")
    if scheme not in _RDB_SCHEMES:
        raise StorageError(f"storage {mask(url)}: unsupported URL scheme {scheme!r}; use postgresql://user:pass@host/db")
    if scheme == "postgres":
        url = "postgresql" + url[len("postgres"):]
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except Exception as err:  # driver and connection errors come in many types; all mean the same to a user
            # Workers starting together on an empty database race to create Optuna's
            # tables; the loser finds them made on its next try.
            if attempt + 1 < CONNECT_ATTEMPTS:
                time.sleep(1.0 + attempt)
                continue
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise StorageError(f"storage {mask(url)}: cannot connect: {mask(detail)}") from None
