"""Real servers for the tests: `jupyter-datastore serve` in a subprocess, stopped by its pid."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

TOKEN = "test-token"
# Short delays so tests see saves and eviction quickly.
FAST = [
    "--DatastoreApp.save_delay=0.2",
    "--DatastoreApp.save_max_wait=1.0",
    "--DatastoreApp.file_poll_interval=0.2",
    "--DatastoreApp.room_idle_timeout=1.0",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The browser tests run one after another, on one worker (see addopts)."""
    for item in items:
        if item.get_closest_marker("browser") is not None:
            item.add_marker(pytest.mark.xdist_group("browser"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch(
    command: list[str], env: dict[str, str], log_path: Path, ready: Any, what: str
) -> subprocess.Popen[bytes]:
    """Start a server process logging to `log_path`; return once `ready()` stops raising
    OSError (it answers), or fail with its log if it exits or takes over 60 s."""
    with open(log_path, "ab") as log:  # the child keeps its own copy of the handle
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{_tail(log_path)}")
        try:
            ready()
            return process
        except OSError:
            time.sleep(0.1)
    stop_process(process)
    raise RuntimeError(f"{what} did not start in 60 s:\n{_tail(log_path)}")


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a process by its pid: `sig` (SIGTERM, a clean stop; SIGKILL, a crash), SIGKILL
    after 30 s; then the children it leaves (kernels), by their pids."""
    if process.poll() is not None:
        return
    children = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(children, timeout=10)


def _tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-6000:]


class LoopbackService:
    """A server the tests start beside ours (a kernel gateway, an upstream Jupyter server):
    its own home folder and port on loopback, stopped by its pid with its kernels."""

    what = "service"

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix=f"jds-{self.what}-"))
        self.port = free_port()
        self.log_path = self.home / f"{self.what}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(
        self, command: list[str], env: dict[str, str], probe: urllib.request.Request
    ) -> None:
        """Start `command`; return once `probe` gets an answer."""

        def ready() -> None:
            urllib.request.urlopen(probe, timeout=5).close()

        self.process = launch(command, env, self.log_path, ready, self.what)

    def log(self) -> str:
        return _tail(self.log_path)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
        self.process = None


_CHAIN_START = re.compile(
    r"(?<!another exception occurred:\n\n)(?<!the following exception:\n\n)"
    r"Traceback \(most recent call last\):"
)
"""Where a logged traceback starts, not counting those chained to the one before it."""


class Server:
    """One `jupyter-datastore serve` process over a root folder; restartable on the same store."""

    def __init__(
        self,
        root: Path,
        args: list[str] | None = None,
        tls: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.tls = tls
        self.env = env or {}
        args = args or []
        given = {arg.split("=", 1)[0] for arg in args}
        self.args = [arg for arg in FAST if arg.split("=", 1)[0] not in given] + args
        self.home = Path(tempfile.mkdtemp(prefix="jds-home-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.home / "server.log"
        self.fileid_args = [f"--BaseFileIdManager.db_path={self.home / 'fileid.db'}"]
        """Where the file id database is (none: the server's default, under the root)."""

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return TOKEN

    def start(self) -> Server:
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(self.home / "config"),
            "JUPYTER_DATA_DIR": str(self.home / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
            **self.env,
        }
        command = [
            sys.executable, "-m", "jupyter_datastore.cli", "serve",
            f"--root={self.root}", "--ip=127.0.0.1", f"--port={self.port}", f"--token={TOKEN}",
            *self.fileid_args,
            "--ServerApp.port_retries=0",
            *self.args,
        ]  # fmt: skip
        self.process = launch(
            command, env, self.log_path, lambda: self.get("/api/datastore/status"), "server"
        )
        return self

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """A REST call with the token; the JSON answer (an HTTP error raises)."""
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
        )
        context = ssl._create_unverified_context() if self.tls else None
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return json.loads(response.read())

    def log(self) -> str:
        return _tail(self.log_path)

    def check_log(self) -> None:
        """Fail on any traceback the server logged: errors must be handled, not crash.

        Kernels write to the same log (they inherit it); a traceback from inside ipykernel
        (its control thread racing its own shutdown: "Socket operation on non-socket"), or
        from its launcher (a kernel interrupted while it still imports: KeyboardInterrupt)
        is the kernel's, not the server's, and does not count."""
        text = self.log_path.read_text(errors="replace")
        ours = [
            block  # one chain of tracebacks ("During handling of the above exception...")
            for block in _CHAIN_START.split(text)[1:]
            if not re.search(r"^\s*File \S*/site-packages/ipykernel(/|_launcher\.py)", block, re.M)
        ]
        if ours:
            raise AssertionError(f"the server logged a traceback:\n{text[-8000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process by its pid: SIGTERM (a clean stop) or SIGKILL (a crash).

        The kernels it started are its children: a clean stop shuts them down; after a
        crash, those left are stopped by their pids.
        """
        if self.process is not None:
            stop_process(self.process, sig)
        self.process = None

    def remove_home(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)

    def restart(self, sig: int = signal.SIGTERM) -> Server:
        self.stop(sig)
        return self.start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server shared by a module's tests; each test works on its own files."""
    instance = Server(tmp_path_factory.mktemp("root")).start()
    yield instance
    instance.stop()
    instance.check_log()
    instance.remove_home()


@pytest.fixture(scope="module")
def roles_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of a module's tests with named people and roles (see tests/roles.py)."""
    from roles import ROLE_ARGS
    from two_users import two_users_env

    instance = Server(tmp_path_factory.mktemp("root"), ROLE_ARGS, env=two_users_env()).start()
    yield instance
    instance.stop()
    instance.check_log()
    instance.remove_home()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Any]:
    """Servers of one test, with their own options; all stopped at the end of the test."""
    servers: list[Server] = []

    def make(
        args: list[str] | None = None,
        root: Path | None = None,
        tls: bool = False,
        env: dict[str, str] | None = None,
    ) -> Server:
        instance = Server(root or tmp_path, args, tls, env)
        servers.append(instance)
        return instance.start()

    yield make
    for instance in servers:
        instance.stop()
    for instance in servers:
        instance.check_log()
        instance.remove_home()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_args(request: pytest.FixtureRequest) -> Any:
    """Server options for a store of each backend: the default SQLite file, or a fresh
    PostgreSQL database on this machine (dropped at the end; see tests/store/conftest.py)."""
    if request.param == "sqlite":
        yield []
        return
    from store.conftest import create_database, drop_database

    url = await create_database()
    try:
        yield [f"--store={url}"]
    finally:
        await drop_database(url)


@pytest.fixture
def gateway() -> Iterator[Any]:
    """A real Jupyter Kernel Gateway on loopback (`gateways.Gateway`), stopped at the end."""
    if importlib.util.find_spec("kernel_gateway") is None:
        message = "jupyter-kernel-gateway is not installed (pip install jupyter-kernel-gateway)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from gateways import Gateway

    instance = Gateway().start()
    yield instance
    instance.stop()


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Any]:
    """A stock Jupyter server on loopback (`upstreams.UpstreamServer`), its root under
    tmp_path/upstream, stopped at the end."""
    from upstreams import UpstreamServer

    instance = UpstreamServer(tmp_path / "upstream").start()
    yield instance
    instance.stop()
