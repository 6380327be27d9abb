"""Several named people on one server: users with their own tokens, passwords and groups.

`UsersIdentityProvider` is a jupyter_server `IdentityProvider` for the standalone server
(`jupyter-datastore serve --users FILE`). Its users come from a JSON file
(`users_file`), from configuration (`users`, the same mapping), or both:

    {
      "users": {
        "alice": {
          "display_name": "Alice Liddell",
          "password": "argon2:$argon2id$v=19$m=10240,t=10,p=8$...",
          "token_hash": "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
          "groups": ["team"]
        },
        "bob": {"token": "a token written in clear", "groups": ["team"]}
      }
    }

Every field of a user is optional. `password` is a hash made by
`jupyter_server.auth.passwd()`; `token` is a token in clear, `token_hash` the SHA-256 of
one (what `jupyter-datastore users add` writes: the token itself is shown once and never
stored); a user has at most one of the two. A user with neither a token nor a password
can log in nowhere, but still has groups. A user that does not parse (an unknown field, a
malformed hash) is left out and the reason logged; a token that two users share counts
for neither.

How a request is a user's:

- a token of theirs, as jupyter_server takes the server's own (`Authorization: token T`
  or `?token=T`), looked up by its SHA-256, so the comparison never depends on the secret;
- jupyter_server's login page (`/login`, with a user name field added): their password or
  one of their tokens;
- then the login cookie jupyter_server sets, which names the user and a digest of their
  credentials, so a new password or token, or removing the user, ends the sessions made
  with the old ones.

The server's own token (`--token`, or `JUPYTER_TOKEN`) still works when one is given, as
an anonymous user, as jupyter_server makes; with users, no random token is made when none
is given. A wrong token or password is a request with no user (403 for the REST API, the
login page for a browser), never an error.

The file is checked on each authentication (one `stat`: modification time, size and
inode) and read again when it changed, so users added, changed or removed count from the
next request, with no restart. A file that does not parse leaves the users as they were
(and the reason is logged); a missing file has no users.

Behind JupyterHub or any other identity provider, the permissions ask
`user_groups(provider, name)`, which uses the provider's `groups_of` when it has one.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.auth.login import LoginFormHandler
from jupyter_server.auth.security import passwd, passwd_check
from traitlets import Dict, Unicode, default, observe

from .logins import LoginAttempts

__all__ = [
    "UserEntry",
    "Users",
    "UsersIdentityProvider",
    "UsersLoginHandler",
    "hash_token",
    "load_users_file",
    "parse_user",
    "parse_users",
    "save_users_file",
    "user_groups",
    "users_from_json",
]

FIELDS = frozenset({"display_name", "token", "token_hash", "password", "groups"})
MAX_NAME = 256
_TOKEN_HASH = "sha256:"


def user_groups(identity_provider: Any, username: str) -> frozenset[str]:
    """The groups of a user, from any identity provider: its `groups_of(username)` if it
    has one (ours, or a provider behind JupyterHub that knows groups), else none."""
    groups_of = getattr(identity_provider, "groups_of", None)
    if groups_of is None:
        return frozenset()
    return frozenset(groups_of(username))


def hash_token(token: str) -> str:
    """The `token_hash` of a token: `sha256:` and the hex digest of its UTF-8 bytes."""
    return _TOKEN_HASH + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class UserEntry:
    """One user as configured; `token_hash` and `password` are hashes ("" for none)."""

    name: str
    display_name: str = ""
    token_hash: str = ""
    password: str = ""
    groups: frozenset[str] = frozenset()

    @property
    def credential(self) -> str:
        """A digest of the user's credentials, kept in their login cookie: a cookie made
        before the token or password changed no longer counts."""
        text = json.dumps([self.name, self.token_hash, self.password])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def check_password(self, password: str) -> bool:
        return bool(self.password and password) and _passwd_check(self.password, password)

    def to_user(self) -> User:
        return User(username=self.name, name=self.name, display_name=self.display_name)


def parse_user(name: Any, body: Any) -> UserEntry:
    """A user from its name and its JSON object; ValueError says what is wrong."""
    if not isinstance(name, str) or not name or name != name.strip() or len(name) > MAX_NAME:
        raise ValueError(
            f"user name {name!r}: a user name is 1 to {MAX_NAME} characters, with no spaces around"
        )
    if not isinstance(body, dict):
        raise ValueError(f"user {name!r}: expected an object")
    unknown = body.keys() - FIELDS
    if unknown:
        raise ValueError(f"user {name!r}: unknown fields {', '.join(sorted(map(str, unknown)))}")
    display_name = body.get("display_name", "")
    if not isinstance(display_name, str):
        raise ValueError(f"user {name!r}: display_name must be a string")
    token, token_hash = body.get("token"), body.get("token_hash")
    if token is not None and token_hash is not None:
        raise ValueError(f"user {name!r}: give token or token_hash, not both")
    if token is not None:
        if not isinstance(token, str) or not token:
            raise ValueError(f"user {name!r}: token must be a non-empty string")
        token_hash = hash_token(token)
    elif token_hash is not None and not _is_token_hash(token_hash):
        raise ValueError(f"user {name!r}: token_hash must be 'sha256:' and 64 hex digits")
    password = body.get("password", "")
    if password and not _is_password_hash(password):
        raise ValueError(
            f"user {name!r}: password must be a hash from jupyter_server.auth.passwd()"
        )
    groups = body.get("groups", [])
    if not isinstance(groups, list) or not all(
        isinstance(g, str) and 0 < len(g) <= MAX_NAME for g in groups
    ):
        raise ValueError(f"user {name!r}: groups must be a list of non-empty strings")
    return UserEntry(name, display_name, token_hash or "", password or "", frozenset(groups))


def parse_users(users: Any) -> tuple[list[UserEntry], list[str]]:
    """The users of a `{name: user}` mapping that parse, and why each other one does not."""
    if not isinstance(users, dict):
        return [], ['users must be an object: {"name": {...}}']
    entries: list[UserEntry] = []
    problems: list[str] = []
    for name, body in users.items():
        try:
            entries.append(parse_user(name, body))
        except ValueError as exc:
            problems.append(str(exc))
    return entries, problems


@dataclass(frozen=True)
class Users:
    """The users at one moment, by name and by token hash."""

    by_name: Mapping[str, UserEntry]
    by_token_hash: Mapping[str, UserEntry]

    @classmethod
    def build(cls, entries: Iterable[UserEntry]) -> tuple[Users, list[str]]:
        """The users (a later entry of a name replaces an earlier one), and the problems."""
        by_name = {entry.name: entry for entry in entries}
        owners: dict[str, list[str]] = {}
        for entry in by_name.values():
            if entry.token_hash:
                owners.setdefault(entry.token_hash, []).append(entry.name)
        by_token_hash: dict[str, UserEntry] = {}
        problems: list[str] = []
        for digest, names in owners.items():
            if len(names) > 1:
                problems.append(
                    f"users {', '.join(sorted(names))} share a token: it counts for none"
                )
            else:
                by_token_hash[digest] = by_name[names[0]]
        return cls(by_name, by_token_hash), problems

    def get(self, name: str) -> UserEntry | None:
        return self.by_name.get(name)

    def by_token(self, token: str) -> UserEntry | None:
        """The user whose token this is. The lookup is by the token's SHA-256, so its time
        says nothing about the tokens; the final comparison is constant-time anyway."""
        digest = hash_token(token)
        entry = self.by_token_hash.get(digest)
        if entry is None or not hmac.compare_digest(entry.token_hash, digest):
            return None
        return entry

    def __len__(self) -> int:
        return len(self.by_name)


def load_users_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The `users` mapping of a users file, as written; a missing or blank file has none.

    Raises:
        ValueError: the file is not JSON, or not `{"users": {...}}`.
        OSError: the file cannot be read.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return users_from_json(text)


def users_from_json(text: str) -> dict[str, Any]:
    """The `users` mapping of a users file's text (blank: none); ValueError if it is not one."""
    if not text.strip():
        return {}
    data = json.loads(text)
    if not isinstance(data, dict) or data.keys() - {"users"}:
        raise ValueError('a users file is {"users": {"name": {...}}}')
    users = data.get("users", {})
    if not isinstance(users, dict):
        raise ValueError('"users" must be an object: {"name": {...}}')
    return users


def save_users_file(path: str | os.PathLike[str], users: Mapping[str, Any]) -> None:
    """Write a users file atomically (a new file renamed over the old one, so a server
    never reads half of it), readable by its owner only; creates its folder if needed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"users": dict(users)}, indent=2, sort_keys=True) + "\n"
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:  # mkstemp makes it 0600
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


RACY_NS = 2_000_000_000
"""A file read less than this after its modification time is read again at the next check:
a change in the same clock tick keeps the modification time (git's "racily clean")."""


class UsersIdentityProvider(IdentityProvider):  # type: ignore[misc]
    """Users with their own tokens, passwords and groups, from a file or configuration."""

    users_file = Unicode(
        "",
        config=True,
        help="""A JSON file of users, {"users": {"name": {"display_name", "token" or
        "token_hash", "password", "groups"}}}, read again whenever it changes. Written by
        `jupyter-datastore users`.""",
    )
    users = Dict(
        config=True,
        help="""Users given in configuration, in the file's shape: {"name": {...}}. A user
        also in `users_file` is the file's.""",
    )

    _file_key: tuple[int, int, int] | None = None  # mtime, size, inode of the read
    _file_racy = False
    _file_text: str | None = None
    _file_entries: tuple[UserEntry, ...] = ()
    _current: Users | None = None

    @default("need_token")
    def _need_token_default(self) -> bool:
        return False  # people log in as themselves; a shared token only when one is given

    @default("updatable_fields")
    def _updatable_fields_default(self) -> list[str]:
        return []  # names come from the users; nothing of them is kept elsewhere

    @default("login_handler_class")
    def _login_handler_class_default(self) -> type[UsersLoginHandler]:
        return UsersLoginHandler

    @observe("users", "users_file")
    def _configuration_changed(self, change: Any) -> None:
        self._file_key, self._file_text, self._file_entries = None, None, ()
        self._current = None

    def current_users(self) -> Users:
        """The users now: the configured ones and the file's (read again if it changed)."""
        if self.users_file:
            self._check_file(self._path())
        if self._current is None:
            configured, problems = parse_users(self.users)
            for problem in problems:
                self.log.warning("UsersIdentityProvider.users: %s", problem)
            self._current, problems = Users.build([*configured, *self._file_entries])
            for problem in problems:
                self.log.warning("users: %s", problem)
        return self._current

    def groups_of(self, username: str) -> frozenset[str]:
        """The groups of a user (none for a name that is not a user)."""
        entry = self.current_users().get(username)
        return entry.groups if entry is not None else frozenset()

    async def get_user_token(self, handler: Any) -> User | None:
        token = self.get_token(handler)
        if token:
            entry = self.current_users().by_token(token)
            if entry is not None:
                return entry.to_user()
        user: User | None = await super().get_user_token(handler)  # the server's own token
        return user

    def user_to_cookie(self, user: User) -> str:
        entry = self.current_users().get(user.username)
        if entry is None:  # an anonymous user of the server's token
            return str(super().user_to_cookie(user))
        return json.dumps({"username": entry.name, "credential": entry.credential})

    def user_from_cookie(self, cookie_value: str) -> User | None:
        try:
            data = json.loads(cookie_value)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("username"), str):
            return None
        entry = self.current_users().get(data["username"])
        if "credential" not in data:
            # An anonymous user of the server's token. A cookie naming one of our users
            # without a credential was made by another identity provider with the same
            # cookie secret: it does not count.
            if entry is not None:
                return None
            try:
                anonymous: User | None = super().user_from_cookie(cookie_value)
            except (KeyError, TypeError, ValueError):
                return None
            return anonymous
        if entry is None or not hmac.compare_digest(str(data["credential"]), entry.credential):
            return None  # the user was removed, or their password or token changed
        return entry.to_user()

    def process_login_form(self, handler: Any) -> User | None:
        """The login page's user: a user name and its password or token, or a token alone
        (a user's, or the server's own); None, and the page again, for anything else."""
        name = handler.get_argument("username", default="").strip()
        secret = handler.get_argument("password", default="")
        users = self.current_users()
        if not secret:
            return None
        if name:
            entry = users.get(name)
            if entry is not None and users.by_token(secret) is entry:
                return entry.to_user()
            if entry is not None and entry.password:
                if entry.check_password(secret):
                    return entry.to_user()
            else:  # as long as a password check, so that the time says nothing of names
                _passwd_check(_dummy_hash(), secret)
            self.log.warning("Refused a login as %r from %s", name, handler.request.remote_ip)
            return None
        entry = users.by_token(secret)
        if entry is not None:
            return entry.to_user()
        if self.token and hmac.compare_digest(self.token.encode(), secret.encode()):
            anonymous: User = self.generate_anonymous_user(handler)
            return anonymous
        self.log.warning("Refused a login by token from %s", handler.request.remote_ip)
        return None

    def validate_security(self, app: Any, ssl_options: dict[str, Any] | None = None) -> None:
        super().validate_security(app, ssl_options)
        users = self.current_users()
        where = self.users_file or "configuration"
        if not self.users_file:
            self.log.info("%d users from configuration", len(users))
        if not users and not self.token:
            self.log.warning(
                "No users and no token: nobody can log in until users are added to %s", where
            )

    def _check_file(self, path: str) -> None:
        """Read the users file again if it changed (one `stat` when it did not)."""
        try:
            stat = os.stat(path)
        except OSError:
            if self._file_text != "":  # it was there, or was never looked at
                self.log.warning("The users file %s does not exist: no users from it", path)
                self._file_key, self._file_text, self._file_entries = None, "", ()
                self._current = None
            return
        key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if key == self._file_key and not self._file_racy:
            return
        changed = key != self._file_key
        self._file_key, self._file_racy = key, time.time_ns() - stat.st_mtime_ns < RACY_NS
        try:
            text = Path(path).read_text(encoding="utf-8")
            if text == self._file_text:
                return
            raw = users_from_json(text)
        except (OSError, ValueError) as exc:  # half written by an editor, say
            if changed:
                self.log.error("The users file %s is not readable, users unchanged: %s", path, exc)
            return
        entries, problems = parse_users(raw)
        for problem in problems:
            self.log.warning("%s: %s", path, problem)
        self.log.info("Read %d users from %s", len(entries), path)
        self._file_text, self._file_entries, self._current = text, tuple(entries), None

    def _path(self) -> str:
        return os.path.abspath(os.path.expanduser(self.users_file))


class UsersLoginHandler(LoginFormHandler):  # type: ignore[misc]
    """jupyter_server's login page with a user name field. Its POST is jupyter_server's
    (xsrf check, `process_login_form`, login cookie, safe redirect), with the password
    check in a thread (argon2 takes tens of milliseconds: never on the event loop) and
    failed logins counted per user name and address (`logins.py`: 429 past the limit)."""

    attempts = LoginAttempts()
    """One count for the server (a class attribute: a handler lives for one request)."""

    @allow_unauthenticated
    async def post(self) -> None:
        name = self.get_argument("username", default="").strip()
        address = str(self.request.remote_ip)
        wait = self.attempts.retry_after(name, address)
        if wait > 0:
            self.log.warning("Refused a login as %r from %s: too many failures", name, address)
            self.set_status(429)
            self.set_header("Retry-After", str(math.ceil(wait)))
            self._render(message={"error": "Too many failed logins: try again later"})  # type: ignore[no-untyped-call]
            return
        user = await asyncio.to_thread(self.identity_provider.process_login_form, self)
        if user is None:
            self.attempts.failed(name, address)
            self.set_status(401)
            self._render(message={"error": "Invalid credentials"})  # type: ignore[no-untyped-call]
            return
        self.attempts.succeeded(name, address)
        self.current_user = user
        self.log.info("User %s logged in.", user.username)
        self.identity_provider.set_login_cookie(self, user)
        self._redirect_safe(self.get_argument("next", default=self.base_url))  # type: ignore[no-untyped-call]

    def get_template(self, name: str) -> Any:
        env = self.settings["jinja2_env"]
        if name == "login.html":
            return env.from_string(LOGIN_PAGE)
        return env.get_template(name)


LOGIN_PAGE = """{% extends "page.html" %}
{% block site %}
<div id="jupyter-main-app" class="container">
  <form action="{{base_url}}login?next={{next}}" method="post" class="navbar-form">
    {{ xsrf_form_html() | safe }}
    <label for="username_input"><strong>User name:</strong></label>
    <input type="text" name="username" id="username_input" class="form-control"
           autocomplete="username" autofocus>
    <label for="password_input"><strong>Password or token:</strong></label>
    <input type="password" name="password" id="password_input" class="form-control"
           autocomplete="current-password">
    <button type="submit" class="btn btn-default" id="login_submit">Log in</button>
  </form>
  {% for key in message or {} %}
  <div class="message {{key}}">{{message[key]}}</div>
  {% endfor %}
</div>
{% endblock %}
"""


def _is_token_hash(value: Any) -> bool:
    if not isinstance(value, str) or not value.startswith(_TOKEN_HASH):
        return False
    digest = value[len(_TOKEN_HASH) :]
    return len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)


def _is_password_hash(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if value.startswith("argon2:"):
        import argon2

        try:
            argon2.extract_parameters(value[len("argon2:") :])
        except argon2.exceptions.InvalidHashError:
            return False
        return True
    algorithm, _, rest = value.partition(":")
    salt, _, digest = rest.partition(":")
    try:
        hashlib.new(algorithm)
    except (ValueError, TypeError):
        return False
    return bool(salt and digest)


def _passwd_check(hashed: str, password: str) -> bool:
    try:
        return bool(passwd_check(hashed, password))  # type: ignore[no-untyped-call]
    except ValueError:  # argon2's InvalidHashError: a hash that parse_user let through
        return False


@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown users' passwords against (made once, on first use)."""
    return str(passwd("not a password"))  # type: ignore[no-untyped-call]
