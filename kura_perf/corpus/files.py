"""The file under a conversation load: a regular file (checked without opening it), plain or
gzip-compressed (recognised by its magic bytes, whatever its name), and JSON nested no deeper than
MAX_JSON_DEPTH. Used by the loaders and by the run's pre-flight (kura_perf/pipeline/preflight.py), so both
refuse the same files with the same words.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import stat
import zlib
from pathlib import Path
from typing import BinaryIO

from kura_perf.errors import InputDataError

# Real chat exports nest fewer than 10 levels (record, messages, message, content parts, metadata);
# Python's JSON decoder dies of a RecursionError some hundreds of levels down, naming nothing.
MAX_JSON_DEPTH = 100
GZIP_MAGIC = b"\x1f\x8b"
GZIP_SUFFIX = ".gz"
# What a broken gzip stream raises while it is read (a truncated file, a corrupt block).
GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)
# A JSON string (its closing quote optional, for text cut short) or one bracket: what a depth scan reads.
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)
_NOT_REGULAR = {stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISCHR: "a character device",
                stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket", stat.S_ISDIR: "a directory"}
_EXPECTED = "a conversation file (JSONL or a JSON list, optionally gzip-compressed)"


def check_conversation_file(path: str | os.PathLike) -> Path:
    """`path` if it names a readable regular file; else an InputDataError saying what it is instead.

    Looks with stat() only: a FIFO is never opened (opening one for reading blocks until a writer
    comes, which may be never) and a device is never read."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputDataError(path, None, None, f"an existing {_EXPECTED.removeprefix('a ')}", got="no such file") from None
    except NotADirectoryError:
        raise InputDataError(path, None, None, _EXPECTED, got=f"a path through a file: {_file_in_path(path)} is not a folder") from None
    except PermissionError:
        raise InputDataError(path, None, None, f"a readable {_EXPECTED.removeprefix('a ')}", got="permission denied") from None
    except OSError as exc:
        raise InputDataError(path, None, None, _EXPECTED, got=exc.strerror or type(exc).__name__) from None
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for is_kind, name in _NOT_REGULAR.items() if is_kind(info.st_mode)), "not a regular file")
        expected = _EXPECTED if kind == "a directory" else f"a regular file: {_EXPECTED}"
        raise InputDataError(path, None, None, expected, got=kind)
    if not os.access(path, os.R_OK):
        raise InputDataError(path, None, None, f"a readable {_EXPECTED.removeprefix('a ')}", got="permission denied")
    return path


def _file_in_path(path: Path) -> Path:
    """The first component of `path` that exists and is not a folder (why the path cannot exist)."""
    for parent in reversed(path.absolute().parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return path


def is_gzip(path: Path) -> bool:
    """Whether the file starts with gzip's magic bytes (its name is not trusted either way)."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_binary(path: Path, compressed: bool) -> BinaryIO:
    """The file's (uncompressed) bytes as a stream: gzip is decompressed as it is read."""
    if compressed:
        return gzip.open(path, "rb")
    return open(path, "rb")


def gzip_problem(path: Path, line: int | None, exc: BaseException) -> InputDataError:
    """A gzip stream that broke off while being read, at the line reading had reached."""
    return InputDataError(path, line, None, "complete gzip-compressed data",
                          got=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def plain_stem(path: Path) -> str:
    """The file's name without its extension, looking through '.gz': 'chats' for chats.jsonl.gz."""
    name = path.name.removesuffix(GZIP_SUFFIX) if path.name.endswith(GZIP_SUFFIX) else path.name
    return Path(name).stem


def depth_over_limit(text: str, start: int = 0, end: int | None = None) -> int | None:
    """The bracket nesting depth of the JSON in text[start:end] if it is deeper than MAX_JSON_DEPTH,
    else None; brackets inside strings do not count.

    Costs two counts at C speed unless the text holds more than MAX_JSON_DEPTH opening brackets (it
    cannot be deeper than that), then one regex pass; never recursion, so any depth is measured."""
    end = len(text) if end is None else end
    if text.count("[", start, end) + text.count("{", start, end) <= MAX_JSON_DEPTH:
        return None
    depth = deepest = 0
    for match in _STRING_OR_BRACKET.finditer(text, start, end):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest if deepest > MAX_JSON_DEPTH else None


def value_end(text: str, start: int) -> int | None:
    """Where the bracketed JSON value starting at `start` ends (just past its closing bracket), found
    without decoding it; None if it never closes."""
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text, start):
        token = match.group()
        if token in "[{":
            depth += 1
        elif token in "]}":
            depth -= 1
            if depth == 0:
                return match.end()
    return None


def too_deep(path: Path, line: int, depth: int) -> InputDataError:
    return InputDataError(path, line, None, f"JSON nested at most {MAX_JSON_DEPTH} levels deep "
                          "(chat exports nest fewer than 10)", got=f"{depth} levels")


def open_text_writer(tmp: Path, compressed: bool) -> io.TextIOBase:
    """A UTF-8 text stream writing `tmp`, gzip-compressed if asked (no file name or time in the
    gzip header, so the same conversations give the same bytes)."""
    if not compressed:
        return open(tmp, "w", encoding="utf-8", newline="\n")
    raw = open(tmp, "wb")
    try:
        packed = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
    except BaseException:
        raw.close()
        raise
    return _ClosingTextWrapper(packed, raw)


class _ClosingTextWrapper(io.TextIOWrapper):
    """A text stream over a GzipFile that also closes the file under it (GzipFile leaves a given fileobj open)."""

    def __init__(self, packed: gzip.GzipFile, raw: BinaryIO):
        super().__init__(packed, encoding="utf-8", newline="\n")
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()
