"""Deny by default: every route of the server as `jupyter-datastore serve` builds it
(ours, jupyter_server's, JupyterLab's, file ids, terminals, language servers) has an
explicit decision in `auth/routes.py`; a route that has none needs the owner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from jupyter_datastore.auth.gate import is_ours
from jupyter_datastore.auth.routes import OURS, ROUTES

LIST_ROUTES = """
import json, sys
from jupyter_datastore.app import DatastoreApp
from jupyter_datastore.cli import serve_arguments

argv = serve_arguments(["--root", sys.argv[1], "--port", "0", "--token", "x"])
server = DatastoreApp.initialize_server(argv=argv)
found = []

def walk(router):
    for rule in router.rules:
        if hasattr(rule.target, "rules"):
            walk(rule.target)
        else:
            cls = rule.target
            found.append([str(rule.matcher.regex.pattern), cls.__module__, cls.__qualname__])

walk(server.web_app.default_router)
print(json.dumps(found))
"""


def test_every_route_has_an_explicit_decision(tmp_path: Path) -> None:
    env = {"JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", LIST_ROUTES, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=True,
    )
    routes = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(routes) > 60
    undecided = []
    for pattern, module, name in routes:
        cls = type(name, (), {"__module__": module})
        if f"{module}.{name}" not in ROUTES and not is_ours(cls):
            undecided.append(f"{pattern} -> {module}.{name}")
    assert not undecided, "routes with no decision in auth/routes.py:\n" + "\n".join(undecided)
    seen = {f"{module}.{name}" for _, module, name in routes}
    assert "jupyter_server.nbconvert.handlers.NbconvertFileHandler" in seen
    assert "jupyter_server_terminals.api_handlers.TerminalRootHandler" in seen
    assert "jupyterlab_server.workspaces_handler.WorkspacesHandler" in seen
    assert all(decision != OURS for decision in ROUTES.values())
