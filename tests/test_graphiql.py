"""GraphiQL at /api/datastore/graphql in a real Chromium: the page and everything it loads
come from our server (no CDN), under any base URL; it runs a query and a subscription;
it needs a login, and its static route serves its own files only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import TOKEN, Server
from playwright.sync_api import ConsoleMessage, Request, WebSocket, expect, sync_playwright
from test_jupyterlab import CHROMIUM_ARGS, chromium

from jupyter_datastore.graphql.ide import ASSETS, STATIC

GRAPHQL = "/api/datastore/graphql"
LOAD_TIMEOUT = 60_000  # ms: a 3.5 MB script on a slow machine
ANSWER_TIMEOUT = 30_000  # ms
SUBSCRIPTION = "subscription { stateChanges { state } }"
QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
SET_QUERY = f"""text => document.querySelector({QUERY_EDITOR!r}).CodeMirror.setValue(text)"""
# GraphiQL parses the editor's text 100 ms after a change; its run button uses that parse
# to choose between HTTP and the WebSocket.
PARSED_AS_SUBSCRIPTION = f"""() => {{
  const ast = document.querySelector({QUERY_EDITOR!r}).CodeMirror.documentAST;
  return Boolean(ast && ast.definitions[0].operation === "subscription");
}}"""


class PrefixedServer(Server):
    """A server under a base URL: `url` includes it, as a user's address would."""

    def __init__(self, root: Path, prefix: str) -> None:
        super().__init__(root, [f"--ServerApp.base_url={prefix}"])
        self.prefix = prefix.rstrip("/")

    @property
    def url(self) -> str:
        return super().url + self.prefix


@pytest.fixture(params=["/", "/lab-prefix/"], ids=["root", "base-url"])
def ide_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PrefixedServer]:
    instance = PrefixedServer(tmp_path, request.param).start()
    yield instance
    instance.stop()
    instance.check_log()
    instance.remove_home()


@pytest.mark.browser
def test_graphiql_runs_queries_and_subscriptions_from_the_servers_own_files(
    ide_server: PrefixedServer,
) -> None:
    server = ide_server
    session_id = server.get("/api/datastore/status")["sessionId"]
    origin = urlsplit(server.url).netloc
    requests: list[Request] = []
    sockets: list[str] = []
    console: list[str] = []
    errors: list[str] = []

    def logged(message: ConsoleMessage) -> None:
        console.append(f"{message.type}: {message.text}")

    def opened(socket: WebSocket) -> None:
        sockets.append(socket.url)

    def asked(request: Request) -> None:
        requests.append(request)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            page.on("request", asked)
            page.on("websocket", opened)
            page.on("console", logged)
            page.on("pageerror", lambda error: errors.append(str(error)))

            response = page.goto(f"{server.url}{GRAPHQL}?token={TOKEN}")
            assert response is not None and response.status == 200
            assert response.headers["content-type"].startswith("text/html")
            expect(page.locator(".graphiql-container")).to_be_visible(timeout=LOAD_TIMEOUT)
            expect(page.locator(".graphiql-query-editor")).to_contain_text("sessionId")

            # The default query, run with the run button: the server's answer shows.
            page.locator(".graphiql-execute-button").click()
            result = page.locator(".graphiql-response")
            expect(result).to_contain_text(session_id, timeout=ANSWER_TIMEOUT)

            # A subscription runs over the WebSocket: the server's state arrives.
            page.evaluate(SET_QUERY, SUBSCRIPTION)
            page.wait_for_function(PARSED_AS_SUBSCRIPTION, timeout=ANSWER_TIMEOUT)
            page.locator(QUERY_EDITOR).click()
            page.keyboard.press("Control+Enter")
            expect(result).to_contain_text('"kernels"', timeout=ANSWER_TIMEOUT)
            assert f"{server.url.replace('http', 'ws', 1)}{GRAPHQL}" in sockets, sockets

            # Everything came from our server: the page, its files, the queries.
            urls = [request.url for request in requests] + sockets
            elsewhere = [url for url in urls if urlsplit(url).netloc != origin]
            assert not elsewhere, elsewhere
            loaded = {urlsplit(url).path for url in urls}
            for name in ASSETS:
                assert f"{urlsplit(server.url).path}/{STATIC}{name}" in loaded, loaded
            blocked = [line for line in console if "Content Security Policy" in line]
            assert not blocked and not errors, (blocked, errors)
        except Exception as exc:
            details = "\n".join(console[-40:] + errors)
            raise AssertionError(f"{exc}\n{details}\n--- server log\n{server.log()}") from exc
        finally:
            browser.close()


def test_graphiql_needs_a_login(server: Server) -> None:
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as http:
        page = http.get(GRAPHQL, headers={"Accept": "text/html"})
        asset = http.get(f"{GRAPHQL}/static/graphiql.min.js")
        for answer in (page, asset):
            assert answer.status_code in (302, 403), answer
            if answer.status_code == 302:
                assert "/login" in answer.headers["Location"]
            assert "graphiql" not in answer.text.lower()

        auth = {"Authorization": f"token {TOKEN}"}
        page = http.get(GRAPHQL, headers={"Accept": "text/html", **auth})
        assert page.status_code == 200 and "GraphiQL" in page.text
        asset = http.get(f"{GRAPHQL}/static/graphiql.min.js", headers=auth)
        assert asset.status_code == 200 and "javascript" in asset.headers["Content-Type"]


@pytest.mark.parametrize(
    "path",
    [
        "..%2fpackage.json",  # the JupyterLab extension beside GraphiQL's files
        "..%2f..%2f__init__.py",  # the Python package
        "%2e%2e%2f%2e%2e%2fgraphql%2fide.py",
        "..%5c..%5c__init__.py",
    ],
)
def test_graphiqls_files_are_all_the_static_route_serves(server: Server, path: str) -> None:
    auth = {"Authorization": f"token {TOKEN}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=30) as http:
        answer = http.get(f"{GRAPHQL}/static/{path}")
    assert answer.status_code in (403, 404), answer
    assert "import" not in answer.text and "jupyter-datastore" not in answer.text
