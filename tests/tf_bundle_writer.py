"""Test helper: write TensorFlow V2 checkpoints (TensorBundle) without TensorFlow.

Writes the same format TensorFlow writes (LevelDB table index with prefix-compressed keys, restart
arrays, masked CRC-32C block trailers; BundleHeaderProto / BundleEntryProto; raw little-endian data
shards) so the reader can be tested on inputs we control: several data blocks, several shards,
non-model variables, and deliberately damaged files.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from timm_assemble.convert.crc32c import crc32c, mask
from timm_assemble.convert.tensor_bundle import data_shard_path

_DTYPE_ENUMS = {
    np.dtype("float32"): 1,
    np.dtype("float64"): 2,
    np.dtype("int32"): 3,
    np.dtype("uint8"): 4,
    np.dtype("int64"): 9,
    np.dtype("float16"): 19,
}


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_varint(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _field_bytes(field: int, value: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(value)) + value


def _entry_proto(dtype_enum: int, shape: tuple[int, ...], shard: int, offset: int, size: int, crc: int) -> bytes:
    shape_proto = b"".join(_field_bytes(2, _field_varint(1, d)) for d in shape)
    out = _field_varint(1, dtype_enum) + _field_bytes(2, shape_proto)
    if shard:
        out += _field_varint(3, shard)
    if offset:
        out += _field_varint(4, offset)
    out += _field_varint(5, size) + _varint(6 << 3 | 5) + struct.pack("<I", crc)
    return out


def _build_block(items: list[tuple[bytes, bytes]], restart_interval: int) -> bytes:
    out = bytearray()
    restarts = []
    prev = b""
    for i, (key, value) in enumerate(items):
        if i % restart_interval == 0:
            restarts.append(len(out))
            shared = 0
        else:
            shared = 0
            while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
                shared += 1
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        out += key[shared:] + value
        prev = key
    if not restarts:
        restarts.append(0)
    out += b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))
    return bytes(out)


def _append_block(buf: bytearray, block: bytes, compression: int = 0) -> bytes:
    handle = _varint(len(buf)) + _varint(len(block))
    trailer_type = bytes([compression])
    buf += block + trailer_type + struct.pack("<I", mask(crc32c(block + trailer_type)))
    return handle


def write_bundle(
    prefix: str | Path,
    tensors: Mapping[str, np.ndarray],
    num_shards: int = 1,
    block_size: int = 4096,
    restart_interval: int = 16,
    compression: int = 0,
    claim: Mapping[str, tuple[int, ...]] | None = None,
) -> None:
    """Write `tensors` as checkpoint `prefix` (.index + .data-*), round-robin over `num_shards`.

    `claim` gives entries a shape other than their data's (a crafted index: the stored size stays the data's).
    """
    names = sorted(tensors, key=lambda n: n.encode())
    offsets = [0] * num_shards
    files = [open(data_shard_path(prefix, i, num_shards), "wb") for i in range(num_shards)]
    items: list[tuple[bytes, bytes]] = []
    try:
        for i, name in enumerate(names):
            arr = np.asarray(tensors[name])
            raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            shard = i % num_shards
            files[shard].write(raw)
            shape = (claim or {}).get(name, arr.shape)
            entry = _entry_proto(_DTYPE_ENUMS[arr.dtype], shape, shard, offsets[shard], len(raw), mask(crc32c(raw)))
            items.append((name.encode(), entry))
            offsets[shard] += len(raw)
    finally:
        for f in files:
            f.close()
    header = _field_varint(1, num_shards) + _field_bytes(3, _field_varint(1, 1))  # version {producer: 1}
    items.insert(0, (b"", header))

    index = bytearray()
    index_items = []
    start = 0
    while start < len(items):
        end, size = start, 0
        while end < len(items) and (end == start or size < block_size):
            size += len(items[end][0]) + len(items[end][1]) + 3
            end += 1
        handle = _append_block(index, _build_block(items[start:end], restart_interval), compression)
        index_items.append((items[end - 1][0], handle))
        start = end
    meta_handle = _append_block(index, _build_block([], restart_interval))
    top_handle = _append_block(index, _build_block(index_items, 1))
    footer = (meta_handle + top_handle).ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)
    Path(f"{prefix}.index").write_bytes(bytes(index) + footer)
