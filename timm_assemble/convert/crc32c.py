"""CRC-32C (Castagnoli) in numpy, fast enough to verify a full TensorFlow checkpoint.

TensorFlow stores a masked CRC-32C for every index block and every tensor. The standard library only
has CRC-32 (IEEE), so this module computes CRC-32C itself. Small buffers use a byte-wise table loop;
large ones are cut into equal chunks whose CRC registers advance together, 16 bits per numpy step,
and are then merged pairwise with GF(2) "append zero bytes" operators (the zlib crc32_combine idea),
applied through byte lookup tables.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_POLY = 0x82F63B78  # reflected Castagnoli polynomial
_MASK_DELTA = 0xA282EAD8
_SMALL = 1 << 14  # below this many bytes the plain Python loop is faster than the vectorised path
_STEP_WORDS = 256  # 16-bit words per chunk on the vectorised path (chunks of 512 bytes)


@lru_cache(maxsize=1)
def _table8() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1).astype(np.uint32)
    return table


@lru_cache(maxsize=1)
def _table8_list() -> list[int]:
    return [int(v) for v in _table8()]


@lru_cache(maxsize=1)
def _table16() -> np.ndarray:
    """Register update for 16 data bits at once: reg' = T16[(reg ^ word) & 0xFFFF] ^ (reg >> 16)."""
    t8 = _table8()
    reg = np.arange(1 << 16, dtype=np.uint32)
    for _ in range(2):
        reg = t8[reg & 0xFF] ^ (reg >> 8)
    return reg


def _apply(tables: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Apply a GF(2) operator, given as four byte lookup tables, to a vector of registers."""
    return (
        tables[0][value & 0xFF]
        ^ tables[1][(value >> 8) & 0xFF]
        ^ tables[2][(value >> 16) & 0xFF]
        ^ tables[3][value >> 24]
    )


def _tables(images: np.ndarray) -> np.ndarray:
    """Byte lookup tables of the operator whose images of the 32 basis bits are `images`."""
    tables = np.zeros((4, 256), dtype=np.uint32)
    index = np.arange(256)
    for bit in range(32):
        tables[bit // 8][(index >> (bit % 8)) & 1 == 1] ^= images[bit]
    return tables


@lru_cache(maxsize=64)
def _zeros_operator(log2_bytes: int) -> np.ndarray:
    """Tables of the operator that advances a register over 2**log2_bytes zero bytes."""
    basis = np.uint32(1) << np.arange(32, dtype=np.uint32)
    if log2_bytes == 0:
        return _tables(_table8()[basis & 0xFF] ^ (basis >> np.uint32(8)))
    half = _zeros_operator(log2_bytes - 1)
    return _tables(_apply(half, _apply(half, basis)))


def _register_small(data: bytes | memoryview, register: int) -> int:
    table = _table8_list()
    for byte in bytes(data):
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


def _register_large(data: np.ndarray, register: int) -> int:
    """Register after `data` starting from `register`, computed chunk-parallel."""
    chunk = 2 * _STEP_WORDS
    head = data.size % chunk
    # The unaligned head goes first, byte by byte; its register seeds the first chunk.
    register = _register_small(data[:head].tobytes(), register)
    n_chunks = (data.size - head) // chunk
    words = np.ascontiguousarray(data[head:].view("<u2").reshape(n_chunks, _STEP_WORDS).T)
    t16 = _table16()
    reg = np.zeros(n_chunks, dtype=np.uint32)
    reg[0] = register
    idx = np.empty(n_chunks, dtype=np.uint32)
    looked = np.empty(n_chunks, dtype=np.uint32)
    for row in words:
        np.bitwise_xor(reg, row, out=idx)
        np.bitwise_and(idx, 0xFFFF, out=idx)
        np.take(t16, idx, out=looked)
        np.right_shift(reg, 16, out=reg)
        np.bitwise_xor(reg, looked, out=reg)
    del words
    # Merge neighbours: reg(A || B) = zeros_{len B}(reg(A)) ^ reg_0(B), chunk length doubling each level.
    # A zero register in front is neutral, which pads odd levels.
    level = chunk.bit_length() - 1
    while reg.size > 1:
        if reg.size % 2:
            reg = np.concatenate([np.zeros(1, dtype=np.uint32), reg])
        reg = _apply(_zeros_operator(level), reg[0::2]) ^ reg[1::2]
        level += 1
    return int(reg[0])


def crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """Standard CRC-32C of `data` (init and final xor 0xFFFFFFFF)."""
    if isinstance(data, np.ndarray):
        buf = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    else:
        buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size < _SMALL:
        return _register_small(buf.tobytes(), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return _register_large(buf, 0xFFFFFFFF) ^ 0xFFFFFFFF


def mask(crc: int) -> int:
    """TensorFlow/LevelDB masking of a stored CRC (so CRCs of data that embeds CRCs stay useful)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    """Inverse of `mask`."""
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
