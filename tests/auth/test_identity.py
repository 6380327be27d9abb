"""The users identity provider without a server: users, tokens, passwords, cookies, the file."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jupyter_server.auth.security import passwd

from jupyter_datastore.auth.identity import (
    UserEntry,
    Users,
    UsersIdentityProvider,
    hash_token,
    load_users_file,
    parse_user,
    parse_users,
    save_users_file,
    user_groups,
)

SERVER_TOKEN = "server-token"


@pytest.fixture(scope="module")
def alice_password() -> str:
    return str(passwd("alice-pw"))


@pytest.fixture
def users(alice_password: str) -> dict[str, Any]:
    return {
        "alice": {"display_name": "Alice L.", "token": "alice-token", "password": alice_password,
                  "groups": ["team", "ops"]},
        "bob": {"token_hash": hash_token("bob-token"), "groups": ["team"]},
        "carol": {"token": "carol-token"},
    }  # fmt: skip


class FakeHandler:
    """What the provider reads of a Tornado handler: arguments, headers, the server's token."""

    def __init__(
        self, arguments: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.arguments = arguments or {}
        self.request = SimpleNamespace(
            headers=headers or {}, remote_ip="127.0.0.1", host="127.0.0.1:8888"
        )
        self.token = SERVER_TOKEN
        self.log = logging.getLogger(__name__)

    def get_argument(self, name: str, default: str = "") -> str:
        return self.arguments.get(name, default)

    def get_secure_cookie(self, name: str, **kwargs: Any) -> bytes | None:
        return None


def provider(**config: Any) -> UsersIdentityProvider:
    return UsersIdentityProvider(token=SERVER_TOKEN, **config)


def login(identity: UsersIdentityProvider, **form: str) -> str | None:
    user = identity.process_login_form(FakeHandler(form))
    return None if user is None else user.username


# The entries


def test_a_user_parses_with_every_field_and_a_token_in_clear_is_kept_hashed(
    users: dict[str, Any],
) -> None:
    alice = parse_user("alice", users["alice"])
    assert alice.display_name == "Alice L."
    assert alice.token_hash == hash_token("alice-token")
    assert alice.groups == {"team", "ops"}
    assert alice.check_password("alice-pw")
    assert not alice.check_password("wrong") and not alice.check_password("")
    assert parse_user("dave", {}) == UserEntry("dave")  # no way to log in, but a user
    assert parse_user("dave", {}).to_user().display_name == "dave"


@pytest.mark.parametrize(
    ("name", "body", "says"),
    [
        ("", {}, "1 to 256 characters"),
        (" alice", {}, "no spaces around"),
        ("alice", [], "expected an object"),
        ("alice", {"group": ["team"]}, "unknown fields group"),
        ("alice", {"token": "t", "token_hash": hash_token("t")}, "not both"),
        ("alice", {"token": ""}, "non-empty string"),
        ("alice", {"token_hash": "sha256:beef"}, "64 hex digits"),
        ("alice", {"password": "secret"}, "passwd()"),
        ("alice", {"password": "argon2:not-a-hash"}, "passwd()"),
        ("alice", {"password": "nosuchalgorithm:salt:digest"}, "passwd()"),
        ("alice", {"groups": "team"}, "list of non-empty strings"),
        ("alice", {"groups": [""]}, "list of non-empty strings"),
        ("alice", {"display_name": 3}, "display_name"),
    ],
)
def test_what_does_not_parse_says_why(name: str, body: Any, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_user(name, body)


def test_a_bad_user_is_left_out_and_the_others_kept(users: dict[str, Any]) -> None:
    entries, problems = parse_users({**users, "eve": {"password": "plain"}})
    assert sorted(entry.name for entry in entries) == ["alice", "bob", "carol"]
    assert len(problems) == 1 and "'eve'" in problems[0]
    assert parse_users(["alice"]) == ([], ['users must be an object: {"name": {...}}'])


def test_a_token_two_users_share_counts_for_neither() -> None:
    entries, _ = parse_users({"a": {"token": "same"}, "b": {"token": "same"}, "c": {"token": "c"}})
    found, problems = Users.build(entries)
    assert found.by_token("same") is None
    assert found.by_token("c") is found.get("c")
    assert problems == ["users a, b share a token: it counts for none"]


# Tokens, the login form, cookies


async def test_each_token_is_its_user_and_an_unknown_token_is_nobody(
    users: dict[str, Any],
) -> None:
    identity = provider(users=users)
    for name in ("alice", "bob", "carol"):
        header = FakeHandler(headers={"Authorization": f"token {name}-token"})
        argument = FakeHandler({"token": f"{name}-token"})
        for handler in (header, argument):
            user = await identity.get_user_token(handler)
            assert user is not None and user.username == name
    alice = await identity.get_user_token(FakeHandler({"token": "alice-token"}))
    assert alice is not None and alice.display_name == "Alice L."
    for token in ("nobody", "alice-token ", ""):
        assert await identity.get_user_token(FakeHandler({"token": token})) is None


async def test_the_servers_own_token_is_an_anonymous_user(users: dict[str, Any]) -> None:
    user = await provider(users=users).get_user_token(FakeHandler({"token": SERVER_TOKEN}))
    assert user is not None and user.name.startswith("Anonymous")


def test_no_random_token_is_made_for_a_server_with_users(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JUPYTER_TOKEN", raising=False)
    monkeypatch.delenv("JUPYTER_TOKEN_FILE", raising=False)
    assert UsersIdentityProvider().token == ""
    assert UsersIdentityProvider(token="given").token == "given"


def test_the_login_form_takes_a_name_and_its_password_or_token(users: dict[str, Any]) -> None:
    identity = provider(users=users)
    assert login(identity, username="alice", password="alice-pw") == "alice"
    assert login(identity, username=" alice ", password="alice-pw") == "alice"
    assert login(identity, username="alice", password="alice-token") == "alice"
    assert login(identity, username="bob", password="bob-token") == "bob"
    assert login(identity, password="carol-token") == "carol"  # a token alone
    anonymous = login(identity, password=SERVER_TOKEN)
    assert anonymous is not None and anonymous not in users
    # Anything else is no one: the page again.
    assert login(identity, username="alice", password="wrong") is None
    assert login(identity, username="alice", password="bob-token") is None
    assert login(identity, username="alice", password="") is None
    assert login(identity, username="bob", password="alice-pw") is None
    assert login(identity, username="nobody", password="alice-pw") is None
    assert login(identity, password="alice-pw") is None  # a password needs its name
    assert login(identity) is None


def test_a_login_cookie_names_the_user_until_their_credentials_change(
    users: dict[str, Any],
) -> None:
    identity = provider(users=users)
    alice = parse_user("alice", users["alice"]).to_user()
    cookie = identity.user_to_cookie(alice)
    assert "alice-token" not in cookie and users["alice"]["password"] not in cookie
    assert identity.user_from_cookie(cookie) == alice

    identity.users = {**users, "alice": {**users["alice"], "groups": []}}
    assert identity.user_from_cookie(cookie) == alice  # groups are not credentials
    identity.users = {**users, "alice": {**users["alice"], "token": "new-token"}}
    assert identity.user_from_cookie(cookie) is None
    identity.users = {name: body for name, body in users.items() if name != "alice"}
    assert identity.user_from_cookie(cookie) is None


def test_cookies_of_anonymous_users_stay_and_others_naming_a_user_do_not(
    users: dict[str, Any],
) -> None:
    identity = provider(users=users)
    anonymous = identity.generate_anonymous_user(FakeHandler())
    assert identity.user_from_cookie(identity.user_to_cookie(anonymous)) == anonymous
    # A cookie made by another identity provider with the same secret: no credential.
    other = json.dumps({"username": "alice", "name": "alice", "display_name": "alice",
                        "initials": None, "avatar_url": None, "color": None})  # fmt: skip
    assert identity.user_from_cookie(other) is None
    for garbage in ("not json", "[]", "{}", '{"username": 3}', '{"username": "x"}'):
        assert identity.user_from_cookie(garbage) is None


def test_groups_of_any_provider(users: dict[str, Any]) -> None:
    identity = provider(users=users)
    assert identity.groups_of("alice") == {"team", "ops"}
    assert identity.groups_of("carol") == frozenset()
    assert identity.groups_of("nobody") == frozenset()
    assert user_groups(identity, "bob") == {"team"}
    assert user_groups(object(), "bob") == frozenset()  # jupyter_server's default knows none
    hub = SimpleNamespace(groups_of=lambda name: ["staff"] if name == "bob" else [])
    assert user_groups(hub, "bob") == {"staff"}


# The file


def test_the_file_is_read_again_when_it_changes(
    tmp_path: Path, users: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "users.json"
    identity = provider(users_file=str(path))
    assert len(identity.current_users()) == 0  # missing: no users, said once
    save_users_file(path, {"alice": users["alice"]})
    assert identity.current_users().by_token("alice-token") is not None

    save_users_file(path, {"alice": users["alice"], "bob": users["bob"]})
    assert identity.groups_of("bob") == {"team"}

    # The same size, at once: the modification time may not move; the file is read anyway.
    save_users_file(path, {"alice": users["alice"], "bob": {**users["bob"], "groups": ["maet"]}})
    assert identity.groups_of("bob") == {"maet"}

    path.write_text('{"users": {"alice": ')  # half written: the users stay as they were
    assert sorted(identity.current_users().by_name) == ["alice", "bob"]
    assert "not readable" in caplog.text

    path.unlink()
    assert len(identity.current_users()) == 0
    assert "does not exist" in caplog.text


def test_a_user_in_the_file_replaces_the_configured_one(
    tmp_path: Path, users: dict[str, Any]
) -> None:
    path = tmp_path / "users.json"
    save_users_file(path, {"carol": {"token": "file-token", "groups": ["file"]}})
    identity = provider(users=users, users_file=str(path))
    assert identity.groups_of("carol") == {"file"}
    assert identity.current_users().by_token("carol-token") is None
    assert identity.current_users().by_token("alice-token") is not None


def test_a_users_file_is_written_whole_and_for_its_owner_only(
    tmp_path: Path, users: dict[str, Any]
) -> None:
    path = tmp_path / "new" / "folder" / "users.json"
    save_users_file(path, users)
    assert load_users_file(path) == users
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["users.json"]  # no temporary left
    assert load_users_file(tmp_path / "missing.json") == {}
    (tmp_path / "blank.json").write_text("\n")
    assert load_users_file(tmp_path / "blank.json") == {}
    for text in ("[]", '{"users": [], "x": 1}', '{"users": []}', "{"):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(ValueError):
            load_users_file(tmp_path / "bad.json")
