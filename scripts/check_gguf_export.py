#!/usr/bin/env python3
"""Checks a GGUF written by `deepfeed export gguf` against its source model with llama.cpp's and
Hugging Face's own readers (not run by the tests; results are recorded in docs/gguf.md):

  1. gguf.GGUFReader reads every key and tensor;
  2. transformers loads the GGUF (`from_pretrained(..., gguf_file=...)`, which dequantises and undoes
     llama's q/k permutation) and its logits are compared with the original HF model's;
  3. for llama3 rope scaling, `rope_freqs.weight` equals transformers' frequency ratios.

Usage: /root/venv-ref/bin/python scripts/check_gguf_export.py HF_DIR FILE.gguf [--tol 1e-2]
"""
import argparse
import os
import sys

import numpy as np
import torch
import gguf
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hf_dir")
    ap.add_argument("gguf_file")
    ap.add_argument("--tol", type=float, default=1e-2, help="max |logit difference| allowed")
    args = ap.parse_args()

    r = gguf.GGUFReader(args.gguf_file)
    arch = r.fields["general.architecture"].contents()
    print(f"GGUFReader: {len(r.fields)} keys, {len(r.tensors)} tensors, arch {arch}, "
          f"types {sorted({t.tensor_type.name for t in r.tensors})}")

    rope = [t for t in r.tensors if t.name == "rope_freqs.weight"]
    if rope:
        # llama3 rope scaling: llama.cpp divides the frequencies by these factors
        from transformers import AutoConfig
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
        cfg = AutoConfig.from_pretrained(args.hf_dir)
        inv_l3, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")
        d = r.fields[f"{arch}.rope.dimension_count"].contents()
        base = r.fields[f"{arch}.rope.freq_base"].contents()
        inv = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        want = (inv / inv_l3).numpy()
        rel = float(np.max(np.abs(np.array(rope[0].data) - want) / want))
        print(f"rope_freqs: max relative difference from transformers' llama3 frequencies {rel:.2g}")
        if rel > 1e-5:
            print("FAIL: rope_freqs", file=sys.stderr)
            sys.exit(1)

    ids = torch.tensor([[0, 5, 17, 42, 99, 123, 7, 256, 300, 11]])
    ref = AutoModelForCausalLM.from_pretrained(args.hf_dir, dtype=torch.float32).eval()
    d, name = os.path.split(os.path.abspath(args.gguf_file))
    got = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32).eval()
    with torch.no_grad():
        a = ref(ids).logits
        b = got(ids).logits
    diff = (a - b).abs().max().item()
    top_same = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
    print(f"transformers: max |logit diff| {diff:.3g} (scale {a.abs().max().item():.3g}), top-1 agreement {top_same:.0%}")
    if diff > args.tol:
        print("FAIL: logits differ more than --tol", file=sys.stderr)
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
