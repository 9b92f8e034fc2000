#!/usr/bin/env python3
"""transformers' perplexity of Gemma 3 270M Q4_K_M (GGUF loading, fp32) on the real-model test text
with llama.cpp's llama-perplexity protocol (512-token chunks, BOS at each chunk start, second half of
each chunk scored), plus per-chunk NLL, to compare with deepfeed (tests/gemma_real.rs).

Usage: /root/venv-ref/bin/python scripts/gemma_real_ppl.py [path/to/gemma-3-270m-q4_k_m.gguf]
Prints JSON.
"""
import json
import math
import os
import sys
import time

import torch
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GGUF = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/deepfeed/gemma-3-270m-q4_k_m.gguf")
ref = json.load(open(os.path.join(ROOT, "crates/deepfeed-model/tests/fixtures/gemma3_real/reference.json")))
ids = ref["text_ids"]  # transformers' own tokenization (tests check deepfeed's equals it)
torch.set_num_threads(2)
model = AutoModelForCausalLM.from_pretrained(os.path.dirname(GGUF), gguf_file=os.path.basename(GGUF), dtype=torch.float32).eval()
n_ctx, first = 512, 256
chunks, total, count = [], 0.0, 0
t = time.time()
with torch.no_grad():
    for c in range(len(ids) // n_ctx):
        tokens = ids[c * n_ctx:(c + 1) * n_ctx]
        tokens[0] = ref["prompt_ids"][0]  # BOS
        logits = model(torch.tensor([tokens])).logits[0].float()
        logp = torch.log_softmax(logits[first:n_ctx - 1], dim=-1)
        nll = -logp.gather(1, torch.tensor(tokens[first + 1:]).unsqueeze(1)).sum().item()
        chunks.append(nll / (n_ctx - 1 - first))
        total += nll
        count += n_ctx - 1 - first
    prompt_logits = model(torch.tensor([ref["prompt_ids"]])).logits[0, -1].float()
top = torch.topk(prompt_logits, 5)
print(json.dumps({"ppl": math.exp(total / count), "scored": count, "chunk_mean_nll": chunks,
                  "prompt_top5_ids": top.indices.tolist(), "prompt_top5_logits": top.values.tolist(),
                  "eval_seconds": round(time.time() - t, 1)}))
