"""A workspace on an S3 prefix (the deployed kit: Lambdas have no shared disk).

Keys are ``prefix + workspace-relative path``. Directories are implicit: a directory exists
when some key lies under it (a zero-byte "dir/" marker object counts too). The workspace root
always exists. Paths are workspace-relative POSIX paths; an absolute path is taken relative to
the workspace root (its leading "/" is stripped), and a path that leaves the root after
normalisation is refused. Errors a caller should report are WorkspaceError with the same
messages as LocalWorkspace; S3 failures other than a missing key (access denied, no such
bucket, throttling) propagate as botocore errors.

There is no local directory, so root_dir() is None and the `bash` tool refuses to run.
"""
from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from a3s_core.workspace.base import WorkspaceError, check_path, utf8

CONTENT_TYPE = "text/plain; charset=utf-8"
_MISSING = {"NoSuchKey", "404", "NotFound"}
_MAGIC = re.compile(r"[*?\[]")


class S3Workspace:
    """A workspace on ``s3://bucket/prefix``; ``page_size`` is the MaxKeys of each listing page."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", *, page_size: int = 1000) -> None:
        if not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be between 1 and 1000, got {page_size}")
        self._client = client
        self._bucket = bucket
        stripped = prefix.strip("/")
        self._prefix = stripped + "/" if stripped else ""
        self._page_size = page_size

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def prefix(self) -> str:
        return self._prefix

    def root_dir(self) -> Path | None:
        return None

    # -- paths ------------------------------------------------------------------------------

    def relative(self, path: str) -> str:
        rel = posixpath.normpath(check_path(path).lstrip("/") or ".")
        if rel == ".." or rel.startswith("../"):
            raise WorkspaceError(f"path '{path}' is outside the workspace")
        return rel

    def _key(self, rel: str) -> str:
        return self._prefix + rel

    def _dir_prefix(self, rel: str) -> str:
        return self._prefix if rel == "." else self._prefix + rel + "/"

    # -- S3 helpers -------------------------------------------------------------------------

    def _pages(self, prefix: str, delimiter: str | None = None) -> Iterator[dict]:
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        paginator = self._client.get_paginator("list_objects_v2")
        yield from paginator.paginate(**kwargs, PaginationConfig={"PageSize": self._page_size})

    def _object_exists(self, rel: str) -> bool:
        if rel == ".":
            return False
        try:
            self._client.head_object(Bucket=self._bucket, Key=self._key(rel))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in _MISSING:
                return False
            raise
        return True

    def _dir_exists(self, rel: str) -> bool:
        if rel == ".":
            return True
        page = self._client.list_objects_v2(Bucket=self._bucket, Prefix=self._dir_prefix(rel), MaxKeys=1)
        return page.get("KeyCount", len(page.get("Contents", []))) > 0

    # -- the Workspace protocol -------------------------------------------------------------

    def read_text(self, path: str) -> str:
        rel = self.relative(path)
        if rel == ".":
            raise WorkspaceError(f"'{path}' is a directory")
        try:
            body = self._client.get_object(Bucket=self._bucket, Key=self._key(rel))["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in _MISSING:
                raise
            if self._dir_exists(rel):
                raise WorkspaceError(f"'{path}' is a directory") from None
            raise WorkspaceError(f"file not found: '{path}'") from None
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise WorkspaceError(f"'{path}' is not a UTF-8 text file") from None
        # Universal newlines, as LocalWorkspace.read_text (text mode) gives them.
        return text.replace("\r\n", "\n").replace("\r", "\n")

    def write_text(self, path: str, content: str) -> None:
        rel = self.relative(path)
        data = utf8(content, path)
        if self._dir_exists(rel):
            raise WorkspaceError(f"'{path}' is a directory")
        # A file cannot also be a directory: refuse to write beneath an existing file.
        parent = posixpath.dirname(rel)
        while parent:
            if self._object_exists(parent):
                raise WorkspaceError(f"'{parent}' is not a directory")
            parent = posixpath.dirname(parent)
        self._client.put_object(
            Bucket=self._bucket, Key=self._key(rel), Body=data, ContentType=CONTENT_TYPE
        )

    def exists(self, path: str) -> bool:
        rel = self.relative(path)
        return self._object_exists(rel) or self._dir_exists(rel)

    def is_dir(self, path: str) -> bool:
        return self._dir_exists(self.relative(path))

    def list_dir(self, path: str) -> list[str]:
        rel = self.relative(path)
        base = self._dir_prefix(rel)
        entries: set[str] = set()
        seen_any = False
        for page in self._pages(base, delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                seen_any = True
                entries.add(common["Prefix"][len(base):])  # "name/"
            for obj in page.get("Contents", []):
                seen_any = True
                if obj["Key"] != base:  # skip a "dir/" marker object for this directory itself
                    entries.add(obj["Key"][len(base):])
        if not seen_any and rel != ".":
            if self._object_exists(rel):
                raise WorkspaceError(f"'{path}' is not a directory")
            raise WorkspaceError(f"directory not found: '{path}'")
        return sorted(entries)

    def glob(self, pattern: str) -> list[str]:
        if not pattern or check_path(pattern).startswith("/"):
            raise WorkspaceError(f"glob pattern must be relative to the workspace, got {pattern!r}")
        if pattern.endswith("/"):  # only directories match; glob lists files
            return []
        parts = [p for p in pattern.split("/") if p not in ("", ".")]
        if ".." in parts:
            normalised = posixpath.normpath("/".join(parts))
            if normalised == ".." or normalised.startswith("../"):
                return []  # LocalWorkspace lists nothing outside the root either
            parts = [p for p in normalised.split("/") if p not in ("", ".")]
        if not parts:
            return []
        # Consecutive `**` parts mean the same as one.
        parts = [p for i, p in enumerate(parts) if not (p == "**" and i > 0 and parts[i - 1] == "**")]
        # List only beneath the literal leading directories of the pattern.
        literal: list[str] = []
        for part in parts[:-1]:
            if _MAGIC.search(part):
                break
            literal.append(part)
        base = self._prefix + "".join(p + "/" for p in literal)
        found = []
        for page in self._pages(base):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/"):  # a directory marker, not a file
                    continue
                rel = key[len(self._prefix):]
                if _glob_match(parts, rel.split("/")):
                    found.append(rel)
        return sorted(found)

    # -- a local copy, for what needs a real directory (bash, in a worker) ------------------
    def snapshot_to(self, directory: Path) -> dict[str, str]:
        """Download every file into `directory`; returns path -> content hash, for sync_from."""
        seen: dict[str, str] = {}
        for page in self._pages(self._prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(self._prefix):]
                if not rel or rel.endswith("/"):
                    continue  # the prefix itself, or a directory marker
                body = self._client.get_object(Bucket=self._bucket, Key=obj["Key"])["Body"].read()
                target = directory / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(body)
                seen[rel] = hashlib.sha256(body).hexdigest()
        return seen

    def sync_from(self, directory: Path, before: dict[str, str]) -> None:
        """Upload what changed in `directory` since the snapshot, and delete what was removed."""
        now: set[str] = set()
        for path in directory.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            rel = path.relative_to(directory).as_posix()
            now.add(rel)
            body = path.read_bytes()
            if before.get(rel) != hashlib.sha256(body).hexdigest():
                self._client.put_object(Bucket=self._bucket, Key=self._key(rel), Body=body)
        for rel in set(before) - now:
            self._client.delete_object(Bucket=self._bucket, Key=self._key(rel))


def _glob_match(parts: list[str], segments: list[str]) -> bool:
    """pathlib-style: each pattern part matches one path segment with fnmatch (so `*`, `?` and
    `[...]` never cross a "/"); a `**` part matches any number of directories, and as the last
    part every file below."""
    if not parts:
        return not segments
    head, rest = parts[0], parts[1:]
    if head == "**":
        if not rest:
            return bool(segments)
        return any(_glob_match(rest, segments[i:]) for i in range(len(segments)))
    return bool(segments) and fnmatchcase(segments[0], head) and _glob_match(rest, segments[1:])
