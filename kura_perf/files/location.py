"""Where results live when workers span machines: a local path (the fast path, plain pathlib) or an
fsspec URL (`s3://bucket/prefix` through s3fs, `gcs://`, `memory://` in tests, ...).

`resolve(x)` returns a `pathlib.Path` for a plain path or a `file://` URL, so local code keeps its
temp-file-and-rename writes; any other URL becomes a `Location`, a small path-like over an fsspec
filesystem. Object stores have no rename: a `Location` writes each object in one PUT (an object
appears whole or not at all), and writers still put a stage's manifest last, so a reader never sees
a half-written stage there either.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from urllib.parse import urlparse


def is_remote(where) -> bool:
    return isinstance(where, Location) or ("://" in str(where) and not str(where).startswith("file://"))


def resolve(where) -> "Path | Location":
    if isinstance(where, (Path, Location)):
        return where
    text = str(where)
    if text.startswith("file://"):
        return Path(urlparse(text).path).resolve()
    if "://" in text:
        return Location(text)
    return Path(text).resolve()


class Location:
    """A folder or file on an fsspec filesystem, addressed by URL."""

    def __init__(self, url: str, fs=None):
        import fsspec

        self.url = url.rstrip("/")
        if fs is None:
            fs, _ = fsspec.core.url_to_fs(self.url)
        self.fs = fs
        self.protocol = self.url.split("://", 1)[0]

    @property
    def path(self) -> str:
        """The filesystem's own path (no protocol), as fsspec calls expect."""
        return self.fs._strip_protocol(self.url)

    def __truediv__(self, part: str) -> "Location":
        return Location(f"{self.url}/{str(part).strip('/')}", self.fs)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Location) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    @property
    def name(self) -> str:
        return posixpath.basename(self.url)

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        self.fs.makedirs(self.path, exist_ok=True)

    def is_file(self) -> bool:
        return self.fs.isfile(self.path)

    def exists(self) -> bool:
        return self.fs.exists(self.path)

    def size(self) -> int:
        return int(self.fs.size(self.path))

    def write_bytes(self, data: bytes) -> None:
        with self.fs.open(self.path, "wb") as f:
            f.write(data)

    def read_bytes(self) -> bytes:
        with self.fs.open(self.path, "rb") as f:
            return f.read()

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def unlink(self, missing_ok: bool = False) -> None:
        if self.fs.exists(self.path):
            self.fs.rm(self.path)
        elif not missing_ok:
            raise FileNotFoundError(self.url)

    def rmtree(self) -> None:
        if self.fs.exists(self.path):
            self.fs.rm(self.path, recursive=True)

    def glob(self, pattern: str) -> list["Location"]:
        found = self.fs.glob(f"{self.path}/{pattern}")
        return [Location(self.fs.unstrip_protocol(p), self.fs) for p in sorted(found)]
