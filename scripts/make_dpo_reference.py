#!/usr/bin/env python3
"""DPO reference fixture for deepfeed-train, computed by PyTorch + PEFT (TRL's dpo_loss formulas).

Policy: the tiny llama fixture of deepfeed-model with the PEFT LoRA adapter of
crates/deepfeed-train/tests/fixtures/lora_llama (random non-zero A and B, from
scripts/make_train_reference.py), so the policy differs from the reference = the base model
(adapter disabled, as TRL does for a PEFT model without ref_model). Two preference pairs.
Writes crates/deepfeed-train/tests/fixtures/dpo_llama/:
  reference.json         the sequences (ids, labels with -100) and the DPO settings
  reference.safetensors  summed answer log-probs (policy, reference), the sigmoid DPO loss with
                         label smoothing and its LoRA gradients, the IPO loss

    /root/venv-ref/bin/python scripts/make_dpo_reference.py
"""
import json
import os

import torch
import torch.nn.functional as F
from peft import PeftModel
from safetensors.torch import save_file
from transformers import AutoTokenizer, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(ROOT, "crates", "deepfeed-model", "tests", "fixtures", "llama")
LORA = os.path.join(ROOT, "crates", "deepfeed-train", "tests", "fixtures", "lora_llama")
OUT = os.path.join(ROOT, "crates", "deepfeed-train", "tests", "fixtures", "dpo_llama")
BETA, LABEL_SMOOTHING = 0.5, 0.1
PAIRS = [
    ("User: 你好\n\nAssistant:", " 你好！很高兴认识你。", " 不知道。"),
    ("User: What is LoRA?\n\nAssistant:", " A small adapter.", " A kind of fruit, I think."),
]


def sequence(tok, prompt, answer):
    p = tok(prompt)["input_ids"]  # with BOS
    a = tok(answer, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<｜end▁of▁sentence｜>")]
    return p + a, [-100] * len(p) + a


def logp(model, ids, labels):
    """Summed log-prob of the labelled tokens, and how many there are."""
    logits = model(torch.tensor([ids])).logits[0, :-1]
    labels = torch.tensor(labels[1:])
    mask = labels != -100
    picked = torch.log_softmax(logits, -1).gather(1, labels.clamp(min=0)[:, None])[:, 0]
    return (picked * mask).sum(), mask.sum()


def main():
    os.makedirs(OUT, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(BASE)
    seqs = [(sequence(tok, p, c), sequence(tok, p, r)) for p, c, r in PAIRS]
    model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(BASE, dtype=torch.float32), LORA, is_trainable=True)
    model.train()
    with torch.no_grad(), model.disable_adapter():
        ref = torch.stack([torch.stack([logp(model, *c)[0], logp(model, *r)[0]]) for c, r in seqs])  # [pairs, 2]
    pol, counts = [], []
    for c, r in seqs:
        (lc, nc), (lr, nr) = logp(model, *c), logp(model, *r)
        pol.append(torch.stack([lc, lr]))
        counts.append(torch.stack([nc, nr]))
    pol, counts = torch.stack(pol), torch.stack(counts).float()
    # TRL dpo_loss, loss_type="sigmoid"
    logits = BETA * ((pol[:, 0] - pol[:, 1]) - (ref[:, 0] - ref[:, 1]))
    loss = (-F.logsigmoid(logits) * (1 - LABEL_SMOOTHING) - F.logsigmoid(-logits) * LABEL_SMOOTHING).mean()
    loss.backward()
    # loss_type="ipo": log-probs averaged over the answer tokens
    with torch.no_grad():
        pa, ra = pol / counts, ref / counts
        h = (pa[:, 0] - pa[:, 1]) - (ra[:, 0] - ra[:, 1])
        ipo = ((h - 1 / (2 * BETA)) ** 2).mean()
    tensors = {"ref_logps": ref.contiguous(), "policy_logps": pol.detach().contiguous(), "sigmoid.loss": loss.detach().reshape(1), "ipo.loss": ipo.reshape(1)}
    for name, p in model.named_parameters():
        if p.requires_grad:
            tensors["grad." + name] = p.grad.contiguous()
    save_file(tensors, os.path.join(OUT, "reference.safetensors"))
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump({"pairs": [{"chosen_ids": c[0], "chosen_labels": c[1], "rejected_ids": r[0], "rejected_labels": r[1]} for c, r in seqs],
                   "beta": BETA, "label_smoothing": LABEL_SMOOTHING}, f, indent=1)
    size = sum(os.path.getsize(os.path.join(OUT, x)) for x in os.listdir(OUT))
    print(f"sigmoid loss {loss.item():.6f} (logits {logits.tolist()}), ipo loss {ipo.item():.6f}, fixture {size/1024:.0f} KiB")


if __name__ == "__main__":
    main()
