#!/usr/bin/env python3
"""Peer for `deepfeed bench forward`: the same measurement with PyTorch + transformers.

    python3 scripts/bench_forward.py MODEL_DIR IDS_JSON GEN_TOKENS RUNS
prints one JSON line: {"prefill_tok_s": median, "decode_tok_s": median, "threads": n}.
Prefill = one forward over the prompt with a fresh cache; decode = greedy tokens one at a time
with the KV cache (the first one comes from the prefill), like deepfeed's generate().
"""
import json
import os
import statistics
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    model_dir, ids_path, gen, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(os.cpu_count())
    ids = torch.tensor([json.load(open(ids_path))])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prefill, decode = [], []
    with torch.inference_mode():
        for r in range(runs + 1):  # run 0 warms up
            t0 = time.perf_counter()
            out = model(ids, use_cache=True)
            t1 = time.perf_counter()
            past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
            for _ in range(gen - 1):
                out = model(nxt, past_key_values=past, use_cache=True)
                past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
            t2 = time.perf_counter()
            if r > 0:
                prefill.append(ids.shape[1] / (t1 - t0))
                decode.append((gen - 1) / (t2 - t1))
    print(json.dumps({"prefill_tok_s": statistics.median(prefill), "decode_tok_s": statistics.median(decode),
                      "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
