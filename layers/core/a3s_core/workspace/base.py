"""Workspace backends: where the built-in tools read and write.

Paths are workspace-relative (absolute paths are accepted when they lie inside the workspace)
and may never leave it. Every failure a caller should report is a WorkspaceError.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Protocol


class WorkspaceError(Exception):
    """A path escapes the workspace, does not exist, or is the wrong kind of entry."""


def check_path(path: str) -> str:
    """No filesystem or S3 key takes a NUL byte; say so rather than fail deep in the OS."""
    if "\x00" in path:
        raise WorkspaceError(f"path {path!r} contains a NUL byte")
    return path


def utf8(content: str, path: str) -> bytes:
    """The content as UTF-8; a lone surrogate (half of a broken UTF-16 pair) has no encoding."""
    try:
        return content.encode("utf-8")
    except UnicodeEncodeError as e:
        raise WorkspaceError(f"content for '{path}' is not valid Unicode text: {e.reason} "
                             f"(character {e.start}, {content[e.start]!r})") from None


def globstar(pattern: str) -> str:
    """`**` that is not a whole segment means `*`, as in shells with globstar (pathlib refuses it)."""
    return "/".join(p if p == "**" else re.sub(r"\*{2,}", "*", p) for p in pattern.split("/"))


class Workspace(Protocol):
    def read_text(self, path: str) -> str:
        """UTF-8 text of a file (WorkspaceError if missing, a directory, or not UTF-8)."""
        ...

    def write_text(self, path: str, content: str) -> None:
        """Create or replace a file, creating parent directories."""
        ...

    def exists(self, path: str) -> bool: ...

    def is_dir(self, path: str) -> bool: ...

    def list_dir(self, path: str) -> list[str]:
        """Sorted entry names; directories end with "/"."""
        ...

    def glob(self, pattern: str) -> list[str]:
        """Sorted workspace-relative POSIX paths of the files matching pattern (`**` recurses)."""
        ...

    def relative(self, path: str) -> str:
        """The workspace-relative POSIX form of path ("." for the root)."""
        ...

    def root_dir(self) -> Path | None:
        """The local directory behind the workspace, or None (e.g. an S3 prefix)."""
        ...


class LocalWorkspace:
    """A workspace on a local directory."""

    def __init__(self, root: str | Path) -> None:
        self._root = Path(root).resolve()

    def root_dir(self) -> Path | None:
        return self._root

    def resolve(self, path: str) -> Path:
        """Relative paths are relative to the root; `..` and symlinks are resolved before the
        containment check, so neither can be used to escape."""
        candidate = Path(check_path(path))
        if not candidate.is_absolute():
            candidate = self._root / candidate
        resolved = candidate.resolve()
        if not resolved.is_relative_to(self._root):
            raise WorkspaceError(f"path '{path}' is outside the workspace")
        return resolved

    def relative(self, path: str) -> str:
        return self.resolve(path).relative_to(self._root).as_posix()

    def read_text(self, path: str) -> str:
        target = self.resolve(path)
        if target.is_dir():
            raise WorkspaceError(f"'{path}' is a directory")
        try:
            return target.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise WorkspaceError(f"file not found: '{path}'") from None
        except UnicodeDecodeError:
            raise WorkspaceError(f"'{path}' is not a UTF-8 text file") from None

    def write_text(self, path: str, content: str) -> None:
        target = self.resolve(path)
        if target.is_dir():
            raise WorkspaceError(f"'{path}' is a directory")
        data = utf8(content, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)  # the content as given: no newline translation

    def exists(self, path: str) -> bool:
        return self.resolve(path).exists()

    def is_dir(self, path: str) -> bool:
        return self.resolve(path).is_dir()

    def list_dir(self, path: str) -> list[str]:
        target = self.resolve(path)
        if not target.exists():
            raise WorkspaceError(f"directory not found: '{path}'")
        if not target.is_dir():
            raise WorkspaceError(f"'{path}' is not a directory")
        return sorted(p.name + "/" if p.is_dir() else p.name for p in target.iterdir())

    def glob(self, pattern: str) -> list[str]:
        if not pattern or Path(check_path(pattern)).is_absolute():
            raise WorkspaceError(f"glob pattern must be relative to the workspace, got {pattern!r}")
        found = set()
        for match in self._root.glob(globstar(pattern)):
            resolved = match.resolve()
            # A match through `..` or a symlink may point outside; such files are not ours to list.
            if resolved.is_relative_to(self._root) and resolved.is_file():
                found.add(Path(os.path.normpath(match)).relative_to(self._root).as_posix())
        return sorted(found)
