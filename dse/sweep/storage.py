"""Where a study lives: an embedded journal file by default, a database URL when shared.

The journal file (one per results folder) takes many processes on one host without
SQLite's "database is locked"; PostgreSQL (or MySQL) serves workers on many hosts, and
Optuna's gRPC storage proxy (``grpc://host:port``, started by ``dse sweep proxy``) stands in
front of it so that a hundred workers share the proxy's one connection pool instead of
holding one each. SQLite is refused for sweeps: Optuna's own FAQ advises against it for
parallel runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna

from dse.errors import StorageError

JOURNAL_FILE = "study.journal"
_RDB_SCHEMES = ("postgresql", "postgres", "mysql")
GRPC_SCHEME = "grpc"
CONNECT_ATTEMPTS = 3
PROBE_TIMEOUT_S = 5.0


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
    scheme = url_scheme(url)
    if scheme == GRPC_SCHEME:
        host, port = grpc_address(url)
        reachable(host, port, f"storage {url}", "is `dse sweep proxy` running there?")
        with warnings.catch_warnings():  # "experimental" on every worker's stderr: said once, in the README
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.GrpcStorageProxy(host=host, port=port)
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


def url_scheme(url: str) -> str:
    """``postgresql+psycopg://...`` -> ``postgresql``."""
    return url.split(":", 1)[0].split("+", 1)[0].lower()


def grpc_address(url: str) -> tuple[str, int]:
    """(host, port) of a ``grpc://host:port`` storage URL.

    >>> grpc_address("grpc://10.0.0.5:13000"), grpc_address("grpc://proxy")
    (('10.0.0.5', 13000), ('proxy', 13000))
    """
    match = re.fullmatch(r"grpc://([^:/]+)(?::(\d+))?/?", url)
    if match is None:
        raise StorageError(f"storage {url}: expected grpc://host:port (the address of `dse sweep proxy`)")
    return match[1], int(match[2] or 13000)


def reachable(host: str, port: int, what: str, hint: str) -> None:
    """A TCP connection to host:port within a few seconds, or a one-line error naming ``what``."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as err:
        raise StorageError(f"{what}: cannot connect to {host}:{port} ({err.strerror or err}); {hint}") from None


def shared_across_hosts(url: str | None) -> bool:
    """Whether workers on other machines can use this storage (a journal file is one host's)."""
    return url is not None


def serve_proxy(url: str, host: str, port: int) -> None:
    """Optuna's gRPC storage proxy in front of the database at ``url``, until interrupted.

    The proxy has no TLS and no authentication: bind it to loopback or to the cluster's
    private network only. Workers reach it as ``grpc://host:port``; the heartbeat and
    dead-worker recovery of :mod:`dse.sweep.worker` are trial attributes, so they pass
    through it unchanged.
    """
    if url_scheme(url) == GRPC_SCHEME:
        raise StorageError(f"storage {url}: the proxy stands in front of a database; give its postgresql:// URL")
    optuna.storages.run_grpc_proxy_server(open_storage(url, Path(".")), host=host, port=port)


def serve_dashboard(storage: optuna.storages.BaseStorage, port: int, host: str = "127.0.0.1") -> None:
    """optuna-dashboard on ``storage`` until interrupted, on loopback by default: like the proxy,
    it has no authentication, and it can delete studies."""
    try:
        import optuna_dashboard
    except ImportError:
        raise StorageError("dse dashboard needs the 'dashboard' extra: pip install 'dse[dashboard]'") from None
    try:
        optuna_dashboard.run_server(storage, host=host, port=port)
    except OSError as err:  # the port is taken, most often
        raise StorageError(f"dashboard on {host}:{port}: {err.strerror or err}; give another --port") from None


def postgres_binaries() -> Path | None:
    """The newest Debian PostgreSQL ``bin`` folder (``/usr/lib/postgresql/<version>/bin``), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


@contextlib.contextmanager
def local_postgres(data_dir: Path, port: int, database: str = "sweeps") -> Iterator[str]:
    """A throwaway PostgreSQL server on loopback for the life of the block; yields its URL.

    For trying the shared storage on one machine (tests, ``bench/storage_scale.py``): the
    cluster lives in ``data_dir`` (emptied first, removed after) and trusts local
    connections. As root, the server runs as the ``postgres`` account (initdb refuses root).
    """
    bindir = postgres_binaries()
    if bindir is None:
        raise StorageError("PostgreSQL is not installed (apt-get install postgresql; .ci/install installs it)")
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]

    def pg(*args: object) -> None:
        subprocess.run([*as_user, *map(str, args)], check=True, capture_output=True, timeout=120)

    pg(bindir / "initdb", "-D", data_dir / "db", "-U", "dse", "--auth=trust")
    pg(bindir / "pg_ctl", "-D", data_dir / "db", "-l", data_dir / "log", "-w", "-o",
       f"-p {port} -k {data_dir} -h 127.0.0.1", "start")
    try:
        pg(bindir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "dse", database)
        yield f"postgresql://dse:unused@127.0.0.1:{port}/{database}"
    finally:
        pg(bindir / "pg_ctl", "-D", data_dir / "db", "-m", "immediate", "stop")
        shutil.rmtree(data_dir, ignore_errors=True)
