#!/usr/bin/env python3
"""Checks deepfeed's exports with the reference stack: PEFT loads the adapter deepfeed wrote,
transformers loads the merged model, and both give the same logits (max |diff| printed, exit 1
above 1e-4).

    python3 scripts/check_export.py BASE_DIR ADAPTER_DIR MERGED_DIR
"""
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base_dir, adapter_dir, merged_dir = sys.argv[1:4]
tok = AutoTokenizer.from_pretrained(base_dir)
ids = torch.tensor([tok("Merged model check: 合并后的模型。")["input_ids"]])
with torch.no_grad():
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter_dir).eval()
    base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    a, b, c = peft(ids).logits, merged(ids).logits, base(ids).logits
diff = (a - b).abs().max().item()
effect = (a - c).abs().max().item()
print(f"max |peft - merged| = {diff:.3e}; max |peft - base| = {effect:.3e}")
sys.exit(0 if diff < 1e-4 and effect > 1e-4 else 1)
