"""The plan: one msgpack document that carries everything the runtime needs.

``write_plan(document) -> bytes`` and ``read_plan(bytes) -> document`` are a symmetric pair; the
document is a plain dict (see docs/plan-format.md). ``Plan`` wraps a document for the Python API.
This module needs only NumPy and msgpack: the runtime imports it on the device.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import msgpack
import numpy as np

from edgert.errors import PlanError

MAGIC = "EDGERT-PLAN"
FORMAT_VERSION = 1


def write_plan(document: dict) -> bytes:
    body = dict(document)
    body["magic"] = MAGIC
    body["format_version"] = FORMAT_VERSION
    payload = msgpack.packb({k: v for k, v in body.items() if k != "blob"}, use_bin_type=True)
    blob = document.get("blob", b"")
    digest = hashlib.sha256(payload + blob).hexdigest()
    return msgpack.packb({"magic": MAGIC, "format_version": FORMAT_VERSION, "sha256": digest,
                          "payload": payload, "blob": blob}, use_bin_type=True)


def read_plan(data: bytes) -> dict:
    if not data:
        raise PlanError("plan is empty")
    try:
        outer = msgpack.unpackb(data, raw=False, max_bin_len=len(data), max_str_len=1 << 20,
                                max_array_len=1 << 16, max_map_len=1 << 16)
    except Exception as e:
        raise PlanError(f"not an edgert plan (msgpack decode failed: {e})") from None
    if not isinstance(outer, dict) or outer.get("magic") != MAGIC:
        raise PlanError("not an edgert plan (wrong magic)")
    version = outer.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise PlanError(f"plan format version {version} is newer than this edgert reads ({FORMAT_VERSION}); "
                        "upgrade edgert on this device")
    payload, blob = outer.get("payload"), outer.get("blob")
    if not isinstance(payload, bytes) or not isinstance(blob, bytes):
        raise PlanError("plan is corrupt (payload or blob missing)")
    if hashlib.sha256(payload + blob).hexdigest() != outer.get("sha256"):
        raise PlanError("plan checksum mismatch: the file is corrupt or truncated")
    try:
        document = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as e:
        raise PlanError(f"plan is corrupt (payload decode failed: {e})") from None
    if not isinstance(document, dict):
        raise PlanError("plan is corrupt (payload is not a map)")
    document["blob"] = blob
    return document


def load_plan_bytes(source) -> bytes:
    """Bytes of a plan given as bytes, a Plan, or a path."""
    if isinstance(source, Plan):
        return source.to_bytes()
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise PlanError(f"plan file not found: {path}")
    with open(path, "rb") as f:
        return f.read()


def atomic_write(path, data: bytes) -> None:
    """Write via a temporary file in the same directory and rename, so no half file is ever visible."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".edgert-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def to_plain(value):
    """Convert attrs (tuples, NumPy scalars/arrays, str enums) into msgpack-friendly Python values."""
    if isinstance(value, (bool, type(None))):
        return value
    if isinstance(value, str):
        return str(value.value) if hasattr(value, "value") else value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_plain(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    raise TypeError(f"cannot store {type(value).__name__} in a plan")


class Plan:
    """A built plan: the document plus its serialized form."""

    def __init__(self, document: dict):
        self.document = document
        self._bytes: bytes | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> "Plan":
        plan = cls(read_plan(data))
        plan._bytes = bytes(data)
        return plan

    def to_bytes(self) -> bytes:
        if self._bytes is None:
            self._bytes = write_plan(self.document)
        return self._bytes

    def save(self, path) -> None:
        atomic_write(path, self.to_bytes())

    @property
    def layers(self) -> list[dict]:
        return self.document["layers"]

    def __repr__(self) -> str:
        return f"Plan({len(self.layers)} layers, target={self.document.get('target')!r})"
