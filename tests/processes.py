"""One harness for tests that run Keel as a real process (`keel serve`, `keel worker`).

Each copy of "spawn, poll until it answers, fail with its log, stop it" drifted a little
(one forgot the process group, one waited on /health and another on /ready); one place
keeps the timeouts generous for a loaded two-core CI machine and the cleanup identical.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import TEST_SECRET, unavailable

START_TIMEOUT = 60  # seconds for a process to answer; a cold start on a busy CI box takes a while
STOP_TIMEOUT = 30  # seconds between SIGTERM and SIGKILL
LOG_TAIL = 3000  # characters of a process's log quoted when it fails to start


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def keel_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment of a Keel process: this one's, the test secret, a private data folder.

    KEEL_* variables of the machine running the tests are dropped, so a developer's own
    settings cannot change what a test sees.
    """
    return {
        **{name: value for name, value in os.environ.items() if not name.startswith("KEEL_")},
        "KEEL_SECRET_KEY": TEST_SECRET,
        "KEEL_DATA_DIR": str(data_dir),
        "KEEL_ENVIRONMENT": "test",
        **overrides,
    }


def serve_command(port: int, *, workers: int | None = None) -> list[str]:
    """`keel serve` on `port`, through this interpreter."""
    command = [sys.executable, "-m", "keel", "serve"]
    if workers is not None:
        command += ["--workers", str(workers)]
    return [*command, "--port", str(port)]


class ServerProcess:
    """A child process in its own process group, its output in `log_path`.

    Its own group so that stopping it also stops what it forked (uvicorn workers, celery
    children) and a Ctrl-C in the terminal does not reach it before the test's cleanup does.
    """

    def __init__(self, command: list[str], *, env: Mapping[str, str], log_path: Path, cwd: Path | None = None) -> None:
        self.command = command
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process: subprocess.Popen[bytes] = subprocess.Popen(
                command,
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,  # a server reads no terminal, and a test's Ctrl-C is not for it
                cwd=cwd,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def tail(self, characters: int = LOG_TAIL) -> str:
        return self.log_path.read_text(errors="replace")[-characters:]

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to the group, then SIGKILL if it has not exited within `timeout`."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
        self.reap(timeout)

    def reap(self, timeout: float = STOP_TIMEOUT) -> None:
        """Wait for an exit already asked for; SIGKILL the group if it does not come."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def wait_ready(
    url: str,
    processes: list[ServerProcess],
    *,
    timeout: float = START_TIMEOUT,
    what: str = "keel serve",
    logs: Callable[[], str] | None = None,
) -> None:
    """Poll `url` until it answers 200; fail the test with the logs if a process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline or any(not process.running() for process in processes):
            quoted = logs() if logs is not None else "\n".join(process.tail() for process in processes)
            pytest.fail(f"{what} did not start:\n{quoted}")
        time.sleep(0.2)


@contextlib.contextmanager
def serving(
    command: list[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    ready_url: str,
    cwd: Path | None = None,
    timeout: float = START_TIMEOUT,
) -> Iterator[ServerProcess]:
    """A process that answers `ready_url` for the duration of the block, then stopped."""
    server = ServerProcess(command, env=env, log_path=log_path, cwd=cwd)
    try:
        wait_ready(ready_url, [server], timeout=timeout)
        yield server
    finally:
        server.stop()


@dataclass
class PrivateRedis:
    """A redis-server of this test's own, to be stopped and started again on the same port."""

    port: int
    tmp_path: Path
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        self.runs += 1
        with (self.tmp_path / f"redis-{self.runs}.log").open("wb") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
                cwd=self.tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        assert not self._answers()


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of this test's own (initdb into a temporary folder) to stop and start at will.

    Never the shared server: other tests and people use it. As root, the cluster is run by the
    `postgres` account, since PostgreSQL refuses to run as root.
    """

    bin_dir: Path
    root: Path
    port: int

    @classmethod
    def create(cls) -> PrivatePostgres:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(path.split("/")[4]))
        initdb = shutil.which("initdb") or (found[-1] if found else None)
        if initdb is None:
            unavailable("a private PostgreSQL cluster needs initdb and pg_ctl (the PostgreSQL server package)")
        assert initdb is not None
        root = Path(tempfile.mkdtemp(prefix="keel-pg-"))
        if os.geteuid() == 0:
            os.chown(root, pwd.getpwnam("postgres").pw_uid, -1)
        server = cls(bin_dir=Path(initdb).parent, root=root, port=free_port())
        server._run("initdb", "-D", str(root / "data"), "--auth=trust", "--username=postgres", "--no-sync")
        return server

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, timeout=120, check=False)
        if done.returncode != 0:
            pytest.fail(f"{program} failed: {done.stdout.decode()[-1500:]}{done.stderr.decode()[-1500:]}")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "server.log"), "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        # Fast shutdown, as a restart or failover does: clients are disconnected, transactions rolled back.
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        if (self.root / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
