"""Results on a local folder or an ``s3://`` prefix, through fsspec.

A wave is complete when, and only when, its ``manifest.json`` exists: the manifest is written
last, and removed first when a wave is written again, so a reader never mistakes a half-written
or failed run for a result.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import posixpath
import re
import socket
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import fsspec
import numpy as np
import pandas as pd

__all__ = [
    "MANIFEST",
    "ResultStore",
    "StoreUnavailable",
    "UnsafePathError",
    "as_store_unavailable",
    "credential_options",
    "path_problem",
]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"

_DRIVE = re.compile(r"[A-Za-z]:")


class StoreUnavailable(RuntimeError):
    """A store that cannot be reached or used: the network, the endpoint, its permissions.

    Raised after the file system's own retries, naming the store, so a run that stops on it
    says in one line which store and why instead of a library's traceback. Not an
    ``OSError``: a caller's ``except OSError`` (a file that cannot be parsed) does not swallow
    it. A missing file is an answer, not an outage: ``FileNotFoundError`` passes through.
    """

    def __init__(self, uri: str, action: str, cause: BaseException) -> None:
        self.uri = uri
        self.action = action
        self.cause = cause
        detail = " ".join(str(cause).split()) or "no detail"
        super().__init__(
            f"store {uri} is unavailable: {action} failed with {type(cause).__name__}: "
            f"{detail}; check the endpoint, the network and the credentials in the environment"
        )

    def __reduce__(self) -> tuple[type[StoreUnavailable], tuple[str, str, BaseException]]:
        """Pickle with the three arguments: a worker process's outage reaches its run intact."""
        return (type(self), (self.uri, self.action, self.cause))


#: Errors that answer the question asked (no such file), not outages.
_ANSWERS = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


def _unreachable(exc: BaseException) -> bool:
    """True for a connection or timeout error, also as botocore and aiohttp spell them."""
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    with contextlib.suppress(ImportError):
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError

        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return True
    with contextlib.suppress(ImportError):
        from aiohttp import ClientConnectionError

        if isinstance(exc, ClientConnectionError):
            return True
    return False


@contextlib.contextmanager
def as_store_unavailable(
    uri: str, action: str = "access", *, any_os_error: bool = True
) -> Iterator[None]:
    """Raise ``StoreUnavailable`` naming ``uri`` for an error of the store, not of the data.

    ``any_os_error``: every ``OSError`` but a missing file or folder counts (the result store:
    misterp writes it and parses nothing). Pass False where an ``OSError`` may be about the
    file's contents (a damaged parquet file raises one): then only connection and timeout
    errors count. The full error is logged at DEBUG.
    """
    try:
        yield
    except Exception as exc:
        outage = _unreachable(exc) or (
            any_os_error and isinstance(exc, OSError) and not isinstance(exc, _ANSWERS)
        )
        if not outage:
            raise
        logger.debug("%s of %s failed", action, uri, exc_info=True)
        raise StoreUnavailable(uri, action, exc) from None


class UnsafePathError(ValueError):
    """A path that could leave the results root; refused before anything is read or written."""


def path_problem(relative: str) -> str | None:
    r"""Why ``relative`` is not a plain path inside the root, or None if it is.

    Paths are built from ids (wave, market, question, option). Validation rejects unsafe ids
    at the input; this is the last line, so that an id that slipped past it still cannot read
    or write outside ``OUTPUT``. One trailing ``/`` (a folder) is allowed.

    >>> path_problem("2026-10/draws/DE/aware_b1/yes.parquet") is None
    True
    >>> [path_problem(p) for p in ("/etc/passwd", "w/../../x", "w//x", "w\\x")]
    ['it is absolute', "it has a '..' segment", 'it has an empty segment', "it contains '\\'"]
    """
    if not relative:
        return "it is empty"
    if relative.startswith("/") or _DRIVE.match(relative):
        return "it is absolute"
    if "\\" in relative:  # a separator on Windows folders
        return "it contains '\\'"
    if any(not character.isprintable() for character in relative):
        return "it contains a control character"
    segments = relative.removesuffix("/").split("/")
    if "" in segments:
        return "it has an empty segment"
    if ".." in segments:
        return "it has a '..' segment"
    if "." in segments:
        return "it has a '.' segment"
    return None


class ResultStore:
    """Read and write one results root (``OUTPUT``), wave by wave, under ``OUTPUT/WAVE/``.

    Writes are atomic per file: locally a temporary file is renamed into place; on S3 a PUT is
    atomic already. Storage is chosen by the URL, never by sniffing the environment.
    """

    def __init__(self, root_uri: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.root_uri = root_uri.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.fs, self.root_path = fsspec.core.url_to_fs(self.root_uri, **self.storage_options)
        self._local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )

    def __repr__(self) -> str:
        return f"ResultStore({self.root_uri!r})"

    def _checked(self, relative: str) -> str:
        """``relative`` without a trailing ``/``; ``UnsafePathError`` if it could leave the root."""
        problem = path_problem(relative)
        if problem is not None:
            raise UnsafePathError(
                f"refusing path {relative!r} under {self.root_uri}: {problem}, so it could "
                "reach outside the results root. Paths are built from the wave id, markets, "
                "question ids and options; rename the id (validation should have rejected it, "
                "see misterp.ids)"
            )
        return relative.removesuffix("/")

    def _path(self, relative: str) -> str:
        path = f"{self.root_path}/{self._checked(relative)}"
        # Unreachable after the segment checks; kept so that a future loosening of them
        # cannot quietly let a path escape.
        if not posixpath.normpath(path).startswith(self.root_path.rstrip("/") + "/"):
            raise UnsafePathError(f"refusing path {relative!r}: it leaves {self.root_uri}")
        return path

    def uri(self, relative: str) -> str:
        """The full URI of a path under the root (a leading ``/`` means the root, as before).

        It only names a path, so it keeps the old leniency for a leading ``/``; reads and
        writes refuse one.
        """
        return f"{self.root_uri}/{self._checked(relative.lstrip('/'))}"

    # -- bytes -------------------------------------------------------------------------------
    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a file atomically."""
        path = self._path(relative)
        with as_store_unavailable(self.root_uri, f"writing {relative}"):
            if self._local:
                directory = os.path.dirname(path)
                os.makedirs(directory, exist_ok=True)
                temporary = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}")
                with open(temporary, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, path)
            else:
                self.fs.pipe_file(path, data)

    def read_bytes(self, relative: str) -> bytes:
        """Read a whole file."""
        path = self._path(relative)
        with as_store_unavailable(self.root_uri, f"reading {relative}"):
            data: bytes = self.fs.cat_file(path)
        return data

    def exists(self, relative: str) -> bool:
        """True if the file exists."""
        path = self._path(relative)
        with as_store_unavailable(self.root_uri, f"looking for {relative}"):
            return bool(self.fs.exists(path))

    def remove(self, relative: str) -> None:
        """Delete a file if it exists."""
        path = self._path(relative)
        with as_store_unavailable(self.root_uri, f"removing {relative}"):
            if self.fs.exists(path):
                self.fs.rm_file(path)

    def list(self, relative: str) -> list[str]:
        """Relative paths of all files below a folder (empty if it does not exist)."""
        base = self._path(relative).rstrip("/")
        with as_store_unavailable(self.root_uri, f"listing {relative}"):
            if not self.fs.exists(base):
                return []
            found = self.fs.find(base)
        prefix = self.root_path.rstrip("/") + "/"
        return sorted(str(p)[len(prefix) :] if str(p).startswith(prefix) else str(p) for p in found)

    # -- typed helpers -----------------------------------------------------------------------
    def write_json(self, relative: str, payload: Any) -> None:
        """Write JSON (sorted keys, NaN as null)."""
        self.write_bytes(
            relative, json.dumps(_jsonable(payload), indent=2, sort_keys=True).encode()
        )

    def read_json(self, relative: str) -> Any:
        """Read JSON."""
        return json.loads(self.read_bytes(relative))

    def write_parquet(self, relative: str, frame: pd.DataFrame) -> bytes:
        """Write a DataFrame as parquet; returns the bytes written (to hash them)."""
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        data = buffer.getvalue()
        self.write_bytes(relative, data)
        return data

    def read_parquet(self, relative: str) -> pd.DataFrame:
        """Read a parquet file into a DataFrame."""
        return pd.read_parquet(io.BytesIO(self.read_bytes(relative)))

    def write_array(self, relative: str, array: np.ndarray) -> None:
        """Write a NumPy array (``.npy``)."""
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        self.write_bytes(relative, buffer.getvalue())

    def read_array(self, relative: str) -> np.ndarray:
        """Read a NumPy array written by ``write_array``."""
        array: np.ndarray = np.load(io.BytesIO(self.read_bytes(relative)), allow_pickle=False)
        return array

    # -- wave completeness -------------------------------------------------------------------
    def is_complete(self, wave: str) -> bool:
        """True if the wave's manifest has been published."""
        return self.exists(f"{wave}/{MANIFEST}")

    def retract(self, folder: str) -> None:
        """Mark a run's folder (a wave, ``mmm/RUN``) incomplete before rewriting it.

        Its manifest goes first, so an interrupted rewrite never looks complete.
        """
        self.remove(f"{folder}/{MANIFEST}")

    def publish(self, folder: str, manifest: bytes) -> None:
        """Publish a run's manifest: the last write to its folder, which makes it complete."""
        self.write_bytes(f"{folder}/{MANIFEST}", manifest)
        logger.info("published %s", self.uri(f"{folder}/{MANIFEST}"))


def _jsonable(value: Any) -> Any:
    """NaN/inf to None and NumPy scalars to Python, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


#: Option names that carry credentials (fsspec/s3fs/botocore spellings); matched case-blind,
#: also as parts of a name (``aws_secret_access_key``, ``client_secret``).
_CREDENTIAL_WORDS = ("key", "secret", "token", "password", "credential", "sas", "signature")
#: Option names that contain such a word but carry no secret.
_NOT_CREDENTIALS = frozenset({"key_prefix", "sse_kms_key_id_is_public"})


def is_credential_option(name: str) -> bool:
    """True when a storage option's name says it holds a credential.

    >>> [is_credential_option(n) for n in ("key", "aws_secret_access_key", "endpoint_url")]
    [True, True, False]
    """
    lowered = name.lower()
    if lowered in _NOT_CREDENTIALS:
        return False
    return any(word in lowered.split("_") or lowered.endswith(word) for word in _CREDENTIAL_WORDS)


def credential_options(options: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The names of the options that hold credentials, nested ones dotted.

    >>> credential_options({"key": "AKIA", "client_kwargs": {"endpoint_url": "http://s3",
    ...                     "aws_secret_access_key": "x"}})
    ['key', 'client_kwargs.aws_secret_access_key']
    """
    found: list[str] = []
    for name, value in options.items():
        if is_credential_option(str(name)):
            found.append(f"{prefix}{name}")
        elif isinstance(value, Mapping):
            found += credential_options(value, f"{prefix}{name}.")
    return found


def without_credentials(options: Mapping[str, Any]) -> dict[str, Any]:
    """Storage options safe to store where others read them (run parameters, manifests).

    Credentials are dropped at any depth (``client_kwargs.aws_secret_access_key`` too); whoever
    receives the rest gets credentials from its own environment (a Kubernetes Secret, an
    instance role, ``AWS_*`` variables).

    >>> without_credentials({"key": "AKIA", "client_kwargs": {"endpoint_url": "http://s3",
    ...                      "aws_secret_access_key": "x"}})
    {'client_kwargs': {'endpoint_url': 'http://s3'}}
    """
    kept: dict[str, Any] = {}
    for name, value in options.items():
        if is_credential_option(str(name)):
            continue
        kept[name] = without_credentials(value) if isinstance(value, Mapping) else value
    return kept
