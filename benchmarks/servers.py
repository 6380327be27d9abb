"""The two servers under test, each in its own process, temp folder and Jupyter dirs.

`ours`: `jupyter-datastore serve` from this project's venv. `anchor`: `jupyter server` with
jupyter-collaboration 5 from its own venv (benchmarks/.anchor-venv, installed on first use),
with its defaults except where its files go; for the execution benchmark, the same from
benchmarks/.anchor-exec-venv, which adds jupyter-server-nbmodel and ipykernel. Both are read
from /proc for CPU and memory and stopped by their pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from ywire import Endpoint

HERE = Path(__file__).resolve().parent
ANCHOR_VENV = HERE / ".anchor-venv"
ANCHOR_REQUIREMENT = "jupyter-collaboration>=5,<6"
ANCHOR_EXEC_VENV = HERE / ".anchor-exec-venv"
ANCHOR_EXEC_REQUIREMENTS = ("jupyter-server-nbmodel", ANCHOR_REQUIREMENT, "ipykernel")
TOKEN = "bench-token"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def ensure_venv(venv: Path, requirements: tuple[str, ...], check: str) -> Path:
    """The python of `venv`, creating the venv and installing `requirements` unless `check`
    (Python code) already runs there; a failed install raises with pip's own words."""
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", check]).returncode == 0:
        return python
    print(f"installing {' '.join(requirements)} into {venv} ...", flush=True)
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    (venv / ".gitignore").write_text("*\n")  # the venv keeps itself out of git
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    done = subprocess.run([*pip, *requirements], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"pip install {' '.join(requirements)} failed ({done.returncode}):\n"
            f"{(done.stdout + done.stderr)[-3000:]}"
        )
    return python


def ensure_anchor_venv() -> Path:
    """The anchor venv's python, creating the venv and installing the anchor if needed."""
    return ensure_venv(
        ANCHOR_VENV, (ANCHOR_REQUIREMENT,), "import jupyter_server_ydoc, jupyter_collaboration"
    )


def ensure_anchor_exec_venv() -> Path:
    """The python of the venv for the execution anchor (jupyter-server-nbmodel on top of
    jupyter-collaboration 5, with a kernel), created and installed if needed."""
    return ensure_venv(
        ANCHOR_EXEC_VENV,
        ANCHOR_EXEC_REQUIREMENTS,
        "import jupyter_server_nbmodel, jupyter_server_ydoc, ipykernel",
    )


ANCHOR_PACKAGES = (
    "jupyter-collaboration", "jupyter-server-ydoc", "pycrdt-websocket", "pycrdt",
    "jupyter-ydoc", "jupyter-server", "tornado",
)  # fmt: skip
ANCHOR_EXEC_PACKAGES = (
    "jupyter-server-nbmodel", *ANCHOR_PACKAGES, "jupyter-client", "ipykernel",
)  # fmt: skip


def anchor_versions(python: Path, packages: tuple[str, ...] = ANCHOR_PACKAGES) -> dict[str, str]:
    code = (
        "import json, sys, importlib.metadata as m; "
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    out = subprocess.run(
        [python, "-c", code, *packages], check=True, capture_output=True, text=True
    )
    return dict(json.loads(out.stdout))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One server process over a fresh root folder; `start`, measure, `stop`."""

    def __init__(self, name: str, command: list[str], home: Path, port: int) -> None:
        self.name = name
        self.command = command
        self.home = home
        self.root = home / "root"
        self.port = port
        self.endpoint = Endpoint(f"http://127.0.0.1:{port}", TOKEN)
        self.probe = "/api/status"
        """What answers once the server is up (a Kernel Gateway has no /api/status)."""
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = home / "server.log"

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def start(self, timeout: float = 120) -> Server:
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(self.home / "config"),
            "JUPYTER_DATA_DIR": str(self.home / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
        }
        env.pop("VIRTUAL_ENV", None)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us, and we stop it by its pid
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                request = urllib.request.Request(
                    f"{self.endpoint.url}{self.probe}", headers={"Authorization": f"token {TOKEN}"}
                )
                with urllib.request.urlopen(request, timeout=5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start in {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process (all its threads) so far."""
        return process_cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")


def process_cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process (all its threads) so far, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def process_cpu_seconds(pid: int) -> float:
    return sum(process_cpu_times(pid))


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine, summed over its cores, from /proc/stat."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / CLOCK_TICKS, sum(fields) / CLOCK_TICKS


class CpuWatch:
    """CPU time used from now until `stop`: by named groups of processes, and by all others."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._start = self._read()

    def _read(self) -> tuple[float, float, dict[str, float]]:
        used = {n: sum(process_cpu_seconds(p) for p in pids) for n, pids in self.groups.items()}
        return time.monotonic(), machine_cpu_seconds()[0], used

    def stop(self) -> dict[str, float]:
        """CPU seconds of each group and of "others" (the rest of the machine), and "elapsed"."""
        (t0, busy0, used0), (t1, busy1, used1) = self._start, self._read()
        used = {name: used1[name] - used0[name] for name in used1}
        return {**used, "others": busy1 - busy0 - sum(used.values()), "elapsed": t1 - t0}


def quiesce(
    servers: list[Server],
    timeout: float = 20.0,
    window: float = 0.5,
    machine_share: float | None = None,
) -> bool:
    """Wait until every server used under 5% of a core over `window` seconds (and, with
    `machine_share`, the whole machine was busy less than that share); False on time-out."""
    deadline = time.monotonic() + timeout
    before = [s.cpu_seconds() for s in servers], machine_cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(window)
        after = [s.cpu_seconds() for s in servers], machine_cpu_seconds()
        quiet = all(b - a <= 0.05 * window for a, b in zip(before[0], after[0], strict=True))
        busy, total = (b - a for a, b in zip(before[1], after[1], strict=True))
        if quiet and (machine_share is None or busy <= machine_share * total):
            return True
        before = after
    return False


def make_home(name: str) -> Path:
    home = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    (home / "root").mkdir()
    return home


def ours(*options: str) -> Server:
    """Our server; `options` are added to its command line."""
    home, port = make_home("ours"), free_port()
    command = [
        sys.executable, "-m", "jupyter_datastore.cli", "serve",
        f"--root={home / 'root'}", "--ip=127.0.0.1", f"--port={port}", f"--token={TOKEN}",
        f"--store={home / 'datastore.db'}",
        f"--BaseFileIdManager.db_path={home / 'fileid.db'}",
        "--ServerApp.port_retries=0", *options,
    ]  # fmt: skip
    return Server("ours", command, home, port)


def anchor(python: Path, *options: str) -> Server:
    """The anchor; `options` are added to its command line."""
    home, port = make_home("anchor"), free_port()
    command = [
        str(python.parent / "jupyter-server"),
        f"--ServerApp.root_dir={home / 'root'}", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", f"--IdentityProvider.token={TOKEN}",
        "--ServerApp.allow_root=True", "--ServerApp.open_browser=False",
        "--ServerApp.port_retries=0",
        f"--SQLiteYStore.db_path={home / 'ystore.db'}",
        f"--BaseFileIdManager.db_path={home / 'fileid.db'}", *options,
    ]  # fmt: skip
    return Server("anchor", command, home, port)


def write_results(part: str, results: Any) -> Path:
    """Keep a part's figures as JSON under benchmarks/results/, named by time; its path."""
    path = HERE / "results" / f"{time.strftime('%Y%m%d-%H%M%S')}-{part}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    return path
