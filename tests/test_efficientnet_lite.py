"""Tests for the torch-free legacy checkpoint reader and EfficientNet-Lite0."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from transferlab.plugins.efficientnet_lite import (
    LITE0_SHA256,
    build_efficientnet_lite0,
    lite0_checkpoint_path,
    load_lite0_state_into,
    preprocess_lite,
    verify_lite0_checkpoint,
)
from transferlab.plugins.efficientnet_lite.torch_legacy import (
    LEGACY_MAGIC_NUMBER,
    LEGACY_PROTOCOL_VERSION,
    CheckpointFormatError,
    UnsafeCheckpointError,
    load_legacy_state_dict,
)

_SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}


# --------------------------------------------------------------------------
# Hand-built legacy files (torch is never available to write real ones).
# --------------------------------------------------------------------------


def _p(obj: object) -> bytes:
    return pickle.dumps(obj, protocol=2)


def _header(magic: int = LEGACY_MAGIC_NUMBER, protocol: int = LEGACY_PROTOCOL_VERSION) -> bytes:
    return _p(magic) + _p(protocol) + _p(_SYS_INFO)


class _Ops:
    """Tiny protocol-2 pickle assembler, enough to emit torch-style globals."""

    def __init__(self) -> None:
        self.out = bytearray(pickle.PROTO + b"\x02")

    def raw(self, b: bytes) -> _Ops:
        self.out += b
        return self

    def glob(self, module: str, name: str) -> _Ops:
        return self.raw(pickle.GLOBAL + f"{module}\n{name}\n".encode())

    def str_(self, s: str) -> _Ops:
        data = s.encode()
        return self.raw(pickle.BINUNICODE + struct.pack("<I", len(data)) + data)

    def int_(self, i: int) -> _Ops:
        return self.raw(pickle.BININT + struct.pack("<i", i))

    def ints(self, values: Sequence[int]) -> _Ops:
        self.raw(pickle.MARK)
        for v in values:
            self.int_(v)
        return self.raw(pickle.TUPLE)

    def stop(self) -> bytes:
        return bytes(self.out + pickle.STOP)


def _state_dict_pickle(tensors: dict[str, tuple[str, int, int, tuple[int, ...], tuple[int, ...], object]]) -> bytes:
    """tensors: name -> (storage key, storage numel, offset, size, stride, view_metadata)."""
    ops = _Ops().glob("collections", "OrderedDict").raw(pickle.EMPTY_TUPLE + pickle.REDUCE + pickle.MARK)
    for name, (key, numel, offset, size, stride, view) in tensors.items():
        ops.str_(name).glob("torch._utils", "_rebuild_tensor_v2").raw(pickle.MARK)
        # persistent id ('storage', torch.FloatStorage, key, 'cpu', numel, view)
        ops.raw(pickle.MARK).str_("storage").glob("torch", "FloatStorage").str_(key).str_("cpu").int_(numel)
        if view is None:
            ops.raw(pickle.NONE)
        else:
            view_key, view_offset, view_size = view  # type: ignore[misc]
            ops.raw(pickle.MARK).str_(view_key).int_(view_offset).int_(view_size).raw(pickle.TUPLE)
        ops.raw(pickle.TUPLE + pickle.BINPERSID)
        ops.int_(offset).ints(size).ints(stride).raw(pickle.NEWFALSE)
        ops.glob("collections", "OrderedDict").raw(pickle.EMPTY_TUPLE + pickle.REDUCE)
        ops.raw(pickle.TUPLE + pickle.REDUCE)
    return ops.raw(pickle.SETITEMS).stop()


def _storage_blob(values: np.ndarray) -> bytes:
    return struct.pack("<q", values.size) + values.astype("<f4").tobytes()


class _Evil:
    """Pickles to ``os.system(command)``; unpickling it must never run it."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


# --------------------------------------------------------------------------
# torch_legacy
# --------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("slot", ["magic", "state_dict"])
def test_refuses_os_system_without_running_it(tmp_path: Path, protocol: int, slot: str) -> None:
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Evil(f"touch {marker}"), protocol=protocol)
    data = evil if slot == "magic" else _header() + evil + _p([])
    path = tmp_path / "evil.pth"
    path.write_bytes(data)

    with pytest.raises(UnsafeCheckpointError, match=r"system"):
        load_legacy_state_dict(path)
    assert not marker.exists()


def test_refuses_non_allowlisted_torch_global(tmp_path: Path) -> None:
    # Even torch-namespaced globals are refused unless explicitly allowed.
    bad = _Ops().glob("torch._utils", "_rebuild_qtensor").raw(pickle.EMPTY_TUPLE + pickle.REDUCE).stop()
    path = tmp_path / "bad.pth"
    path.write_bytes(_header() + bad)
    with pytest.raises(UnsafeCheckpointError, match=r"torch\._utils\._rebuild_qtensor"):
        load_legacy_state_dict(path)


def test_storage_placeholders_are_not_callable(tmp_path: Path) -> None:
    call = _Ops().glob("torch", "FloatStorage").raw(pickle.EMPTY_TUPLE + pickle.REDUCE).stop()
    path = tmp_path / "call.pth"
    path.write_bytes(_header() + call + _p([]))
    with pytest.raises(CheckpointFormatError):
        load_legacy_state_dict(path)


def test_wrong_magic_rejected(tmp_path: Path) -> None:
    path = tmp_path / "magic.pth"
    path.write_bytes(_header(magic=0x1234) + _p({}) + _p([]))
    with pytest.raises(CheckpointFormatError, match="magic number"):
        load_legacy_state_dict(path)


def test_wrong_protocol_rejected(tmp_path: Path) -> None:
    path = tmp_path / "proto.pth"
    path.write_bytes(_header(protocol=1000) + _p({}) + _p([]))
    with pytest.raises(CheckpointFormatError, match="protocol"):
        load_legacy_state_dict(path)


def test_zip_checkpoint_rejected(tmp_path: Path) -> None:
    path = tmp_path / "zip.pth"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(CheckpointFormatError, match="zip"):
        load_legacy_state_dict(path)


def test_strides_offsets_and_views(tmp_path: Path) -> None:
    base = np.arange(12, dtype=np.float32)
    pickled = _state_dict_pickle(
        {
            # Transposed 2x3 -> 3x2 via strides.
            "t": ("0", 12, 0, (3, 2), (1, 3), None),
            # Offset into the same storage.
            "o": ("0", 12, 6, (2, 3), (3, 1), None),
            # Legacy storage view starting at element 4.
            "v": ("0", 12, 1, (2,), (1,), ("0_view", 4, 4)),
            "s": ("1", 1, 0, (), (), None),
        }
    )
    path = tmp_path / "synthetic.pth"
    path.write_bytes(
        _header() + pickled + _p(["0", "1"]) + _storage_blob(base) + _storage_blob(np.array([7.0]))
    )
    sd = load_legacy_state_dict(path)
    assert list(sd) == ["t", "o", "v", "s"]
    np.testing.assert_array_equal(sd["t"], base[:6].reshape(2, 3).T)
    np.testing.assert_array_equal(sd["o"], base[6:].reshape(2, 3))
    np.testing.assert_array_equal(sd["v"], [5.0, 6.0])
    assert sd["s"].shape == () and sd["s"] == 7.0
    assert all(a.flags.c_contiguous and a.flags.owndata for a in sd.values())


def test_out_of_bounds_strides_rejected(tmp_path: Path) -> None:
    pickled = _state_dict_pickle({"x": ("0", 4, 0, (4,), (2,), None)})
    path = tmp_path / "oob.pth"
    path.write_bytes(_header() + pickled + _p(["0"]) + _storage_blob(np.zeros(4)))
    with pytest.raises(CheckpointFormatError, match="past the end"):
        load_legacy_state_dict(path)


def test_truncated_storage_rejected(tmp_path: Path) -> None:
    pickled = _state_dict_pickle({"x": ("0", 4, 0, (4,), (1,), None)})
    path = tmp_path / "short.pth"
    path.write_bytes(_header() + pickled + _p(["0"]) + _storage_blob(np.zeros(4))[:-4])
    with pytest.raises(CheckpointFormatError, match="truncated"):
        load_legacy_state_dict(path)


# --------------------------------------------------------------------------
# Real Lite0 checkpoint
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, np.ndarray]:
    return load_legacy_state_dict(lite0_checkpoint_path())


def test_checkpoint_located_and_pinned() -> None:
    path = lite0_checkpoint_path()
    assert path.name == "efficientnet-lite0-57934424.pth"
    assert len(LITE0_SHA256) == 64
    verify_lite0_checkpoint(path)


def test_real_checkpoint_loads(lite0_state: dict[str, np.ndarray]) -> None:
    sd = lite0_state
    assert len(sd) == 296
    expected = {
        "_conv_stem.weight": (32, 3, 3, 3),
        "_bn0.running_var": (32,),
        "_bn0.num_batches_tracked": (),
        "_blocks.0._depthwise_conv.weight": (32, 1, 3, 3),
        "_blocks.0._project_conv.weight": (16, 32, 1, 1),
        "_blocks.1._expand_conv.weight": (96, 16, 1, 1),
        "_blocks.3._depthwise_conv.weight": (144, 1, 5, 5),
        "_blocks.15._project_conv.weight": (320, 1152, 1, 1),
        "_conv_head.weight": (1280, 320, 1, 1),
        "_bn1.weight": (1280,),
        "_fc.weight": (1000, 1280),
        "_fc.bias": (1000,),
    }
    for key, shape in expected.items():
        assert sd[key].shape == shape, key
    assert "_blocks.0._expand_conv.weight" not in sd
    assert sd["_conv_stem.weight"].dtype == np.float32
    assert sd["_bn0.num_batches_tracked"].dtype == np.int64
    assert all(np.isfinite(v).all() for v in sd.values())
    assert "torch" not in sys.modules


def test_plugin_import_is_lazy() -> None:
    code = (
        "import sys, transferlab.plugins.efficientnet_lite, transferlab.plugins.efficientnet_lite.torch_legacy\n"
        "bad = [m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_preprocess_lite_numpy_and_tensor() -> None:
    import tensorflow as tf

    pixels = np.array([0, 127, 255], dtype=np.uint8)
    expected = np.array([-127 / 128, 0.0, 1.0], dtype=np.float32)
    out = preprocess_lite(pixels)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected)
    tensor_out = preprocess_lite(tf.constant(pixels))
    assert tensor_out.dtype == tf.float32
    np.testing.assert_allclose(np.asarray(tensor_out), expected)


def test_feature_extractor_skips_fc(lite0_state: dict[str, np.ndarray]) -> None:
    model = build_efficientnet_lite0(input_shape=(96, 96, 3))
    load_lite0_state_into(model, lite0_state)
    assert model.output_shape == (None, 1280)
    np.testing.assert_array_equal(
        model.get_layer("stem_conv").get_weights()[0], lite0_state["_conv_stem.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(
        model.get_layer("block1a_dwconv").get_weights()[0],
        lite0_state["_blocks.0._depthwise_conv.weight"].transpose(2, 3, 0, 1),
    )
    assert not any("lambda" in layer.name for layer in model.layers)


def test_shape_mismatch_names_layer(lite0_state: dict[str, np.ndarray]) -> None:
    model = build_efficientnet_lite0(input_shape=(64, 64, 3), include_top=True, classes=10)
    with pytest.raises(ValueError, match="predictions"):
        load_lite0_state_into(model, lite0_state)


def test_missing_entry_names_layer(lite0_state: dict[str, np.ndarray]) -> None:
    model = build_efficientnet_lite0(input_shape=(64, 64, 3))
    partial = {k: v for k, v in lite0_state.items() if k != "_blocks.4._bn1.running_var"}
    with pytest.raises(ValueError, match="block3b_bn"):
        load_lite0_state_into(model, partial)


def _to_input(image: np.ndarray) -> object:
    import tensorflow as tf

    resized = tf.image.resize(tf.constant(image[None], tf.float32), (224, 224))
    return preprocess_lite(resized)


def test_imagenet_predictions(lite0_state: dict[str, np.ndarray]) -> None:
    import skimage.data

    model = build_efficientnet_lite0(include_top=True)
    load_lite0_state_into(model, lite0_state)
    for image, label in ((skimage.data.chelsea(), 285), (skimage.data.coffee(), 967)):
        probs = np.asarray(model(_to_input(image), training=False))[0]
        assert int(np.argmax(probs)) == label, np.argsort(probs)[::-1][:5]
        assert probs[label] > 0.5
