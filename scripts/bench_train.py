#!/usr/bin/env python3
"""Peer for `deepfeed bench train`: LoRA training steps with PyTorch + transformers + PEFT.

    python3 scripts/bench_train.py MODEL_DIR BATCH SEQ STEPS WARMUP R ALPHA TARGETS
prints one JSON line: {"tokens_per_second": median, "peak_rss_mib": ...}.
A step = forward + backward + AdamW step on a [BATCH, SEQ] batch of random tokens, fp32.
"""
import json
import os
import resource
import statistics
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM


def main():
    model_dir = sys.argv[1]
    batch, seq, steps, warmup, r = (int(x) for x in sys.argv[2:7])
    alpha, targets = float(sys.argv[7]), sys.argv[8].split(",")
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0, task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    vocab = model.config.vocab_size
    times = []
    for i in range(warmup + steps):
        ids = torch.randint(0, vocab, (batch, seq))
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tokens_per_second": batch * seq / statistics.median(times), "peak_rss_mib": rss, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
