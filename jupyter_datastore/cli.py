"""The `jupyter-datastore` command.

    jupyter-datastore serve [--root DIR] [--ip ADDR] [--port N] [--token T] [--store URL] [...]
    jupyter-datastore run NOTEBOOK --server URL [--token T] [--kernel NAME] [--timeout S]

Any other option is passed to jupyter_server as is (for example
`--DatastoreApp.save_delay=0.5` or `--ServerApp.base_url=/x/`). The server runs as root
without extra flags and does not open a browser.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]

USAGE = """usage: jupyter-datastore serve [--root DIR] [--ip ADDR] [--port N] [--token T]
                               [--store URL] [jupyter_server options]
       jupyter-datastore run NOTEBOOK --server URL [--token T] [--kernel NAME] [--timeout S]

commands:
  serve    start a Jupyter server with the datastore (current folder as root, SQLite store)
  run      run a notebook's code cells on a server; outputs land in the shared notebook
"""


def serve_arguments(argv: list[str]) -> list[str]:
    """Translate our short options into jupyter_server's; keep the rest as they are."""
    parser = argparse.ArgumentParser(prog="jupyter-datastore serve")
    parser.add_argument("--root", help="the folder to serve (default: the current folder)")
    parser.add_argument("--ip", help="the address to listen on (default: localhost)")
    parser.add_argument("--port", type=int, help="the port to listen on (default: 8888)")
    parser.add_argument("--token", help="the token clients must present (default: random)")
    parser.add_argument("--store", help="the store URL (default: sqlite under ROOT/.jupyter)")
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
    return args + rest


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
    print(f"jupyter-datastore: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
