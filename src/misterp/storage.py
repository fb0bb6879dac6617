"""Results on a local folder or an ``s3://`` prefix, through fsspec.

A wave is complete when, and only when, its ``manifest.json`` exists: the manifest is written
last, and removed first when a wave is written again, so a reader never mistakes a half-written
or failed run for a result.
"""

from __future__ import annotations

import io
import json
import logging
import os
import uuid
from collections.abc import Mapping
from typing import Any

import fsspec
import numpy as np
import pandas as pd

__all__ = ["MANIFEST", "ResultStore"]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


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

    def _path(self, relative: str) -> str:
        return f"{self.root_path}/{relative.lstrip('/')}"

    def uri(self, relative: str) -> str:
        """The full URI of a path under the root."""
        return f"{self.root_uri}/{relative.lstrip('/')}"

    # -- bytes -------------------------------------------------------------------------------
    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a file atomically."""
        path = self._path(relative)
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
        data: bytes = self.fs.cat_file(self._path(relative))
        return data

    def exists(self, relative: str) -> bool:
        """True if the file exists."""
        return bool(self.fs.exists(self._path(relative)))

    def remove(self, relative: str) -> None:
        """Delete a file if it exists."""
        path = self._path(relative)
        if self.fs.exists(path):
            self.fs.rm_file(path)

    def list(self, relative: str) -> list[str]:
        """Relative paths of all files below a folder (empty if it does not exist)."""
        base = self._path(relative).rstrip("/")
        if not self.fs.exists(base):
            return []
        prefix = self.root_path.rstrip("/") + "/"
        found = self.fs.find(base)
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

    def retract(self, wave: str) -> None:
        """Mark a wave incomplete before rewriting it: remove its manifest first."""
        self.remove(f"{wave}/{MANIFEST}")

    def publish(self, wave: str, manifest: bytes) -> None:
        """Publish the manifest: the last write of a wave, which makes it complete."""
        self.write_bytes(f"{wave}/{MANIFEST}", manifest)
        logger.info("published %s", self.uri(f"{wave}/{MANIFEST}"))


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
