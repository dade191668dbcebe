"""The plan: one msgpack document that carries everything the runtime needs (spec: docs/plan-format.md).

``write_plan(document) -> bytes`` and ``read_plan(bytes) -> document`` are a symmetric pair over a
plain dict. The top-level map starts with ``header``; the whole file (the header with its checksum
field zeroed, then the body) is covered by the header's SHA-256, and the constants blob is the last
entry, placed at a 64-byte aligned file offset. The reader bounds every length by the file size
before anything is allocated, checks the checksum before decoding the body, and validates the body's
structure (``edgert.load`` then checks its meaning: ``edgert/runtime/validate.py``), so a bad plan is
always a one-line ``PlanError``. This module needs only NumPy and msgpack: the runtime imports it on
the device.
"""

from __future__ import annotations

import hashlib
import os

import msgpack
import numpy as np

from edgert.errors import PlanError
from edgert.plan_schema import validate_document
from edgert.safe_write import atomic_write

MAGIC = "EDGERT-PLAN"
FORMAT_VERSION = 3       # the newest format this edgert reads and writes
MIN_FORMAT_VERSION = 2   # 2: the checksum covers the header too, and plans may hold optimization profiles
# 3: layers may carry "stream" and "wait" (auxiliary streams), tensors may hold int8 codes (dtype int8 with a
# "scale"); plans with neither are still written as 2 (byte-identical to before, older readers load them)
BLOB_ALIGNMENT = 64
# Body entries in file order; "blob" is always last so its bytes can be aligned and sliced without copying.
BODY_KEYS = ("bindings", "tensors", "constants", "kernels", "layers", "memory", "blob")
_PAD_KEY = "pad"


def write_plan(document: dict) -> bytes:
    """Serialize a plan document (header fields + body entries) to bytes."""
    body_entries = [(key, document[key]) for key in BODY_KEYS if key != "blob" and key in document]
    body_entries += [(key, value) for key, value in document.items()
                     if key not in BODY_KEYS and key != "header"]
    blob = memoryview(document.get("blob", b"")).cast("B")
    packer = msgpack.Packer(use_bin_type=True)
    body = b"".join(packer.pack(k) + packer.pack(v) for k, v in body_entries)
    header = dict(document.get("header", {}))
    header.update(magic=MAGIC, format_version=_format_version(document), constants_bytes=len(blob),
                  checksum_algorithm="sha256", checksum="0" * 64)
    count = len(body_entries) + 3  # header, pad, blob
    prefix = _map_header(count) + packer.pack("header") + packer.pack(header)
    blob_key = packer.pack("blob") + _bin_header(len(blob))
    unpadded = len(prefix) + len(body) + len(packer.pack(_PAD_KEY)) + 2 + len(blob_key)
    tail = packer.pack(_PAD_KEY) + packer.pack(b"\0" * (-unpadded % BLOB_ALIGNMENT)) + blob_key
    # The digest covers every byte of the file with the checksum's own 64 characters as zeros; the checksum
    # has a fixed length, so writing it keeps the header's size (and the blob's offset).
    digest = hashlib.sha256(prefix)
    digest.update(body)
    digest.update(tail)
    digest.update(blob)
    header["checksum"] = digest.hexdigest()
    return b"".join((_map_header(count), packer.pack("header"), packer.pack(header), body, tail, blob))


def _format_version(document: dict) -> int:
    """The oldest format that holds ``document``: 3 when a layer names a stream or a tensor holds int8 codes,
    else 2."""
    if any("stream" in layer or "wait" in layer for layer in document.get("layers", ())):
        return 3
    if any(isinstance(t, dict) and "scale" in t for t in document.get("tensors") or []):
        return 3
    return MIN_FORMAT_VERSION


def _bin_header(length: int) -> bytes:
    """msgpack's bin8/16/32 header for ``length`` bytes (what Packer writes for a bytes object)."""
    if length < 1 << 8:
        return b"\xc4" + length.to_bytes(1, "big")
    if length < 1 << 16:
        return b"\xc5" + length.to_bytes(2, "big")
    return b"\xc6" + length.to_bytes(4, "big")


def _map_header(count: int) -> bytes:
    return bytes([0x80 | count]) if count < 16 else b"\xde" + count.to_bytes(2, "big")


def _unpacker(size: int) -> msgpack.Unpacker:
    # Every length is bounded by the file: a string, binary or container cannot be longer than the
    # bytes left, so a corrupt length fails as "incomplete input" instead of allocating.
    return msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=max(size, 1),
                            max_str_len=size, max_bin_len=size, max_array_len=size,
                            max_map_len=size // 2, max_ext_len=0)


def read_header(data: bytes) -> tuple[dict, int, int]:
    """(header, number of top-level entries, offset where the body starts)."""
    if not data:
        raise PlanError("plan is empty (0 bytes)")
    unpacker = _unpacker(len(data))
    unpacker.feed(data)
    try:
        count = unpacker.read_map_header()
        key = unpacker.unpack()
        header = unpacker.unpack() if key == "header" else None
    except Exception:
        raise PlanError("not an edgert plan (no plan header; is the file truncated or another format?)") from None
    if not isinstance(header, dict) or header.get("magic") != MAGIC:
        raise PlanError("not an edgert plan (wrong magic)")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PlanError("plan header is corrupt (bad format_version)")
    if version < MIN_FORMAT_VERSION:
        raise PlanError(f"plan format version {version} (built by edgert {header.get('edgert_version', '?')}) "
                        f"is older than this edgert reads (format {MIN_FORMAT_VERSION}, whose checksum also covers "
                        "the header); rebuild the plan with `edgert build`")
    if version > FORMAT_VERSION:
        from edgert import __version__
        raise PlanError(f"plan format version {version} (built by edgert {header.get('edgert_version', '?')}) "
                        f"is newer than this edgert {__version__} reads (formats {MIN_FORMAT_VERSION} to "
                        f"{FORMAT_VERSION}); "
                        f"install an edgert that reads format {version}")
    return header, count, unpacker.tell()


def read_plan(data: bytes) -> dict:
    """Parse and validate plan bytes; raise PlanError with one line of text on anything wrong."""
    data = bytes(data)
    header, count, body_offset = read_header(data)
    if header.get("checksum_algorithm") != "sha256" or not isinstance(header.get("checksum"), str):
        raise PlanError("plan header is corrupt (no checksum)")
    if _digest(data, body_offset, header["checksum"]) != header["checksum"]:
        raise PlanError("plan checksum mismatch: the file is corrupt or truncated (rebuild or recopy it)")
    document = {"header": header}
    unpacker = _unpacker(len(data))
    unpacker.feed(memoryview(data)[body_offset:])
    try:
        for _ in range(count - 1):
            key = unpacker.unpack()
            if key == "blob":
                document["blob"] = _blob_view(data, body_offset + unpacker.tell())
                unpacker.skip()
            else:
                document[key] = unpacker.unpack()
        trailing = unpacker.tell() != len(data) - body_offset
    except Exception as e:
        raise PlanError(f"plan body is corrupt ({type(e).__name__})") from None
    if trailing:
        raise PlanError("plan has trailing bytes after its body (corrupt file)")
    document.pop(_PAD_KEY, None)
    validate_document(document)
    needed = _format_version(document)
    if header["format_version"] < needed:
        raise PlanError(f"plan format version {header['format_version']} cannot hold layer streams or int8 code "
                        f"tensors (format {needed} does): the file is corrupt or was edited")
    return document


def _digest(data: bytes, body_offset: int, checksum: str) -> str | None:
    """SHA-256 of the whole file with the header's checksum value zeroed (None when it is not there once)."""
    key = msgpack.packb("checksum")
    needle = key + msgpack.packb(checksum)
    prefix = data[:body_offset]
    if len(checksum) != 64 or prefix.count(needle) != 1:
        return None
    digest = hashlib.sha256(prefix.replace(needle, key + msgpack.packb("0" * 64)))
    digest.update(memoryview(data)[body_offset:])
    return digest.hexdigest()


def _blob_view(data: bytes, offset: int) -> memoryview:
    """A zero-copy view of the bin value that starts at ``offset``."""
    marker = data[offset]
    sizes = {0xC4: 1, 0xC5: 2, 0xC6: 4}
    if marker not in sizes:
        raise PlanError("plan body is corrupt (blob is not binary data)")
    width = sizes[marker]
    length = int.from_bytes(data[offset + 1:offset + 1 + width], "big")
    start = offset + 1 + width
    if start + length > len(data):
        raise PlanError("plan is truncated (constants blob runs past the end of the file)")
    return memoryview(data)[start:start + length]


def load_plan_bytes(source) -> bytes:
    """Bytes of a plan given as bytes, a Plan, or a path."""
    if isinstance(source, Plan):
        return source.to_bytes()
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = os.fspath(source)
    if not os.path.exists(path):
        raise PlanError(f"plan file not found: {path}")
    if not os.path.isfile(path):
        raise PlanError(f"plan path is not a file: {path}")
    with open(path, "rb") as f:
        return f.read()


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
        """Write the plan to the regular file ``path`` atomically (a symlink: to its target); see safe_write."""
        atomic_write(path, self.to_bytes())

    @property
    def header(self) -> dict:
        return self.document["header"]

    @property
    def layers(self) -> list[dict]:
        return self.document["layers"]

    def __repr__(self) -> str:
        return f"Plan({len(self.layers)} layers, target={self.header.get('target')!r})"
