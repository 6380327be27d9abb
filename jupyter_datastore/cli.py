"""The `jupyter-datastore` command.

    jupyter-datastore serve [--root DIR] [--ip ADDR] [--port N] [--token T] [--store URL]
                            [--users [FILE]] [...]
    jupyter-datastore run NOTEBOOK --server URL [--token T] [--kernel NAME] [--timeout S]
    jupyter-datastore users add NAME [--group G ...] [--display-name TEXT] [--password]
                                [--token] [--file F]
    jupyter-datastore users list [--file F]
    jupyter-datastore users remove NAME [--file F]

Any other option is passed to jupyter_server as is (for example
`--DatastoreApp.save_delay=0.5` or `--ServerApp.base_url=/x/`). The server runs as root
without extra flags and does not open a browser.
"""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]

USAGE = """usage: jupyter-datastore serve [--root DIR] [--ip ADDR] [--port N] [--token T]
                               [--store URL] [--users [FILE]] [jupyter_server options]
       jupyter-datastore run NOTEBOOK --server URL [--token T] [--kernel NAME] [--timeout S]
       jupyter-datastore users add NAME [--group G ...] [--display-name TEXT] [--password]
                                  [--token] [--file F]
       jupyter-datastore users list [--file F]
       jupyter-datastore users remove NAME [--file F]

commands:
  serve    start a Jupyter server with the datastore (current folder as root, SQLite store)
  run      run a notebook's code cells on a server; outputs land in the shared notebook
  users    add, list and remove the users of a server started with --users
"""

USERS_FILE = os.path.join(".jupyter", "datastore-users.json")
"""The users file under the root (serve) or the current folder (users), by default."""
IDENTITY_PROVIDER = "jupyter_datastore.auth.identity.UsersIdentityProvider"


def serve_arguments(argv: list[str]) -> list[str]:
    """Translate our short options into jupyter_server's; keep the rest as they are."""
    parser = argparse.ArgumentParser(prog="jupyter-datastore serve")
    parser.add_argument("--root", help="the folder to serve (default: the current folder)")
    parser.add_argument("--ip", help="the address to listen on (default: localhost)")
    parser.add_argument("--port", type=int, help="the port to listen on (default: 8888)")
    parser.add_argument(
        "--token", help="the token clients must present (default: random; none with --users)"
    )
    parser.add_argument("--store", help="the store URL (default: sqlite under ROOT/.jupyter)")
    parser.add_argument(
        "--users",
        nargs="?",
        const="",
        metavar="FILE",
        help=f"people log in as the users of FILE (default FILE: ROOT/{USERS_FILE})",
    )
    options, rest = parser.parse_known_args(argv)
    args = ["--ServerApp.allow_root=True", "--ServerApp.open_browser=False"]
    for name, trait in (
        ("root", "ServerApp.root_dir"),
        ("ip", "ServerApp.ip"),
        ("port", "ServerApp.port"),
        ("token", "IdentityProvider.token"),
        ("store", "DatastoreApp.store_url"),
    ):
        value = getattr(options, name)
        if value is not None:
            args.append(f"--{trait}={value}")
    if options.users is not None:
        users_file = options.users or os.path.join(options.root or os.curdir, USERS_FILE)
        args.append(f"--ServerApp.identity_provider_class={IDENTITY_PROVIDER}")
        args.append(f"--UsersIdentityProvider.users_file={os.path.abspath(users_file)}")
    return args + rest


class _Failure(Exception):
    """A `users` command that cannot be done; the message says why."""


def users_command(argv: list[str]) -> int:
    """`jupyter-datastore users add|list|remove`: edit a users file (written atomically, so a
    running server reads either the old or the new one, and picks it up at once)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--file", default=USERS_FILE, help=f"the users file (default: {USERS_FILE})"
    )
    parser = argparse.ArgumentParser(prog="jupyter-datastore users")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser(
        "add", parents=[common], help="add a user, or change one (only what is given)"
    )
    add.add_argument("name")
    add.add_argument(
        "--group",
        action="append",
        dest="groups",
        metavar="G",
        help="a group of the user; repeat for several (replaces the user's groups)",
    )
    add.add_argument("--display-name", metavar="TEXT", help="the name others see (default: NAME)")
    add.add_argument(
        "--password",
        action="store_true",
        help="ask for a password (read from the first line of stdin if it is not a terminal)",
    )
    add.add_argument(
        "--token",
        action="store_true",
        help="make a new token, printed once (the default for a new user with no --password)",
    )
    commands.add_parser("list", parents=[common], help="list the users (never their secrets)")
    remove = commands.add_parser("remove", parents=[common], help="remove a user")
    remove.add_argument("name")
    options = parser.parse_args(argv)

    from .auth.identity import load_users_file

    path = Path(options.file).absolute()
    try:
        users = load_users_file(path)
        if options.command == "add":
            _add_user(path, users, options)
        elif options.command == "remove":
            _remove_user(path, users, options.name)
        else:
            _list_users(path, users)
    except (_Failure, OSError, ValueError) as exc:
        print(f"jupyter-datastore users: {path}: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_user(path: Path, users: dict[str, Any], options: argparse.Namespace) -> None:
    from jupyter_server.auth.security import passwd

    from .auth.identity import hash_token, parse_user, save_users_file

    name, new = options.name, options.name not in users
    entry = dict(users.get(name, {}))
    token = None
    if options.token or (new and not options.password):
        token = secrets.token_hex(24)
        entry.pop("token", None)
        entry["token_hash"] = hash_token(token)
    if options.password:
        entry["password"] = passwd(_read_password())  # type: ignore[no-untyped-call]
    if options.groups is not None:
        entry["groups"] = sorted(set(options.groups))
    if options.display_name is not None:
        entry["display_name"] = options.display_name
    groups = ", ".join(parse_user(name, entry).groups) or "none"
    save_users_file(path, {**users, name: entry})
    done = "added" if new else "updated"
    print(f"{done} {name} (groups: {groups}) in {path}", file=sys.stderr)
    if token is not None:
        print(f"the token of {name}, shown only this once:", file=sys.stderr)
        print(token, flush=True)


def _remove_user(path: Path, users: dict[str, Any], name: str) -> None:
    from .auth.identity import save_users_file

    if name not in users:
        raise _Failure(f"no user {name!r}")
    save_users_file(path, {key: value for key, value in users.items() if key != name})
    print(f"removed {name} from {path}", file=sys.stderr)


def _list_users(path: Path, users: dict[str, Any]) -> None:
    from .auth.identity import parse_user

    if not users:
        print(f"no users in {path}", file=sys.stderr)
        return
    rows = [("NAME", "GROUPS", "LOGIN", "DISPLAY NAME")]
    for name in sorted(users):
        try:
            entry = parse_user(name, users[name])
        except ValueError as exc:
            rows.append((name, "-", "invalid", str(exc)))
            continue
        credentials = {"password": entry.password, "token": entry.token_hash}
        login = [kind for kind, secret in credentials.items() if secret]
        groups = ",".join(sorted(entry.groups)) or "-"
        rows.append((name, groups, ",".join(login) or "-", entry.display_name))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        print("  ".join([*cells, row[3]]).rstrip())


def _read_password() -> str:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise _Failure("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise _Failure("empty password")
    return password


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command == "serve":
        from .app import DatastoreApp

        DatastoreApp.launch_instance(argv=serve_arguments(rest))  # type: ignore[no-untyped-call]
        return
    if command == "run":
        from .client.run import main as run

        sys.exit(run(rest))
    if command == "users":
        sys.exit(users_command(rest))
    print(f"jupyter-datastore: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
