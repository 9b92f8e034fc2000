#!/usr/bin/env python3
"""Compares the raw f32 dumps written by
`cargo run --release -p deepfeed-model --example gguf_dequant_bench -- FILE.gguf --dump DIR`
with the Python `gguf` package's dequantisation of the same file, tensor by tensor, bit for bit.

Usage: /root/venv-ref/bin/python scripts/check_gguf_dequant.py FILE.gguf DIR
"""
import os
import sys

import numpy as np
import gguf
from gguf.quants import dequantize


def main():
    path, dump = sys.argv[1], sys.argv[2]
    r = gguf.GGUFReader(path)
    n_same = n_diff = 0
    for t in r.tensors:
        f = os.path.join(dump, t.name + ".f32")
        if not os.path.exists(f):
            print(f"missing dump for {t.name} ({t.tensor_type.name})")
            continue
        ours = np.fromfile(f, dtype=np.float32)
        ref = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        if ours.shape == ref.shape and np.array_equal(ours.view(np.uint32), ref.view(np.uint32)):
            n_same += 1
        else:
            n_diff += 1
            print(f"DIFF {t.name} {t.tensor_type.name}: max |d| {np.abs(ours - ref).max()}")
    print(f"{n_same} tensors bit-identical, {n_diff} different")
    sys.exit(1 if n_diff else 0)


if __name__ == "__main__":
    main()
