"""The `jupyter-datastore` command.

    jupyter-datastore serve [--root DIR] [--ip ADDR] [--port N] [--token T] [--store URL]
                            [--users [FILE]] [--gateway-url URL [--gateway-token T]]
                            [--upstream URL [--upstream-token T]] [...]
    jupyter-datastore run NOTEBOOK --server URL [--token T] [--kernel NAME] [--timeout S]
    jupyter-datastore users add NAME [--group G ...] [--display-name TEXT] [--password]
                                [--token] [--file F]
    jupyter-datastore users list [--file F]
    jupyter-datastore users remove NAME [--file F]
    jupyter-datastore store stats|compact|verify|export PATH [--store URL] [--root DIR] [...]

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
                               [--store URL] [--users [FILE]]
                               [--gateway-url URL [--gateway-token T]]
                               [--upstream URL [--upstream-token T]] [jupyter_server options]
       jupyter-datastore run NOTEBOOK --server URL [--token T] [--kernel NAME] [--timeout S]
       jupyter-datastore users add NAME [--group G ...] [--display-name TEXT] [--password]
                                  [--token] [--file F]
       jupyter-datastore users list [--file F]
       jupyter-datastore users remove NAME [--file F]
       jupyter-datastore store stats|compact|verify|export PATH [--store URL] [--root DIR]

commands:
  serve    start a Jupyter server with the datastore (current folder as root, SQLite store)
  run      run a notebook's code cells on a server; outputs land in the shared notebook
  users    add, list and remove the users of a server started with --users
  store    look after a store: stats, compact, verify, export its documents as files
"""

USERS_FILE = os.path.join(".jupyter", "datastore-users.json")
"""The users file under the root (serve) or the current folder (users), by default."""
IDENTITY_PROVIDER = "jupyter_datastore.auth.identity.UsersIdentityProvider"
UPSTREAM_CONTENTS = "jupyter_datastore.upstream.contents.UpstreamContentsManager"
UPSTREAM_KERNELS = "jupyter_datastore.upstream.kernels.UpstreamMappingKernelManager"


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
        "--gateway-url",
        metavar="URL",
        help="run kernels on the Jupyter Kernel Gateway at URL (GatewayClient.url)",
    )
    parser.add_argument(
        "--gateway-token",
        metavar="T",
        help="the token the kernel gateway expects (GatewayClient.auth_token)",
    )
    parser.add_argument(
        "--upstream",
        metavar="URL",
        help="supernode mode: serve the files and kernels of the Jupyter server at URL",
    )
    parser.add_argument(
        "--upstream-token", metavar="T", help="the token the upstream Jupyter server expects"
    )
    parser.add_argument(
        "--users",
        nargs="?",
        const="",
        metavar="FILE",
        help=f"people log in as the users of FILE (default FILE: ROOT/{USERS_FILE})",
    )
    options, rest = parser.parse_known_args(argv)
    if options.upstream is not None and options.gateway_url is not None:
        parser.error("--upstream runs kernels on the upstream: it takes no --gateway-url")
    args = ["--ServerApp.allow_root=True", "--ServerApp.open_browser=False"]
    if options.upstream is not None:
        args += upstream_arguments(options.upstream, options.upstream_token)
    for name, trait in (
        ("root", "ServerApp.root_dir"),
        ("ip", "ServerApp.ip"),
        ("port", "ServerApp.port"),
        ("token", "IdentityProvider.token"),
        ("store", "DatastoreApp.store_url"),
        ("gateway_url", "GatewayClient.url"),
        ("gateway_token", "GatewayClient.auth_token"),
    ):
        value = getattr(options, name)
        if value is not None:
            args.append(f"--{trait}={value}")
    if options.users is not None:
        users_file = options.users or os.path.join(options.root or os.curdir, USERS_FILE)
        args.append(f"--ServerApp.identity_provider_class={IDENTITY_PROVIDER}")
        args.append(f"--UsersIdentityProvider.users_file={os.path.abspath(users_file)}")
    return args + rest


def upstream_arguments(url: str, token: str | None) -> list[str]:
    """Supernode mode in jupyter_server's terms: our contents manager over the upstream's
    contents API, and its kernels through the gateway client (a Jupyter server serves the
    kernel API a Kernel Gateway does)."""
    token = token or ""
    return [
        f"--ServerApp.contents_manager_class={UPSTREAM_CONTENTS}",
        f"--UpstreamContentsManager.upstream_url={url}",
        f"--UpstreamContentsManager.upstream_token={token}",
        f"--ServerApp.kernel_manager_class={UPSTREAM_KERNELS}",
        f"--GatewayClient.url={url}",
        f"--GatewayClient.auth_token={token}",
    ]


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


def default_store(root: str | None) -> str:
    """The store `serve` uses when given none (as `DatastoreApp` picks it)."""
    return os.path.join(os.path.abspath(root or os.curdir), ".jupyter", "datastore.db")


async def _open(url: str) -> Any:
    from .store import open_store

    store = open_store(url)
    await store.start()
    return store


def check_store(url: str) -> str | None:
    """Why the store cannot be used (a damaged file, an unreachable database), or None:
    `serve` says so and stops, instead of serving requests that all fail."""
    import asyncio

    from .errors import DatastoreError

    async def check() -> None:
        store = await _open(url)
        await store.close()

    try:
        asyncio.run(check())
    except DatastoreError as exc:
        return exc.detail
    return None


def store_command(argv: list[str]) -> int:
    """`jupyter-datastore store stats|compact|verify|export PATH`."""
    import asyncio

    from .errors import DatastoreError

    parser = argparse.ArgumentParser(prog="jupyter-datastore store")
    parser.add_argument("action", choices=["stats", "compact", "verify", "export"])
    parser.add_argument("path", nargs="?", help="export: the folder to write the files into")
    parser.add_argument("--store", help="the store URL (default: ROOT/.jupyter/datastore.db)")
    parser.add_argument("--root", help="the server's root folder (default: the current one)")
    parser.add_argument("--json", action="store_true", help="stats: print JSON")
    parser.add_argument("--history", type=float, help="compact: seconds of history to keep")
    parser.add_argument("--step", type=float, help="compact: seconds between history points")
    parser.add_argument("--fileid-db", help="export: jupyter_server_fileid's database")
    parser.add_argument("--force", action="store_true", help="export: overwrite files")
    options = parser.parse_args(argv)
    if (options.action == "export") != (options.path is not None):
        parser.error("export takes a folder, and only export does")
    url = options.store or default_store(options.root)
    from .store import SQLiteStore, open_store

    try:
        named = open_store(url)
    except DatastoreError as exc:
        parser.error(exc.detail)
    if (
        isinstance(named, SQLiteStore)
        and named.path != ":memory:"
        and not os.path.exists(named.path)
    ):
        print(f"jupyter-datastore store: no store at {named.path}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(_store_action(url, options))
    except DatastoreError as exc:
        print(f"jupyter-datastore store: {exc.detail}", file=sys.stderr)
        return 1


async def _store_action(url: str, options: argparse.Namespace) -> int:
    import json

    from . import maintenance
    from .progress import Bar
    from .store import maintenance as store_maintenance
    from .store.base import Retention

    store = await _open(url)
    try:
        if options.action == "stats":
            figures = await store_maintenance.stats(store)
            print(json.dumps(figures, indent=2) if options.json else _stats_text(figures))
            return 0
        bar = Bar(len(await store.documents()), sys.stderr)

        def step(name: str, how: str) -> None:
            bar.advance(f"{name}: {how}")

        try:
            if options.action == "compact":
                defaults = Retention()
                retention = Retention(
                    defaults.history if options.history is None else options.history,
                    defaults.step if options.step is None else options.step,
                )
                before = await store.size_on_disk()
                done = await store_maintenance.compact_all(store, retention, step)
                bar.close()
                await store.close()  # SQLite's write-ahead log still holds the compaction
                reopened = await _open(url)
                after = await reopened.size_on_disk()
                await reopened.close()
                print(
                    f"rows {done.rows_before} -> {done.rows_after}, "
                    f"update bytes {done.bytes_before:,} -> {done.bytes_after:,}, "
                    f"size on disk {_size(before)} -> {_size(after)}"
                )
                return 1 if done.failed else 0
            if options.action == "verify":
                problems = await maintenance.verify(store, step)
                bar.close()
                for problem in problems:
                    print(f"problem: {problem}")
                print(f"{len(problems)} problems found" if problems else "the store is sound")
                return 1 if problems else 0
            folder = Path(options.path)
            root = os.path.abspath(options.root or os.curdir)
            paths = maintenance.file_paths(options.fileid_db or _default_fileid_db(root), root)
            written = await maintenance.export(store, folder, paths, force=options.force, step=step)
            bar.close()
            print(f"{len(written)} documents written into {folder}")
            return 0
        finally:
            bar.close()
    finally:
        await store.close()


def _default_fileid_db(root: str) -> str:
    """The root's own file id database (the server's default), else jupyter_server_fileid's
    per-user one."""
    from jupyter_core.paths import jupyter_data_dir

    from .documents.fileids import root_database

    own = root_database(root)
    return own if os.path.exists(own) else os.path.join(jupyter_data_dir(), "file_id_manager.db")


def _size(size: int | None) -> str:
    return "unknown" if size is None else f"{size:,} bytes"


def _stats_text(figures: dict[str, Any]) -> str:
    lines = [
        f"store:       {figures['location']}",
        f"session id:  {figures['session_id']}",
        f"on disk:     {_size(figures['size_on_disk'])}",
        f"documents:   {figures['documents']} ({figures['rows']} rows, "
        f"{figures['bytes']:,} bytes of updates)",
        f"events {figures['events']}, executions {figures['executions']}, "
        f"notifications {figures['notifications']}, permissions {figures['permissions']}, "
        f"forks {figures['forks']}",
    ]
    if figures["largest"]:
        lines.append("largest documents:")
        lines += [
            f"  {d['bytes']:>12,} bytes  {d['rows']:>6} rows  {d['name']}"
            for d in figures["largest"]
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command == "serve":
        from .app import DatastoreApp

        arguments = serve_arguments(rest)
        given = dict(a[2:].split("=", 1) for a in arguments if a.startswith("--") and "=" in a)
        store = given.get("DatastoreApp.store_url")
        problem = check_store(store or default_store(given.get("ServerApp.root_dir")))
        if problem is not None:
            print(f"jupyter-datastore: cannot start: {problem}", file=sys.stderr)
            sys.exit(1)
        DatastoreApp.launch_instance(argv=arguments)  # type: ignore[no-untyped-call]
        return
    if command == "run":
        from .client.run import main as run

        sys.exit(run(rest))
    if command == "users":
        sys.exit(users_command(rest))
    if command == "store":
        sys.exit(store_command(rest))
    print(f"jupyter-datastore: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
