"""`jupyter-datastore serve`: options, defaults, and the extension inside `jupyter server`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import free_port

from jupyter_datastore.cli import serve_arguments


def test_short_options_become_jupyter_server_options_and_the_rest_passes_through() -> None:
    args = serve_arguments(
        ["--root", "/data", "--port", "9999", "--token", "t", "--store", "sqlite:///s.db",
         "--ip", "0.0.0.0", "--ServerApp.base_url=/x/"]
    )  # fmt: skip
    assert "--ServerApp.root_dir=/data" in args
    assert "--ServerApp.port=9999" in args
    assert "--IdentityProvider.token=t" in args
    assert "--DatastoreApp.store_url=sqlite:///s.db" in args
    assert "--ServerApp.ip=0.0.0.0" in args
    assert args[-1] == "--ServerApp.base_url=/x/"
    assert "--ServerApp.allow_root=True" in args  # works as root without a flag


def wait_for_status(port: int, token: str, process: subprocess.Popen[bytes], log: Path) -> dict:
    deadline = time.monotonic() + 60
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/datastore/status", headers={"Authorization": f"token {token}"}
    )
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return dict(json.loads(response.read()))
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"no answer in 60 s:\n{log.read_text()}")


def run(
    command: list[str], cwd: Path, port: int, token: str
) -> tuple[dict, subprocess.Popen[bytes], Path]:
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(cwd / ".cfg"),
        "JUPYTER_DATA_DIR": str(cwd / ".data"),
        "JUPYTER_RUNTIME_DIR": str(cwd / ".rt"),
    }
    log = cwd / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        return wait_for_status(port, token, process, log), process, log
    except BaseException:
        process.kill()
        process.wait()
        raise


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=30)


def test_serve_defaults_to_the_current_folder_and_a_sqlite_store_in_it(tmp_path: Path) -> None:
    (tmp_path / "here.txt").write_text("hi")
    port = free_port()
    status, process, log = run(
        [sys.executable, "-m", "jupyter_datastore.cli", "serve", f"--port={port}", "--token=tk",
         f"--BaseFileIdManager.db_path={tmp_path / '.fid.db'}"],
        tmp_path, port, "tk",
    )  # fmt: skip
    try:
        assert status["sessionId"]
        assert (tmp_path / ".jupyter" / "datastore.db").exists()
        with urllib.request.urlopen(
            urllib.request.Request(
                f"http://127.0.0.1:{port}/api/contents/here.txt",
                headers={"Authorization": "token tk"},
            )
        ) as response:
            assert json.loads(response.read())["path"] == "here.txt"  # served from the cwd
    finally:
        stop(process)
    assert "Traceback" not in log.read_text()


def test_the_extension_is_enabled_inside_a_plain_jupyter_server(tmp_path: Path) -> None:
    port = free_port()
    store = tmp_path / "elsewhere" / "store.db"
    status, process, log = run(
        [sys.executable, "-m", "jupyter_server", f"--port={port}", "--IdentityProvider.token=tk",
         "--ServerApp.allow_root=True", "--ServerApp.open_browser=False",
         f"--BaseFileIdManager.db_path={tmp_path / '.fid.db'}",
         f"--DatastoreApp.store_url=sqlite:///{store}"],
        tmp_path, port, "tk",
    )  # fmt: skip
    try:
        # No document is open; the state room is always there.
        assert [r["name"] for r in status["rooms"]] == ["datastore:state"]
        assert store.exists()
    finally:
        stop(process)
    assert "Traceback" not in log.read_text()
