"""TensorBundle reader: CRC-32C, round trips through our writer, the official fixtures, damaged files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tf_bundle_writer import write_bundle

from timm_assemble.convert.crc32c import _register_small, crc32c, mask, unmask
from timm_assemble.convert.tensor_bundle import TensorBundleReader
from timm_assemble.errors import TimmAssembleError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "clova_tf"


def _tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {f"net/layer_{i:03d}/kernel": rng.standard_normal((3, 3, 4, 5)).astype(np.float32) for i in range(60)}
    out["net/big/kernel"] = rng.standard_normal((64, 513)).astype(np.float32)  # > 64 KiB: vectorised CRC
    out["global_step"] = np.array(1234, dtype=np.int64)
    out["net/half"] = rng.standard_normal(7).astype(np.float16)
    out["net/ids"] = np.arange(11, dtype=np.int32)
    out["net/empty"] = np.zeros((0, 3), dtype=np.float32)
    return out


def test_crc32c_known_values():
    # RFC 3720 (iSCSI) test vectors and the classic check value.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(b"") == 0


@pytest.mark.parametrize("size", [16383, 16384, 16385, 100_001, 1 << 20])
def test_crc32c_vectorised_matches_bytewise(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8)
    assert crc32c(data) == _register_small(data.tobytes(), 0xFFFFFFFF) ^ 0xFFFFFFFF
    assert crc32c(data.tobytes()) == crc32c(data)


def test_mask_roundtrip():
    for value in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert unmask(mask(value)) == value
    assert mask(0) == 0xA282EAD8


@pytest.mark.parametrize("num_shards", [1, 3])
def test_roundtrip(tmp_path, num_shards):
    tensors = _tensors()
    prefix = tmp_path / "model.ckpt"
    # Small blocks and restart interval: several data blocks with prefix-compressed keys.
    write_bundle(prefix, tensors, num_shards=num_shards, block_size=512, restart_interval=4)
    reader = TensorBundleReader(prefix)
    assert reader.num_shards == num_shards
    assert sorted(reader) == sorted(tensors)
    for name, expected in tensors.items():
        got = reader.read(name)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("model", ["assemble_resnet50", "assemble_resnet152"])
def test_official_fixture_variables(model):
    """Every variable the official code saved is found with the shape and dtype it reported."""
    folder = FIXTURES / f"{model}_w8"
    reader = TensorBundleReader(folder / "model.ckpt")
    rows = [line.split("\t") for line in (folder / "variables.tsv").read_text().splitlines()]
    assert sorted(reader) == sorted(name for name, _, _ in rows)
    meta = json.loads((folder / "meta.json").read_text())
    assert len(reader) == meta["variable_count"]
    total = 0
    for name, shape, dtype in rows:
        value = reader.read(name)  # verifies the tensor's CRC-32C
        assert list(value.shape) == json.loads(shape) and value.dtype == np.dtype(dtype)
        total += value.size
    assert total == meta["param_count_total"]


@pytest.fixture
def ckpt(tmp_path):
    prefix = tmp_path / "model.ckpt"
    write_bundle(prefix, _tensors(), block_size=512)
    return prefix


def _data(prefix: Path) -> Path:
    return Path(f"{prefix}.data-00000-of-00001")


def _error(prefix) -> str:
    with pytest.raises(TimmAssembleError) as info:
        reader = TensorBundleReader(prefix)
        for name in reader:
            reader.read(name)
    return str(info.value)


def test_missing_index(ckpt):
    Path(f"{ckpt}.index").unlink()
    msg = _error(ckpt)
    assert "model.ckpt.index is missing" in msg and "data-00000-of-00001" in msg


def test_wrong_prefix(ckpt):
    assert "did you mean" in _error(ckpt.parent / "model") and str(ckpt) in _error(ckpt.parent / "model")
    assert "not found" in _error(ckpt.parent / "nothing")
    assert "without '.index'" in _error(f"{ckpt}.index")
    assert "without '.data-...'" in _error(_data(ckpt))
    msg = _error(ckpt.parent)
    assert "is a directory" in msg and str(ckpt) in msg


def test_unrelated_file(tmp_path):
    (tmp_path / "notes.index").write_text("this is not a checkpoint\n" * 10)
    assert "not a TensorFlow checkpoint index" in _error(tmp_path / "notes")
    (tmp_path / "tiny.index").write_bytes(b"abc")
    assert "shorter than a table footer" in _error(tmp_path / "tiny")


def test_truncated_index(ckpt):
    index = Path(f"{ckpt}.index")
    index.write_bytes(index.read_bytes()[:-100])
    assert "not a TensorFlow checkpoint index" in _error(ckpt)


def test_corrupted_index_block(ckpt):
    index = Path(f"{ckpt}.index")
    raw = bytearray(index.read_bytes())
    raw[20] ^= 0x40  # inside the first data block
    index.write_bytes(bytes(raw))
    msg = _error(ckpt)
    assert "checksum mismatch in the data block" in msg and "corrupted" in msg


def test_compressed_index_block(tmp_path):
    write_bundle(tmp_path / "c", _tensors(), compression=1)
    assert "snappy block compression" in _error(tmp_path / "c")


def test_truncated_data(ckpt):
    data = _data(ckpt)
    size = data.stat().st_size
    with open(data, "r+b") as f:
        f.truncate(size - 10)
    msg = _error(ckpt)
    assert "is truncated" in msg and f"{size - 10} bytes, the index needs {size}" in msg


def test_missing_data_shard(tmp_path):
    write_bundle(tmp_path / "m", _tensors(), num_shards=2)
    Path(f"{tmp_path / 'm'}.data-00001-of-00002").unlink()
    assert "data shard" in _error(tmp_path / "m") and "m.data-00001-of-00002 is missing" in _error(tmp_path / "m")


def test_corrupted_data(ckpt):
    reader = TensorBundleReader(ckpt)
    entry = reader.entry("net/big/kernel")
    with open(_data(ckpt), "r+b") as f:
        f.seek(entry.offset + entry.size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(TimmAssembleError, match="checksum mismatch for 'net/big/kernel'"):
        reader.read("net/big/kernel")
    assert reader.read("net/layer_000/kernel").shape == (3, 3, 4, 5)  # other tensors still fine
    assert reader.read("net/big/kernel", verify=False).shape == (64, 513)


def test_size_mismatch_and_unsupported_dtype(tmp_path, monkeypatch):
    import tf_bundle_writer

    real = tf_bundle_writer._entry_proto

    def lying(dtype_enum, shape, shard, offset, size, crc):
        if shape == (7,):  # the float16 tensor: claim 'string' dtype
            dtype_enum = 7
        if shape == (11,):  # the int32 tensor: claim one element more than stored
            shape = (12,)
        return real(dtype_enum, shape, shard, offset, size, crc)

    monkeypatch.setattr(tf_bundle_writer, "_entry_proto", lying)
    write_bundle(tmp_path / "x", _tensors())
    reader = TensorBundleReader(tmp_path / "x")
    with pytest.raises(TimmAssembleError, match="'net/half'.*dtype string is not supported"):
        reader.read("net/half")
    with pytest.raises(TimmAssembleError, match=r"'net/ids'.*stored size 44 bytes does not match int32\[12\]"):
        reader.read("net/ids")
