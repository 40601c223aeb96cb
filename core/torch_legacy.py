"""Read PyTorch legacy (pre-1.6, non-zip) ``.pth`` state dicts without torch.

The legacy serialisation format written by ``torch.save`` before PyTorch 1.6
is a concatenation of:

1. a pickle of the magic number ``0x1950a86a20f9469cfc6c``;
2. a pickle of the protocol version ``1001``;
3. a pickle of a sys-info dict (endianness, C type sizes);
4. the pickled object itself (here: an ``OrderedDict`` state dict) whose
   tensors are rebuilt via ``torch._utils._rebuild_tensor_v2`` and whose
   storages are referenced by *persistent ids*
   ``('storage', StorageType, key, location, numel, view_metadata)``;
5. a pickle of the list of storage keys;
6. for every key in that order: a little-endian int64 element count followed
   by the raw little-endian storage bytes.

Unpickling arbitrary data is arbitrary code execution, so this module never
uses a plain ``pickle.load``: :class:`_RestrictedUnpickler` resolves only an
explicit allow-list of globals, each mapped to an inert local placeholder, and
refuses everything else with :class:`UnsafeCheckpointError`.  Torch is never
imported (it need not even be installed).
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from transferlab.errors import TransferlabError

__all__ = [
    "CheckpointFormatError",
    "LEGACY_MAGIC_NUMBER",
    "LEGACY_PROTOCOL_VERSION",
    "UnsafeCheckpointError",
    "load_legacy_state_dict",
]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001


class UnsafeCheckpointError(TransferlabError, ValueError):
    """A checkpoint pickle referenced a global outside the allow-list.

    Raised *before* the global is resolved, so nothing it names is imported
    or executed.
    """


class CheckpointFormatError(TransferlabError, ValueError):
    """A file is not a well-formed PyTorch legacy-format state dict."""


@dataclass(frozen=True)
class _StorageType:
    """Inert stand-in for a ``torch.<X>Storage`` class.

    Deliberately not callable: the only legitimate use of a storage class in a
    legacy checkpoint is as a tag inside a persistent id, so a pickle that
    tries to *call* one (via REDUCE) fails instead of doing anything.
    """

    name: str
    dtype: np.dtype
    # bfloat16 has no numpy dtype; it is read as uint16 and widened later.
    is_bfloat16: bool = False


# Storage class name -> little-endian numpy dtype of one element.
_STORAGE_TYPES: dict[str, _StorageType] = {
    name: _StorageType(name, np.dtype(code), name == "BFloat16Storage")
    for name, code in {
        "FloatStorage": "<f4",
        "DoubleStorage": "<f8",
        "HalfStorage": "<f2",
        "LongStorage": "<i8",
        "IntStorage": "<i4",
        "ShortStorage": "<i2",
        "CharStorage": "i1",
        "ByteStorage": "u1",
        "BoolStorage": "?",
        "BFloat16Storage": "<u2",
    }.items()
}


@dataclass(frozen=True)
class _StorageRef:
    """A storage reference decoded from a persistent id.

    ``root_key`` names the storage whose bytes follow the pickles;
    ``view_offset`` (in elements) is non-zero only for storage views.
    """

    storage_type: _StorageType
    root_key: str
    root_numel: int
    view_offset: int
    numel: int


@dataclass(frozen=True)
class _TensorStub:
    """A tensor whose storage bytes have not been read yet."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: Any, storage_offset: Any, size: Any, stride: Any, *_ignored: Any
) -> _TensorStub:
    """Placeholder for ``torch._utils._rebuild_tensor_v2``.

    Only records the geometry; ``requires_grad``, backward hooks and (newer)
    metadata are irrelevant for inference weights and are dropped.
    """
    if not isinstance(storage, _StorageRef):
        raise CheckpointFormatError("_rebuild_tensor_v2 called without a storage reference")
    if not _is_int(storage_offset) or storage_offset < 0:
        raise CheckpointFormatError(f"invalid tensor storage offset {storage_offset!r}")
    size_t = _int_tuple(size, "size")
    stride_t = _int_tuple(stride, "stride")
    if len(size_t) != len(stride_t):
        raise CheckpointFormatError(f"tensor size {size_t} and stride {stride_t} differ in rank")
    return _TensorStub(storage, int(storage_offset), size_t, stride_t)


def _rebuild_parameter(data: Any, requires_grad: Any = None, backward_hooks: Any = None) -> _TensorStub:
    """Placeholder for ``torch._utils._rebuild_parameter``: a Parameter is just its data."""
    if not isinstance(data, _TensorStub):
        raise CheckpointFormatError("_rebuild_parameter called without a tensor")
    return data


# (module, name) -> object handed to the unpickler.  Everything else is refused.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): storage_type for name, storage_type in _STORAGE_TYPES.items()},
}


def _is_int(value: Any) -> bool:
    # bool is an int subclass but never a valid size/offset here.
    return isinstance(value, int) and not isinstance(value, bool)


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(_is_int(v) and v >= 0 for v in value):
        raise CheckpointFormatError(f"invalid tensor {what} {value!r}")
    return tuple(int(v) for v in value)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals to local placeholders.

    ``find_class`` is the single entry point through which a pickle can reach
    importable code (GLOBAL / STACK_GLOBAL / INST / OBJ opcodes all go through
    it), so refusing there blocks code execution before any import happens.
    """

    def __init__(self, file: IO[bytes], storages: dict[str, _StorageRef] | None = None) -> None:
        super().__init__(file)
        # Shared across the pickles of one file so views resolve consistently.
        self._storages: dict[str, _StorageRef] = {} if storages is None else storages

    def find_class(self, module: str, name: str) -> Any:
        """Return the placeholder for an allow-listed global, refuse anything else."""
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"refusing to load global {module}.{name} from checkpoint: only "
                "OrderedDict, torch._utils._rebuild_tensor_v2/_rebuild_parameter and "
                "torch.<X>Storage types are allowed"
            ) from None

    def persistent_load(self, pid: Any) -> _StorageRef:
        """Decode ``('storage', StorageType, key, location, numel, view_metadata)``."""
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise CheckpointFormatError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel, view_metadata = pid
        if not isinstance(storage_type, _StorageType):
            raise CheckpointFormatError(f"persistent id names unknown storage type {storage_type!r}")
        if not isinstance(key, str) or not _is_int(numel) or numel < 0:
            raise CheckpointFormatError(f"malformed storage persistent id {pid!r}")

        root = self._storages.get(key)
        if root is None:
            root = _StorageRef(storage_type, key, numel, 0, numel)
            self._storages[key] = root
        elif root.storage_type != storage_type or root.root_numel != numel:
            raise CheckpointFormatError(f"storage {key!r} referenced with inconsistent type/size")

        if view_metadata is None:
            return root
        # Legacy views: (view_key, offset, view_size) into the root storage.
        if not (
            isinstance(view_metadata, tuple)
            and len(view_metadata) == 3
            and _is_int(view_metadata[1])
            and _is_int(view_metadata[2])
        ):
            raise CheckpointFormatError(f"malformed storage view metadata {view_metadata!r}")
        _view_key, offset, view_size = view_metadata
        if offset < 0 or view_size < 0 or offset + view_size > numel:
            raise CheckpointFormatError(f"storage view {view_metadata!r} exceeds storage {key!r}")
        return _StorageRef(storage_type, key, numel, offset, view_size)


def _load_pickle(f: IO[bytes], storages: dict[str, _StorageRef], what: str) -> Any:
    """Unpickle the next pickle in ``f``, translating generic failures."""
    try:
        return _RestrictedUnpickler(f, storages).load()
    except (UnsafeCheckpointError, CheckpointFormatError):
        raise
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "bad file"
        raise CheckpointFormatError(f"could not read {what}: {type(exc).__name__}: {exc}") from exc


def _read_storages(
    f: IO[bytes], keys: list[str], storages: dict[str, _StorageRef]
) -> dict[str, np.ndarray]:
    """Read the raw storage blobs that follow the pickles, in ``keys`` order."""
    arrays: dict[str, np.ndarray] = {}
    for key in keys:
        ref = storages.get(key)
        if ref is None:
            raise CheckpointFormatError(f"storage key {key!r} was never referenced by a tensor")
        header = f.read(8)
        if len(header) != 8:
            raise CheckpointFormatError(f"truncated file: missing size of storage {key!r}")
        (count,) = struct.unpack("<q", header)
        if count != ref.root_numel:
            raise CheckpointFormatError(
                f"storage {key!r} holds {count} elements, pickle declared {ref.root_numel}"
            )
        dtype = ref.storage_type.dtype
        nbytes = count * dtype.itemsize
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise CheckpointFormatError(f"truncated file: storage {key!r} is short")
        arrays[key] = np.frombuffer(data, dtype=dtype)
    return arrays


def _materialise(stub: _TensorStub, arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    """Turn a tensor stub into an owned, C-contiguous numpy array."""
    ref = stub.storage
    base = arrays.get(ref.root_key)
    if base is None:
        raise CheckpointFormatError(f"tensor {name!r} uses storage {ref.root_key!r} that has no data")
    start = ref.view_offset + stub.offset
    numel = int(np.prod(stub.size, dtype=np.int64))
    # as_strided does no bounds checking, so prove the furthest element lies
    # inside the (view of the) storage before touching memory.
    if numel > 0:
        last = stub.offset + sum((n - 1) * s for n, s in zip(stub.size, stub.stride))
        if last >= ref.numel:
            raise CheckpointFormatError(f"tensor {name!r} reads past the end of its storage")
        view = np.lib.stride_tricks.as_strided(
            base[start:],
            shape=stub.size,
            strides=tuple(s * base.itemsize for s in stub.stride),
            writeable=False,
        )
        out = np.array(view, copy=True, order="C")
    else:
        out = np.empty(stub.size, dtype=base.dtype)
    if ref.storage_type.is_bfloat16:
        # bfloat16 is the upper half of a float32.
        out = (out.astype(np.uint32) << 16).view(np.float32)
    # Normalise to native byte order so downstream code sees plain dtypes.
    return out.astype(out.dtype.newbyteorder("="), copy=False)


def load_legacy_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load a PyTorch legacy-format (pre-1.6, non-zip) state dict as numpy arrays.

    Args:
        path: Path to a ``.pth``/``.pt`` file written by ``torch.save`` with
            ``_use_new_zipfile_serialization=False`` (or by PyTorch < 1.6).

    Returns:
        Mapping from parameter/buffer name to an owned numpy array with the
        tensor's shape (PyTorch layout, e.g. OIHW convolution kernels), in
        checkpoint order.

    Raises:
        UnsafeCheckpointError: The pickle references any global other than
            ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``,
            ``torch._utils._rebuild_parameter`` or a ``torch.<X>Storage`` type.
            Nothing is imported or executed.
        CheckpointFormatError: The file is not a legacy checkpoint (wrong magic
            number or protocol, zip format, big-endian, truncated, or the
            top-level object is not a flat name -> tensor mapping).
    """
    # open() gives a BufferedReader; the unpickler consumes exactly up to each
    # pickle's STOP opcode, so consecutive loads (and the raw storage reads
    # after them) start at the right byte, just as torch.load relies on.
    with open(path, "rb") as f:
        if f.peek(4)[:4] == b"PK\x03\x04":
            raise CheckpointFormatError(
                f"{path} is a zip-format (PyTorch >= 1.6) checkpoint, not the legacy format"
            )
        storages: dict[str, _StorageRef] = {}

        magic = _load_pickle(f, storages, "magic number")
        if magic != LEGACY_MAGIC_NUMBER:
            raise CheckpointFormatError(
                f"{path} is not a PyTorch legacy checkpoint: magic number {magic!r} "
                f"!= {LEGACY_MAGIC_NUMBER:#x}"
            )
        protocol = _load_pickle(f, storages, "protocol version")
        if protocol != LEGACY_PROTOCOL_VERSION:
            raise CheckpointFormatError(
                f"unsupported legacy protocol version {protocol!r} (expected {LEGACY_PROTOCOL_VERSION})"
            )
        sys_info = _load_pickle(f, storages, "sys info")
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
            raise CheckpointFormatError("only little-endian legacy checkpoints are supported")

        obj = _load_pickle(f, storages, "state dict")
        keys = _load_pickle(f, storages, "storage key list")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise CheckpointFormatError("storage key list is malformed")
        arrays = _read_storages(f, keys, storages)

    if not isinstance(obj, dict):
        raise CheckpointFormatError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
    result: dict[str, np.ndarray] = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, _TensorStub):
            raise CheckpointFormatError(f"state dict entry {name!r} is not a tensor")
        result[name] = _materialise(value, arrays, name)
    return result
