#!/usr/bin/env python3
"""Writes crates/deepfeed-model/tests/fixtures/gguf/dequant_reference.gguf: for every ggml type that
deepfeed dequantises, random valid blocks (tensor `<TYPE>`, stored raw) and the f32 values the PyPI
`gguf` package's numpy code (`gguf.quants.dequantize`, llama.cpp's reference) gives for them (tensor
`<TYPE>.expected`), plus f32 inputs (`quant_input`) and what `gguf.quants.quantize` makes of them as
Q8_0/F16/BF16 (`quant_input.<TYPE>`). The file is written by gguf's own GGUFWriter (v3, alignment 64) with metadata
of every value type, so it also checks deepfeed's reader against llama.cpp's writer.

Run: /root/venv-ref/bin/python scripts/make_gguf_reference.py   (deterministic: seed 7)
"""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "deepfeed-model", "tests", "fixtures", "gguf",
                   "dequant_reference.gguf")

rng = np.random.default_rng(7)

# Offsets of the f16 scale fields inside one block (from ggml-common.h): random bytes there could be
# inf/NaN, which would make an exact comparison meaningless, so they get random finite halves.
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def finite_halves(n):
    # random bit patterns (normals and subnormals, both signs) with inf/NaN rejected
    bits = rng.integers(0, 1 << 16, size=n * 2, dtype=np.uint32).astype(np.uint16)
    bits = bits[(bits & 0x7C00) != 0x7C00][:n]
    assert len(bits) == n
    return bits


def random_blocks(qtype, n_blocks):
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        raw[:, off:off + 2] = finite_halves(n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return raw


def main():
    w = gguf.GGUFWriter(OUT, arch="deepfeed-test")
    w.add_custom_alignment(64)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4_000_000_000)
    w.add_int32("test.i32", -2_000_000_000)
    w.add_uint64("test.u64", 1 << 40)
    w.add_int64("test.i64", -(1 << 40))
    w.add_float32("test.f32", 0.1)
    w.add_float64("test.f64", 0.1)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo 世界")
    w.add_array("test.strings", ["a", "", "日本", "<|im_end|>"])
    w.add_array("test.i32s", [1, -2, 3])
    w.add_array("test.f32s", [0.5, -1.25])

    n_blocks = 8  # per type: 2 rows of 4 blocks
    for qtype in [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]:
        raw = random_blocks(qtype, n_blocks)
        expected = dequantize(raw.reshape(-1), qtype).astype(np.float32)
        assert np.isfinite(expected).all()
        w.add_tensor(qtype.name, raw.reshape(2, -1), raw_dtype=qtype)
        w.add_tensor(qtype.name + ".expected", expected.reshape(2, -1))

    # element types: F32 as is, F16 and BF16 from random finite bit patterns
    f32 = rng.standard_normal((3, 64)).astype(np.float32) * 10
    w.add_tensor("F32", f32)
    w.add_tensor("F32.expected", f32.copy())
    f16_bits = finite_halves(3 * 64).reshape(3, 64)
    w.add_tensor("F16", f16_bits.view(np.uint8), raw_dtype=T.F16)
    w.add_tensor("F16.expected", dequantize(f16_bits.view(np.uint8), T.F16).astype(np.float32).reshape(3, 64))
    bf16_bits = rng.integers(0, 1 << 16, size=3 * 64, dtype=np.uint32).astype(np.uint16)
    bf16_bits = np.where((bf16_bits & 0x7F80) == 0x7F80, bf16_bits & 0x807F, bf16_bits).reshape(3, 64)
    w.add_tensor("BF16", bf16_bits.view(np.uint8), raw_dtype=T.BF16)
    w.add_tensor("BF16.expected", dequantize(bf16_bits.view(np.uint8), T.BF16).astype(np.float32).reshape(3, 64))

    # quantisation references: inputs with a few exact zeros, ties and outliers, and what
    # gguf.quants.quantize makes of them (Q8_0 is bit-exact with ggml's quantize_row_q8_0_ref)
    qin = (rng.standard_normal((4, 256)) * rng.choice([0.01, 1.0, 30.0], size=(4, 1))).astype(np.float32)
    qin[0, :32] = 0.0
    qin[1, 40] = 500.0
    qin[2, 64:96] = np.float32(0.5) * np.arange(-16, 16, dtype=np.float32)
    w.add_tensor("quant_input", qin)
    for qtype in [T.Q8_0, T.F16, T.BF16]:
        q = gguf.quants.quantize(qin, qtype)
        w.add_tensor("quant_input." + qtype.name, q.view(np.uint8), raw_dtype=qtype)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # read back with llama.cpp's reader as a sanity check of what was written
    r = gguf.GGUFReader(OUT)
    names = [t.name for t in r.tensors]
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes, {len(names)} tensors", file=sys.stderr)


if __name__ == "__main__":
    main()
