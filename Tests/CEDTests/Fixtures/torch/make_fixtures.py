#!/usr/bin/env python3
"""Writes small torch.save-style checkpoints (and raw deflate streams) for the
checkpoint reader tests, without PyTorch.

The pickles are produced by Python's own `pickle` module with stand-in modules named
`torch` and `torch._utils`, so the byte stream has exactly the opcodes and globals
torch.save writes (`torch._utils._rebuild_tensor_v2`, `torch.FloatStorage`, persistent
ids ('storage', type, key, 'cpu', numel)). Expected values are computed with numpy
from the same arrays (`numpy.lib.stride_tricks.as_strided`), independently of the
Swift reader.

Run from this folder: python3 make_fixtures.py
"""
import collections
import io
import json
import pickle
import sys
import types
import zipfile
import zlib

import numpy as np
from numpy.lib.stride_tricks import as_strided

# --- stand-in torch modules -------------------------------------------------------
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
torch._utils = torch_utils
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


def _fake(module, name, fn=None):
    obj = fn or type(name, (), {})
    obj.__module__ = module.__name__
    obj.__qualname__ = name
    obj.__name__ = name
    setattr(module, name, obj)
    return obj


STORAGE_TYPES = {}
for cls, dt in [("FloatStorage", "<f4"), ("DoubleStorage", "<f8"), ("HalfStorage", "<f2"),
                ("BFloat16Storage", "bf16"), ("LongStorage", "<i8"), ("IntStorage", "<i4"),
                ("ShortStorage", "<i2"), ("CharStorage", "i1"), ("ByteStorage", "u1"), ("BoolStorage", "?")]:
    STORAGE_TYPES[cls] = (_fake(torch, cls), dt)

rebuild_tensor_v2 = _fake(torch_utils, "_rebuild_tensor_v2", lambda *a: None)
rebuild_parameter = _fake(torch_utils, "_rebuild_parameter", lambda *a: None)


class Storage:
    def __init__(self, key, cls, raw, numel):
        self.key, self.cls, self.raw, self.numel = key, cls, raw, numel


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def __reduce_ex__(self, proto):
        return (rebuild_tensor_v2, (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict()))


class Parameter:
    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce_ex__(self, proto):
        return (rebuild_parameter, (self.tensor, True, collections.OrderedDict()))


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", STORAGE_TYPES[obj.cls][0], obj.key, "cpu", obj.numel)
        return None


def bf16_bits(values):
    """float32 → bfloat16 bit patterns by truncation (values chosen to be exact)."""
    return (np.asarray(values, dtype="<f4").view("<u4") >> 16).astype("<u2")


def make_state(big_endian=False):
    rng = np.random.default_rng(1234)
    order = ">" if big_endian else "<"
    storages, expected, sd = {}, {}, collections.OrderedDict()

    def storage(key, cls, values):
        dt = STORAGE_TYPES[cls][1]
        if dt == "bf16":
            arr = bf16_bits(values).astype(order + "u2")
            logical = np.asarray(values, dtype=np.float64)
        else:
            arr = np.asarray(values, dtype=np.dtype(dt).newbyteorder(order) if np.dtype(dt).itemsize > 1 else dt)
            logical = arr.astype(np.float64)
        s = Storage(key, cls, arr.tobytes(), arr.size)
        storages[key] = s.raw
        return s, logical

    def view(name, st, logical, offset, size, stride, wrap=False):
        t = Tensor(st, offset, size, stride)
        sd[name] = Parameter(t) if wrap else t
        v = as_strided(logical[offset:], shape=size, strides=[s * logical.itemsize for s in stride]) if size else logical[offset:offset + 1].reshape(())
        expected[name] = {"shape": list(size), "values": [float(x) for x in np.asarray(v, dtype=np.float32).ravel()]}

    f32, f32l = storage("0", "FloatStorage", rng.standard_normal(8).astype(np.float32))
    view("a", f32, f32l, 2, (2, 3), (3, 1))
    view("a_t", f32, f32l, 2, (3, 2), (1, 3))          # transposed view of the same storage
    view("row_bcast", f32, f32l, 0, (2, 4), (0, 1))    # stride 0 (expanded)
    view("param", f32, f32l, 1, (4,), (2,), wrap=True)  # nn.Parameter, strided
    h, hl = storage("1", "HalfStorage", np.array([1.5, -2.25, 65504.0, 6.1035156e-05], dtype=np.float16))
    view("half", h, hl, 0, (4,), (1,))
    b, bl = storage("2", "BFloat16Storage", [1.0, -3.5, 0.15625])
    view("bf16", b, bl, 0, (3,), (1,))
    d, dl = storage("3", "DoubleStorage", np.array([0.1, -1e-3, 123.456, 2.0**-30]))
    view("f64", d, dl, 0, (2, 2), (2, 1))
    i64, i64l = storage("4", "LongStorage", np.array([42, -7], dtype=np.int64))
    view("scalar_i64", i64, i64l, 1, (), ())
    i32, i32l = storage("5", "IntStorage", np.array([-100000, 3, 77], dtype=np.int32))
    view("i32", i32, i32l, 0, (3,), (1,))
    i16, i16l = storage("6", "ShortStorage", np.array([-300, 300], dtype=np.int16))
    view("i16", i16, i16l, 0, (2,), (1,))
    i8, i8l = storage("7", "CharStorage", np.array([-128, 127, 0], dtype=np.int8))
    view("i8", i8, i8l, 0, (3,), (1,))
    u8, u8l = storage("8", "ByteStorage", np.array([0, 200, 255], dtype=np.uint8))
    view("u8", u8, u8l, 0, (3,), (1,))
    bo, bol = storage("9", "BoolStorage", np.array([True, False, True]))
    view("bool", bo, bol, 0, (3,), (1,))
    view("empty", f32, f32l, 0, (0, 5), (5, 1))
    return sd, storages, expected


def write(path, obj, storages, protocol=2, folder="archive", compression=zipfile.ZIP_STORED, byteorder="little"):
    buf = io.BytesIO()
    Pickler(buf, protocol=protocol).dump(obj)
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        z.writestr(f"{folder}/data.pkl", buf.getvalue())
        z.writestr(f"{folder}/byteorder", byteorder)
        for key, raw in storages.items():
            z.writestr(f"{folder}/data/{key}", raw)
        z.writestr(f"{folder}/version", "3\n")


if __name__ == "__main__":
    sd, storages, expected = make_state()
    write("dtypes.pt", sd, storages)
    write("dtypes-proto5.pt", {"state_dict": sd, "epoch": 3, "note": "x" * 3, "lr": 0.5, "tags": ("a", 1)}, storages,
          protocol=5, folder="some_other_name")
    write("dtypes-deflated.pt", sd, storages, compression=zipfile.ZIP_DEFLATED)
    sd_be, storages_be, expected_be = make_state(big_endian=True)
    write("dtypes-bigendian.pt", sd_be, storages_be, byteorder="big")
    assert expected_be == expected
    with open("dtypes.expected.json", "w") as f:
        json.dump(expected, f, indent=0, sort_keys=True)

    # Raw deflate streams of one payload, one per block type.
    rng = np.random.default_rng(7)
    payload = (b"CED checkpoint inflate test. " * 40) + rng.integers(0, 256, 1500, dtype=np.uint8).tobytes() + bytes(range(256)) * 4
    with open("inflate.payload.bin", "wb") as f:
        f.write(payload)
    for name, level, strategy in [("stored", 0, zlib.Z_DEFAULT_STRATEGY), ("fixed", 9, zlib.Z_FIXED),
                                  ("dynamic", 9, zlib.Z_DEFAULT_STRATEGY)]:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 9, strategy)
        with open(f"inflate.{name}.deflate", "wb") as f:
            f.write(c.compress(payload) + c.flush())
