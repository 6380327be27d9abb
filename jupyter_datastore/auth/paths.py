"""The one path check: what file or folder a path sent by a client really names.

Every role is decided on the path this module returns, never on the string a client sent:

- the path is taken as jupyter_server takes it (URL paths arrive percent-decoded once by
  Tornado; a second decoding would name another file than the contents manager opens);
- `/`-separated, relative to the root: leading, trailing and repeated `/` and `.` segments
  go, `..` goes up; a path that goes above the root is refused (404, as jupyter_server);
- a backslash or a NUL byte is refused (400): on this server's file systems a backslash is
  part of a name, yet Windows clients and some libraries read it as a separator;
- symbolic links are resolved (on a contents manager with a `root_dir` on this machine): the
  path is the real path inside the root, so a link cannot lend its own role to its target,
  and a path whose real path leaves the root is refused (404).
"""

from __future__ import annotations

import os
import posixpath

from ..errors import BadRequest, NotFound

__all__ = ["MAX_PATH", "Paths", "lexical_path"]

MAX_PATH = 4096
"""Characters of a path a client may send."""


def lexical_path(raw: str) -> str:
    """`raw` without `.`, empty segments and `..` ("" is the root); refused if it leaves
    the root."""
    if len(raw) > MAX_PATH:
        raise BadRequest(f"a path is at most {MAX_PATH} characters")
    if "\\" in raw or "\0" in raw:
        raise BadRequest(f"{raw[:100]!r}: a path may not hold a backslash or a NUL character")
    parts: list[str] = []
    for segment in raw.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not parts:
                raise NotFound(f"{raw[:100]} is outside the root directory")
            parts.pop()
        else:
            parts.append(segment)
    return "/".join(parts)


class Paths:
    """Paths under one root folder (`root_dir` None: contents that are not local files)."""

    def __init__(self, root_dir: str | None) -> None:
        self.root = os.path.realpath(root_dir) if root_dir else None

    def real(self, raw: str) -> str:
        """The real path inside the root that `raw` names ("" is the root).

        Raises:
            BadRequest: a backslash, a NUL character, or a path too long.
            NotFound: the path, or the target of a link on it, is outside the root.
        """
        path = lexical_path(raw)
        if self.root is None or not path:
            return path
        real = os.path.realpath(os.path.join(self.root, *path.split("/")))
        if real == self.root:
            return ""
        if not real.startswith(self.root + os.sep):
            raise NotFound(f"{path[:100]} is outside the root directory")
        return posixpath.join(*os.path.relpath(real, self.root).split(os.sep))

    def file(self, raw: str) -> str:
        """`real(raw)`, which must name something below the root (400 for the root itself)."""
        path = self.real(raw)
        if not path:
            raise BadRequest("a file path is required")
        return path
