"""Several people on one server (`jupyter-datastore serve --users FILE`): each token is its
user, passwords log in through jupyter_server's login page, the file is read again while
the server runs, groups decide roles; and the `jupyter-datastore users` command."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from conftest import TOKEN, Server
from jupyter_server.auth.security import passwd

from jupyter_datastore.auth.identity import (
    UsersIdentityProvider,
    hash_token,
    load_users_file,
    save_users_file,
)
from jupyter_datastore.cli import serve_arguments

pytestmark = pytest.mark.timeout(180)

PROVIDER = (
    "--ServerApp.identity_provider_class=jupyter_datastore.auth.identity.UsersIdentityProvider"
)


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("users") / "users.json"
    save_users_file(path, {
        "alice": {"display_name": "Alice L.", "token": "alice-token",
                  "password": passwd("alice-pw"), "groups": ["team"]},
        "bob": {"token_hash": hash_token("bob-token"), "groups": ["team"]},
        "carol": {"token": "carol-token"},
    })  # fmt: skip
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, users_file: Path) -> Iterator[Server]:
    args = [f"--users={users_file}", "--DatastoreApp.default_role=none",
            "--DatastoreApp.owners=alice"]  # fmt: skip
    instance = Server(tmp_path_factory.mktemp("root"), args).start()
    yield instance
    instance.stop()
    instance.check_log()
    instance.remove_home()


def client(server: Server, token: str | None = None) -> httpx.Client:
    headers = {} if token is None else {"Authorization": f"token {token}"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


def me(server: Server, token: str) -> httpx.Response:
    with client(server, token) as http:
        return http.get("/api/me")


def users_cli(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "jupyter_datastore.cli", "users", *args]
    return subprocess.run(command, cwd=cwd, input=stdin, capture_output=True, text=True)


def log_in(http: httpx.Client, username: str, password: str) -> httpx.Response:
    """jupyter_server's login page, as a browser uses it: the form, then its POST."""
    page = http.get("/login")
    assert page.status_code == 200 and 'name="username"' in page.text
    form = {"username": username, "password": password, "_xsrf": http.cookies["_xsrf"]}
    return http.post("/login?next=/api/me", data=form)


def login_cookie(http: httpx.Client) -> str | None:
    return next((c.name for c in http.cookies.jar if c.name.startswith("username-")), None)


# Tokens


def test_each_token_is_its_user(server: Server) -> None:
    for name in ("alice", "bob", "carol"):
        response = me(server, f"{name}-token")
        assert response.status_code == 200, response.text
        identity = response.json()["identity"]
        assert identity["username"] == identity["name"] == name
        assert identity["display_name"] == ("Alice L." if name == "alice" else name)
    with client(server) as http:  # ?token= too
        assert http.get("/api/me?token=bob-token").json()["identity"]["username"] == "bob"


def test_the_servers_own_token_is_an_anonymous_user(server: Server) -> None:
    identity = me(server, TOKEN).json()["identity"]
    assert re.fullmatch("[0-9a-f]{32}", identity["username"])
    assert identity["name"].startswith("Anonymous")


def test_a_wrong_token_is_no_one(server: Server) -> None:
    for token in ("nobody", "alice-pw", hash_token("bob-token"), "alice-token2"):
        assert me(server, token).status_code == 403
    with client(server, "nobody") as http:
        assert http.get("/api/contents").status_code == 403
        page = http.get("/lab")
        assert page.status_code == 302 and "/login" in page.headers["Location"]


# Passwords and cookies


def test_a_password_login_gives_a_cookie_that_authenticates(server: Server) -> None:
    with client(server) as http:
        response = log_in(http, "alice", "alice-pw")
        assert response.status_code == 302 and response.headers["Location"] == "/api/me"
        assert login_cookie(http) is not None
        assert http.get("/api/me").json()["identity"]["username"] == "alice"
        assert http.get("/lab").status_code == 200
        # A browser's write: the cookie and the xsrf header, as JupyterLab sends them.
        headers = {"X-XSRFToken": http.cookies["_xsrf"]}
        body = {"type": "file", "format": "text", "content": "by alice"}
        written = http.put("/api/contents/alice.txt", json=body, headers=headers)
        assert written.status_code == 201, written.text
        assert http.put("/api/contents/alice.txt", json=body).status_code == 403  # no xsrf


def test_a_wrong_password_shows_the_login_page_again(server: Server) -> None:
    for username, password in [("alice", "wrong"), ("nobody", "alice-pw"), ("", "alice-pw")]:
        with client(server) as http:
            response = log_in(http, username, password)
            assert response.status_code == 401
            assert "Invalid credentials" in response.text
            assert login_cookie(http) is None
            assert http.get("/api/me").status_code == 403


# The file, edited while the server runs


def test_users_added_while_the_server_runs_can_log_in_at_once(
    server: Server, users_file: Path
) -> None:
    added = users_cli("add", "dave", "--group", "team", "--file", str(users_file), cwd=server.root)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    response = me(server, token)
    assert response.status_code == 200 and response.json()["identity"]["username"] == "dave"

    removed = users_cli("remove", "dave", "--file", str(users_file), cwd=server.root)
    assert removed.returncode == 0, removed.stderr
    assert me(server, token).status_code == 403


def test_a_new_password_ends_the_sessions_made_with_the_old_one(
    server: Server, users_file: Path
) -> None:
    def set_password(password: str) -> None:
        done = users_cli("add", "erin", "--password", "--file", str(users_file),
                         cwd=server.root, stdin=password + "\n")  # fmt: skip
        assert done.returncode == 0 and done.stdout == "", done.stderr

    set_password("first")
    with client(server) as http:
        assert log_in(http, "erin", "first").status_code == 302
        assert http.get("/api/me").json()["identity"]["username"] == "erin"
        set_password("second")
        assert http.get("/api/me").status_code == 403
        assert log_in(http, "erin", "first").status_code == 401
        assert log_in(http, "erin", "second").status_code == 302
        assert http.get("/api/me").json()["identity"]["username"] == "erin"


def test_groups_of_the_file_decide_roles(server: Server, users_file: Path) -> None:
    with client(server, "alice-token") as alice:
        rule = {"groups": {"team": "editor"}}
        assert alice.put("/api/datastore/permissions/shared", json=rule).status_code == 200
    with client(server, "bob-token") as bob:
        assert bob.get("/api/datastore/permissions/shared").json()["role"] == "editor"
    assert me(server, "carol-token").status_code == 200
    with client(server, "carol-token") as carol:
        assert carol.get("/api/datastore/permissions/shared").status_code == 403

    users = load_users_file(users_file)
    save_users_file(users_file, {**users, "carol": {**users["carol"], "groups": ["team"]}})
    with client(server, "carol-token") as carol:
        assert carol.get("/api/datastore/permissions/shared").json()["role"] == "editor"


# The command


def test_serve_users_sets_the_identity_provider(tmp_path: Path) -> None:
    args = serve_arguments(["--users", "people.json", "--port", "1"])
    assert PROVIDER in args
    assert f"--UsersIdentityProvider.users_file={os.path.abspath('people.json')}" in args
    args = serve_arguments(["--root", str(tmp_path), "--users"])
    default = tmp_path / ".jupyter" / "datastore-users.json"
    assert f"--UsersIdentityProvider.users_file={default}" in args
    assert not any("identity_provider" in arg for arg in serve_arguments(["--port", "1"]))


def test_the_users_command_adds_lists_and_removes(tmp_path: Path) -> None:
    path = tmp_path / ".jupyter" / "datastore-users.json"  # the default, under the folder
    added = users_cli("add", "alice", "--group", "team", "--group", "ops",
                      "--display-name", "Alice L.", cwd=tmp_path)  # fmt: skip
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert re.fullmatch("[0-9a-f]{48}", token)
    assert "shown only this once" in added.stderr
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert token not in path.read_text()  # stored hashed

    bob = users_cli("add", "bob", "--password", "--file", str(path), cwd=tmp_path, stdin="pw\n")
    assert bob.returncode == 0 and bob.stdout == "", bob.stderr  # a password, no token

    listed = users_cli("list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = [line.split() for line in listed.stdout.splitlines()]
    assert lines == [
        ["NAME", "GROUPS", "LOGIN", "DISPLAY", "NAME"],
        ["alice", "ops,team", "token", "Alice", "L."],
        ["bob", "-", "password"],
    ]

    identity = UsersIdentityProvider(users_file=str(path))
    assert identity.current_users().by_token(token) == identity.current_users().get("alice")
    assert identity.current_users().get("bob").check_password("pw")  # type: ignore[union-attr]

    again = users_cli("add", "alice", "--token", cwd=tmp_path)  # a new token; the rest kept
    assert again.returncode == 0 and again.stdout.strip() not in ("", token)
    assert identity.current_users().by_token(token) is None
    assert identity.groups_of("alice") == {"ops", "team"}

    assert users_cli("remove", "alice", cwd=tmp_path).returncode == 0
    assert [line.split()[0] for line in users_cli("list", cwd=tmp_path).stdout.splitlines()] == [
        "NAME",
        "bob",
    ]
    missing = users_cli("remove", "alice", cwd=tmp_path)
    assert missing.returncode == 1 and "no user 'alice'" in missing.stderr


def test_the_users_command_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    path = tmp_path / ".jupyter" / "datastore-users.json"
    empty = users_cli("add", "bob", "--password", cwd=tmp_path, stdin="\n")
    assert empty.returncode == 1 and "empty password" in empty.stderr
    assert not path.exists()
    bad_name = users_cli("add", " bob", cwd=tmp_path)
    assert bad_name.returncode == 1 and "no spaces around" in bad_name.stderr
    assert not path.exists()

    path.parent.mkdir()
    path.write_text("{not json")
    broken = users_cli("add", "bob", cwd=tmp_path)
    assert broken.returncode == 1 and str(path) in broken.stderr
    assert path.read_text() == "{not json"  # never overwritten
    assert users_cli("list", cwd=tmp_path).returncode == 1


async def test_removing_a_user_closes_their_open_room_at_once(
    server: Server, users_file: Path
) -> None:
    from notebooks import code_cell, notebook, write_notebook
    from yclient import YClient, until

    users = load_users_file(users_file)
    save_users_file(users_file, {**users, "gina": {"token": "gina-token"}})
    write_notebook(server.root / "gina.ipynb", notebook(code_cell("g = 1", "c1")))
    with client(server, "alice-token") as alice:
        rule = {"users": {"gina": "editor"}}
        assert alice.put("/api/datastore/permissions/gina.ipynb", json=rule).status_code == 200
    gina = await YClient.connect(server.url, "gina-token", "gina.ipynb")
    ws = server.url.replace("http", "ws", 1)
    streams = [
        await websockets.connect(f"{ws}{path}?token=gina-token")
        for path in ("/api/events/subscribe", "/api/events/subscribe/notification")
    ]
    try:
        save_users_file(users_file, users)  # gina removed
        await until(gina.closed.is_set, timeout=3, what="gina's room socket closed")
        assert gina.close_code == 4403
        assert "no longer valid" in gina.close_reason
        for stream in streams:  # her event stream and notification feed end too
            await asyncio.wait_for(stream.wait_closed(), timeout=3)
            assert stream.close_code == 4403
    finally:
        await gina.close()
        for stream in streams:
            await stream.close()


def test_failed_logins_are_slowed_per_name_and_address(server: Server, users_file: Path) -> None:
    users = load_users_file(users_file)
    save_users_file(users_file, {**users, "ivy": {"password": passwd("ivy-pw")}})
    with client(server) as http:
        for _ in range(5):
            assert log_in(http, "ivy", "guess").status_code == 401
        refused = log_in(http, "ivy", "ivy-pw")  # even the right password, for now
        assert refused.status_code == 429, refused.text
        assert 0 < int(refused.headers["Retry-After"]) <= 60
        assert login_cookie(http) is None
    with client(server) as http:  # another name from the same address is not slowed
        assert log_in(http, "alice", "alice-pw").status_code == 302
