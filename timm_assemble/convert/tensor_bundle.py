"""Reader for TensorFlow V2 checkpoints (TensorBundle) in pure Python + numpy.

A checkpoint `PREFIX` is `PREFIX.index`, a LevelDB-format table mapping each tensor name to a
`BundleEntryProto` (plus a `BundleHeaderProto` under the empty key), and `PREFIX.data-SSSSS-of-NNNNN`
shards holding raw little-endian tensor bytes. Everything read is validated (block and tensor CRC-32C,
sizes, dtypes) so a truncated or corrupted download fails with a message naming the file and the problem
instead of silently producing wrong weights. Tensors are read one at a time, so memory stays bounded by
the largest tensor, not the checkpoint.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import TimmAssembleError
from ..fileio import open_regular
from .crc32c import crc32c, unmask

__all__ = ["BundleEntry", "TensorBundleReader", "data_shard_path"]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_LEN = 48  # two padded block handles (40 bytes) + 8-byte magic
_BLOCK_TRAILER_LEN = 5  # compression type byte + masked crc32c
MAX_INDEX_BYTES = 64 << 20  # the official ResNet-152 index is well under 1 MB; a larger one is not a checkpoint
MAX_RANK = 8
_COMPRESSION_NAMES = {1: "snappy", 2: "zlib"}

# tensorflow/core/framework/types.proto DataType -> numpy (little endian)
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),
    2: np.dtype("<f8"),
    3: np.dtype("<i4"),
    4: np.dtype("u1"),
    5: np.dtype("<i2"),
    6: np.dtype("i1"),
    9: np.dtype("<i8"),
    10: np.dtype("?"),
    17: np.dtype("<u2"),
    19: np.dtype("<f2"),
    22: np.dtype("<u4"),
    23: np.dtype("<u8"),
}
_DTYPE_NAMES = {
    7: "string",
    8: "complex64",
    11: "qint8",
    12: "quint8",
    13: "qint32",
    14: "bfloat16",
    18: "complex128",
    20: "resource",
    21: "variant",
}


def data_shard_path(prefix: str | Path, shard_id: int, num_shards: int) -> Path:
    """Path of one data shard, named as TensorFlow names them."""
    return Path(f"{prefix}.data-{shard_id:05d}-of-{num_shards:05d}")


@dataclass(frozen=True)
class BundleEntry:
    """Where and how one tensor is stored (a decoded `BundleEntryProto`)."""

    name: str
    dtype_enum: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int  # masked, as stored
    sliced: bool

    @property
    def dtype(self) -> np.dtype | None:
        return _DTYPES.get(self.dtype_enum)

    @property
    def dtype_name(self) -> str:
        dtype = self.dtype
        return dtype.name if dtype is not None else _DTYPE_NAMES.get(self.dtype_enum, f"dtype#{self.dtype_enum}")


# ---- protobuf wire format (only what the two bundle messages need) ----------------------------------


class _DecodeError(ValueError):
    pass


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise _DecodeError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _DecodeError("varint longer than 10 bytes")


def _fields(buf: bytes, pos: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) of one message; length-delimited values as bytes."""
    end = len(buf) if end is None else end
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 1:
            if pos + 8 > end:
                raise _DecodeError("truncated fixed64")
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _DecodeError("truncated length-delimited field")
            value = bytes(buf[pos : pos + length])
            pos += length
        elif wire == 5:
            if pos + 4 > end:
                raise _DecodeError("truncated fixed32")
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise _DecodeError(f"unsupported wire type {wire}")
        if field == 0:
            raise _DecodeError("field number 0")
        yield field, wire, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for field, wire, value in _fields(buf):
        if field == 2 and wire == 2:  # repeated Dim dim
            size = 0
            for dfield, dwire, dvalue in _fields(value):
                if dfield == 1 and dwire == 0:
                    size = _signed64(dvalue)
            if size < 0:
                raise _DecodeError(f"tensor shape has a negative dimension ({size})")
            dims.append(size)
        elif field == 3 and wire == 0 and value:
            raise _DecodeError("tensor shape has unknown rank")
    if len(dims) > MAX_RANK:
        raise _DecodeError(f"tensor shape has rank {len(dims)} (at most {MAX_RANK})")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> BundleEntry:
    values: dict[str, int] = {"dtype": 0, "shard_id": 0, "offset": 0, "size": 0, "crc32c": 0}
    shape: tuple[int, ...] = ()
    sliced = False
    for field, wire, value in _fields(buf):
        if field == 1 and wire == 0:
            values["dtype"] = value
        elif field == 2 and wire == 2:
            shape = _parse_shape(value)
        elif field == 3 and wire == 0:
            values["shard_id"] = value
        elif field == 4 and wire == 0:
            values["offset"] = _signed64(value)
        elif field == 5 and wire == 0:
            values["size"] = _signed64(value)
        elif field == 6 and wire == 5:
            values["crc32c"] = value
        elif field == 7 and wire == 2:
            sliced = True
    return BundleEntry(
        name=name,
        dtype_enum=values["dtype"],
        shape=shape,
        shard_id=values["shard_id"],
        offset=values["offset"],
        size=values["size"],
        crc32c=values["crc32c"],
        sliced=sliced,
    )


# ---- SSTable (LevelDB table format) -----------------------------------------------------------------


def _block(index: bytes, offset: int, size: int, path: Path, what: str) -> bytes:
    end = offset + size
    if offset < 0 or end + _BLOCK_TRAILER_LEN > len(index) - _FOOTER_LEN:
        raise TimmAssembleError(f"{path}: corrupted checkpoint index: {what} block lies outside the file")
    contents = index[offset:end]
    ctype = index[end]
    (stored,) = struct.unpack_from("<I", index, end + 1)
    if crc32c(index[offset : end + 1]) != unmask(stored):
        raise TimmAssembleError(
            f"{path}: corrupted checkpoint index: checksum mismatch in the {what} block at byte {offset}"
        )
    if ctype != 0:
        kind = _COMPRESSION_NAMES.get(ctype, f"type {ctype}")
        raise TimmAssembleError(
            f"{path}: the checkpoint index uses {kind} block compression, which this reader does not "
            "support (TensorFlow writes bundle indexes uncompressed)"
        )
    return contents


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise _DecodeError("block shorter than its restart count")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 * (num_restarts + 1)
    if limit < 0:
        raise _DecodeError("restart array larger than the block")
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = _varint(block, pos, limit)
        non_shared, pos = _varint(block, pos, limit)
        value_len, pos = _varint(block, pos, limit)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise _DecodeError("entry overruns its block")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        yield key, block[pos : pos + value_len]
        pos += value_len


def _block_handle(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos, end)
    size, pos = _varint(buf, pos, end)
    return offset, size, pos


def _read_table(path: Path) -> list[tuple[bytes, bytes]]:
    with open_regular(path) as f:  # a FIFO or device named .index would block or never end
        index = f.read(MAX_INDEX_BYTES + 1)
    if len(index) > MAX_INDEX_BYTES:
        raise TimmAssembleError(
            f"{path}: {Path(path).stat().st_size / 1e6:.0f} MB is far larger than any checkpoint index "
            f"(limit {MAX_INDEX_BYTES >> 20} MB); is it the right file?"
        )
    if len(index) < _FOOTER_LEN:
        raise TimmAssembleError(
            f"{path}: not a TensorFlow checkpoint index (only {len(index)} bytes, shorter than a table footer)"
        )
    (magic,) = struct.unpack_from("<Q", index, len(index) - 8)
    if magic != _TABLE_MAGIC:
        raise TimmAssembleError(
            f"{path}: not a TensorFlow checkpoint index (no SSTable magic number at the end of the file; "
            "it may be truncated or another kind of file)"
        )
    footer_start = len(index) - _FOOTER_LEN
    try:
        _, _, pos = _block_handle(index, footer_start, len(index) - 8)  # metaindex: unused by bundles
        index_offset, index_size, _ = _block_handle(index, pos, len(index) - 8)
        items = []
        top = _block(index, index_offset, index_size, path, "top-level index")
        for _, handle in _block_entries(top):
            offset, size, _ = _block_handle(handle, 0, len(handle))
            items.extend(_block_entries(_block(index, offset, size, path, "data")))
    except _DecodeError as err:
        raise TimmAssembleError(f"{path}: corrupted checkpoint index: {err}") from None
    return items


# ---- the bundle --------------------------------------------------------------------------------------


def _missing_index_message(prefix: Path) -> str:
    index = Path(f"{prefix}.index")
    text = str(prefix)
    for suffix in (".index", ".meta"):
        if text.endswith(suffix):
            return f"{index} not found: pass the checkpoint prefix without '{suffix}' (e.g. {text[: -len(suffix)]})"
    data_match = re.fullmatch(r"(.*)\.data-\d{5}-of-\d{5}", text)
    if data_match:
        return f"{index} not found: pass the checkpoint prefix without '.data-...' (e.g. {data_match.group(1)})"
    if prefix.is_dir():
        found = sorted(p.name[: -len(".index")] for p in prefix.glob("*.index"))
        hint = f"; it holds {', '.join(str(prefix / f) for f in found)}" if found else ""
        return f"{prefix} is a directory, not a checkpoint prefix{hint}"
    shards = sorted(prefix.parent.glob(f"{prefix.name}.data-*")) if prefix.parent.is_dir() else []
    if shards:
        return (
            f"checkpoint index {index} is missing (found data shard {shards[0].name}); "
            "both PREFIX.index and PREFIX.data-* are needed"
        )
    near = sorted(prefix.parent.glob(f"{prefix.name}*.index")) if prefix.parent.is_dir() else []
    if near:
        return f"no checkpoint at prefix {prefix} ({index} not found); did you mean {near[0].with_suffix('')}?"
    return f"no checkpoint at prefix {prefix}: {index} not found"


class TensorBundleReader:
    """Index of a TensorFlow V2 checkpoint; `read(name)` loads and verifies one tensor.

    Opening parses and checksums the whole index and checks every data shard exists and is long enough
    for its entries (a truncated download fails here, before any conversion work).
    """

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = Path(prefix)
        self.index_path = Path(f"{self.prefix}.index")
        if self.index_path.exists() and not self.index_path.is_file():
            raise TimmAssembleError(f"{self.index_path} is not a regular file (a folder, FIFO or device)")
        if not self.index_path.is_file():
            raise TimmAssembleError(_missing_index_message(self.prefix))
        items = _read_table(self.index_path)
        if not items or items[0][0] != b"":
            raise TimmAssembleError(
                f"{self.index_path}: not a TensorFlow V2 checkpoint index (no bundle header under the empty key)"
            )
        self.num_shards = self._parse_header(items[0][1])
        self._entries: dict[str, BundleEntry] = {}
        for key, value in items[1:]:
            try:
                name = key.decode("utf-8")
                self._entries[name] = _parse_entry(name, value)
            except (UnicodeDecodeError, _DecodeError) as err:
                raise TimmAssembleError(
                    f"{self.index_path}: corrupted checkpoint index: bad entry {key!r} ({err})"
                ) from None
        self.shard_paths = [data_shard_path(self.prefix, i, self.num_shards) for i in range(self.num_shards)]
        self._check_shards()

    def _parse_header(self, value: bytes) -> int:
        num_shards, endianness = 1, 0
        try:
            for field, wire, val in _fields(value):
                if field == 1 and wire == 0:
                    num_shards = val
                elif field == 2 and wire == 0:
                    endianness = val
        except _DecodeError as err:
            raise TimmAssembleError(f"{self.index_path}: corrupted bundle header ({err})") from None
        if endianness != 0:
            raise TimmAssembleError(f"{self.index_path}: big-endian checkpoints are not supported")
        if not 1 <= num_shards < 100000:
            raise TimmAssembleError(f"{self.index_path}: corrupted bundle header ({num_shards} data shards)")
        return num_shards

    def _check_shards(self) -> None:
        needed = [0] * self.num_shards
        for entry in self._entries.values():
            if not 0 <= entry.shard_id < self.num_shards:
                raise TimmAssembleError(
                    f"{self.index_path}: corrupted checkpoint index: {entry.name!r} names data shard "
                    f"{entry.shard_id} of {self.num_shards}"
                )
            if entry.offset < 0 or entry.size < 0:
                raise TimmAssembleError(
                    f"{self.index_path}: corrupted checkpoint index: negative offset/size for {entry.name!r}"
                )
            needed[entry.shard_id] = max(needed[entry.shard_id], entry.offset + entry.size)
        for path, need in zip(self.shard_paths, needed, strict=True):
            if not path.is_file():
                raise TimmAssembleError(f"checkpoint data shard {path} is missing")
            have = path.stat().st_size
            if have < need:
                raise TimmAssembleError(
                    f"checkpoint data shard {path} is truncated: {have} bytes, the index needs {need}"
                )

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def entry(self, name: str) -> BundleEntry:
        return self._entries[name]

    def entries(self) -> dict[str, BundleEntry]:
        return dict(self._entries)

    def read(self, name: str, verify: bool = True) -> np.ndarray:
        """Load one tensor as a numpy array of its stored dtype and shape; checks size and CRC-32C."""
        entry = self._entries[name]
        dtype = entry.dtype
        if dtype is None:
            raise TimmAssembleError(f"{name!r} in {self.index_path}: dtype {entry.dtype_name} is not supported")
        if entry.sliced:
            raise TimmAssembleError(
                f"{name!r} in {self.index_path} is a partitioned (sliced) variable, which is not supported"
            )
        expected = math.prod(entry.shape) * dtype.itemsize
        if entry.size != expected:
            raise TimmAssembleError(
                f"{name!r} in {self.index_path}: stored size {entry.size} bytes does not match "
                f"{entry.dtype_name}{list(entry.shape)} ({expected} bytes)"
            )
        path = self.shard_paths[entry.shard_id]
        buf = bytearray(entry.size)
        with open(path, "rb") as f:
            f.seek(entry.offset)
            got = f.readinto(buf)
        if got != entry.size:
            raise TimmAssembleError(f"checkpoint data shard {path} is truncated inside {name!r}")
        if verify and crc32c(buf) != unmask(entry.crc32c):
            raise TimmAssembleError(
                f"checkpoint data shard {path} is corrupted: checksum mismatch for {name!r} "
                f"(bytes {entry.offset}..{entry.offset + entry.size})"
            )
        return np.frombuffer(buf, dtype=dtype).reshape(entry.shape)
