"""GraphiQL, the in-browser GraphQL IDE, served on GET with `Accept: text/html`.

Everything the page loads comes from this server (users' servers may be offline): the
front-end build (`packages/labextension`, `jlpm build:prod`) copies GraphiQL's UMD build
and React's into `labextension/graphiql/`, which `handlers/graphql.py` serves under
`api/datastore/graphql/static/`. The page's own script is inline and allowed by its hash
in `CONTENT_SECURITY_POLICY`; what varies (the URLs) is read from data attributes.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from pathlib import Path

from jupyter_core.paths import jupyter_path
from jupyter_server.utils import url_path_join
from tornado.web import StaticFileHandler

__all__ = [
    "ASSETS",
    "CONTENT_SECURITY_POLICY",
    "DEFAULT_QUERY",
    "STATIC",
    "assets_folder",
    "ide_page",
]

STYLES = ("graphiql.min.css",)
SCRIPTS = ("react.production.min.js", "react-dom.production.min.js", "graphiql.min.js")
ASSETS = STYLES + SCRIPTS
"""The files the page loads, in its order; nothing else is served."""

STATIC = "api/datastore/graphql/static/"
"""Where the assets are served, below the server's base URL."""

DEFAULT_QUERY = """\
# GraphQL on this Jupyter server. Ctrl-Enter runs the query; the Docs button shows the
# schema; subscriptions run over a WebSocket.
{
  status {
    version
    sessionId
  }
}
"""

# The fetcher sends jupyter_server's XSRF token (from its `_xsrf` cookie) with every POST
# made with the login cookie; without it a browser's POST is refused.
_SCRIPT = """
(() => {
  const root = document.getElementById("graphiql");
  const endpoint = new URL(root.dataset.endpoint, window.location.href);
  const subscriptions = new URL(endpoint.href);
  subscriptions.protocol = endpoint.protocol === "https:" ? "wss:" : "ws:";
  const xsrf = () => (document.cookie.match(/(?:^|;\\s*)_xsrf=([^;]*)/) || [])[1] || "";
  const fetcher = GraphiQL.createFetcher({
    url: endpoint.href,
    subscriptionUrl: subscriptions.href,
    fetch: (input, init) => {
      const headers = new Headers((init && init.headers) || {});
      headers.set("X-XSRFToken", xsrf());
      return window.fetch(input, {...init, headers, credentials: "same-origin"});
    },
  });
  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher,
      defaultQuery: root.dataset.query,
      storage: GraphiQL.createLocalStorage({namespace: "jupyter-datastore"}),
    }),
  );
})();
"""

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        f"script-src 'self' 'sha256-{_SCRIPT_HASH}'",
        # GraphiQL's editors and popovers set inline styles; its fonts are data: URLs.
        "style-src 'self' 'unsafe-inline'",
        "font-src 'self' data:",
        "img-src 'self' data:",
        "connect-src 'self'",  # HTTP and WebSocket to this server only
        "base-uri 'none'",
        "form-action 'none'",
    ]
)
"""The page's Content-Security-Policy: scripts, styles and connections to this server only."""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>GraphiQL · Jupyter Datastore</title>
{styles}
<style>html, body, #graphiql {{ height: 100%; margin: 0; overflow: hidden; }}</style>
</head>
<body>
<div id="graphiql" data-endpoint="{endpoint}" data-query="{query}">Loading GraphiQL…</div>
{scripts}
<script>{script}</script>
</body>
</html>
"""

_NOT_BUILT = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>GraphiQL · Jupyter Datastore</title></head>
<body>
<h1>GraphiQL is not built</h1>
<p>Its files are made by the front-end build of jupyter-datastore
(<code>cd packages/labextension &amp;&amp; jlpm build:prod</code>); they were not found in
{places}.</p>
<p>The GraphQL API itself works: POST to <code>{endpoint}</code>.</p>
</body>
</html>
"""


def _candidates() -> list[Path]:
    """Where the front-end build puts the files: in the package (a checkout, an editable
    install), or where a wheel installs the JupyterLab extension."""
    here = Path(__file__).resolve().parent.parent / "labextension" / "graphiql"
    installed = [Path(p) / "jupyter-datastore" / "graphiql" for p in jupyter_path("labextensions")]
    return [here, *installed]


def assets_folder() -> Path | None:
    """The first folder holding all of `ASSETS`, if the front end was built."""
    for folder in _candidates():
        if all((folder / name).is_file() for name in ASSETS):
            return folder
    return None


def _asset_url(base_url: str, folder: Path, name: str) -> str:
    """The asset's URL with its content's hash, so a browser may cache it for good."""
    version = StaticFileHandler.get_version({"static_path": str(folder)}, name)
    return url_path_join(base_url, STATIC, name) + f"?v={version}"


def ide_page(base_url: str) -> bytes:
    """The GraphiQL page for a server at `base_url` (such as "/" or "/prefix/")."""
    endpoint = url_path_join(base_url, "api/datastore/graphql")
    folder = assets_folder()
    if folder is None:
        places = ", ".join(f"<code>{escape(str(p))}</code>" for p in _candidates())
        return _NOT_BUILT.format(places=places, endpoint=escape(endpoint)).encode()
    styles = "\n".join(
        f'<link rel="stylesheet" href="{escape(_asset_url(base_url, folder, name))}">'
        for name in STYLES
    )
    scripts = "\n".join(
        f'<script src="{escape(_asset_url(base_url, folder, name))}"></script>' for name in SCRIPTS
    )
    page = _PAGE.format(
        styles=styles,
        scripts=scripts,
        endpoint=escape(endpoint),
        query=escape(DEFAULT_QUERY),
        script=_SCRIPT,
    )
    return page.encode()
