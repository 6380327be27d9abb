"""The one path check, on paths alone and on a real folder with links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jupyter_datastore.auth.paths import MAX_PATH, Paths, lexical_path
from jupyter_datastore.errors import BadRequest, NotFound


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ""),
        ("/", ""),
        ("a/b.ipynb", "a/b.ipynb"),
        ("/a//b/./c.ipynb/", "a/b/c.ipynb"),
        ("team/../private/secret.ipynb", "private/secret.ipynb"),
        ("a/b/../..", ""),
        ("./a", "a"),
        ("..a/b..", "..a/b.."),  # names that start or end with dots are names
    ],
)
def test_lexical_paths(raw: str, expected: str) -> None:
    assert lexical_path(raw) == expected


@pytest.mark.parametrize("raw", ["..", "../x", "a/../../x", "/../x", "a/b/../../../x"])
def test_paths_above_the_root_are_refused(raw: str) -> None:
    with pytest.raises(NotFound, match="outside the root"):
        lexical_path(raw)


@pytest.mark.parametrize("raw", ["a\\..\\b", "a\0b", "x" * (MAX_PATH + 1)])
def test_backslashes_nul_and_long_paths_are_bad_requests(raw: str) -> None:
    with pytest.raises(BadRequest):
        lexical_path(raw)


def test_links_resolve_to_their_real_path_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "private").mkdir(parents=True)
    (root / "private/secret.txt").write_text("s")
    (root / "team").mkdir()
    os.symlink(root / "private/secret.txt", root / "team/link.txt")
    os.symlink(root / "private", root / "team/folder")
    os.symlink(tmp_path, root / "team/up")
    (tmp_path / "outside.txt").write_text("o")
    paths = Paths(str(root))
    assert paths.real("team/link.txt") == "private/secret.txt"
    assert paths.real("team/folder/secret.txt") == "private/secret.txt"
    assert paths.real("team/folder/new.ipynb") == "private/new.ipynb"  # not there yet
    assert paths.real("team/new.ipynb") == "team/new.ipynb"
    assert paths.real("team/..") == ""
    for escape in ("team/up/outside.txt", "team/up"):
        with pytest.raises(NotFound):
            paths.real(escape)
    with pytest.raises(BadRequest):
        paths.file("/")


def test_contents_that_are_not_local_files_are_judged_lexically() -> None:
    assert Paths(None).real("a/./b/../c") == "a/c"
