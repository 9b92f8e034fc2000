#!/usr/bin/env python3
"""Training reference fixtures for deepfeed-train, computed by PyTorch + PEFT.

On the tiny llama fixture of deepfeed-model (run scripts/make_reference.py first) this writes
crates/deepfeed-train/tests/fixtures/lora_llama/:
  adapter_config.json, adapter_model.safetensors  a PEFT LoRA adapter with random non-zero A and B
  reference.safetensors  loss, LoRA gradients, LoRA weights after one AdamW step, logits with the
                         adapter, full fine-tuning gradients of layer 1 / norm / lm_head / embeddings
  reference.json         the batch (ids, labels with -100) and the hyper-parameters

    .venv-ref/bin/pip install peft && .venv-ref/bin/python scripts/make_train_reference.py
"""
import json
import os

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoTokenizer, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(ROOT, "crates", "deepfeed-model", "tests", "fixtures", "llama")
OUT = os.path.join(ROOT, "crates", "deepfeed-train", "tests", "fixtures", "lora_llama")
OUT_DORA = os.path.join(ROOT, "crates", "deepfeed-train", "tests", "fixtures", "dora_llama")
OUT_PREFIX = os.path.join(ROOT, "crates", "deepfeed-train", "tests", "fixtures", "prefix_llama")
LR, WD, BETAS, EPS = 1e-2, 0.01, (0.9, 0.999), 1e-8
TARGETS = ["q_proj", "v_proj", "o_proj", "down_proj"]


def batch(tok):
    pairs = [("User: 你好\n\nAssistant:", " 你好！很高兴认识你。"), ("User: What is LoRA?\n\nAssistant:", " A small adapter.")]
    ids, labels = [], []
    for prompt, answer in pairs:
        p = tok(prompt)["input_ids"]  # with BOS
        a = tok(answer, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<｜end▁of▁sentence｜>")]
        ids.append(p + a)
        labels.append([-100] * len(p) + a)
    n = max(len(x) for x in ids)
    pad = tok.convert_tokens_to_ids("<｜▁pad▁｜>")
    ids = [x + [pad] * (n - len(x)) for x in ids]
    labels = [x + [-100] * (n - len(x)) for x in labels]
    return ids, labels


def loss_fn(logits, labels):
    # token-mean cross entropy over the labelled positions; logits[t] predicts labels[t + 1]
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
    )


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(BASE)
    ids, labels = batch(tok)
    ids_t, labels_t = torch.tensor(ids), torch.tensor(labels)
    text_ids = torch.tensor([tok("LoRA 适配器 adapter test")["input_ids"]])
    tensors = {}

    # full fine-tuning gradients
    model = LlamaForCausalLM.from_pretrained(BASE, dtype=torch.float32)
    model.train()
    loss = loss_fn(model(ids_t).logits, labels_t)
    loss.backward()
    tensors["full.loss"] = loss.detach().reshape(1)
    for name, p in model.named_parameters():
        if name.startswith("model.layers.1.") or name in ("model.norm.weight", "lm_head.weight", "model.embed_tokens.weight"):
            tensors["full.grad." + name] = p.grad.contiguous()

    # LoRA with random non-zero A and B (PEFT starts B at zero, which would hide A's gradient)
    model = LlamaForCausalLM.from_pretrained(BASE, dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, lora_dropout=0.0, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    save_adapter(peft_model, OUT)
    peft_model.eval()
    with torch.no_grad():
        tensors["lora.logits"] = peft_model(text_ids).logits[0].contiguous()
    peft_model.train()
    loss = loss_fn(peft_model(ids_t).logits, labels_t)
    loss.backward()
    tensors["lora.loss"] = loss.detach().reshape(1)
    lora_params = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    for name, p in lora_params.items():
        tensors["lora.grad." + name] = p.grad.contiguous()
    opt = torch.optim.AdamW(lora_params.values(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WD)
    opt.step()
    for name, p in lora_params.items():
        tensors["lora.after_step." + name] = p.detach().contiguous()

    save_file(tensors, os.path.join(OUT, "reference.safetensors"))
    dora(ids_t, labels_t, text_ids)
    prefix(ids_t, labels_t, text_ids)
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump({"input_ids": ids, "labels": labels, "text_ids": text_ids[0].tolist(), "lr": LR, "weight_decay": WD,
                   "betas": BETAS, "eps": EPS, "r": 4, "lora_alpha": 8, "target_modules": TARGETS}, f, indent=1)
    size = sum(os.path.getsize(os.path.join(OUT, x)) for x in os.listdir(OUT))
    print(f"lora loss {tensors['lora.loss'].item():.6f}, full loss {tensors['full.loss'].item():.6f}, fixture {size/1024:.0f} KiB")


def save_adapter(peft_model, out):
    peft_model.save_pretrained(out)
    os.remove(os.path.join(out, "README.md"))  # PEFT's model card template
    with open(os.path.join(out, "adapter_config.json")) as f:
        adapter_config = json.load(f)
    adapter_config["base_model_name_or_path"] = "deepfeed-model/tests/fixtures/llama"  # not this machine's path
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump(adapter_config, f, indent=2, sort_keys=True)


def dora(ids_t, labels_t, text_ids):
    """DoRA: LoRA with a learned magnitude per output row (Liu et al. 2024), as PEFT computes it."""
    os.makedirs(OUT_DORA, exist_ok=True)
    model = LlamaForCausalLM.from_pretrained(BASE, dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], use_dora=True, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif "magnitude" in name:
                p.mul_(1 + 0.1 * torch.randn(p.shape, generator=g))
    save_adapter(peft_model, OUT_DORA)
    tensors = {}
    peft_model.eval()
    with torch.no_grad():
        tensors["logits"] = peft_model(text_ids).logits[0].contiguous()
    peft_model.train()
    loss = loss_fn(peft_model(ids_t).logits, labels_t)
    loss.backward()
    tensors["loss"] = loss.detach().reshape(1)
    for name, p in peft_model.named_parameters():
        if p.requires_grad:
            tensors["grad." + name] = p.grad.contiguous()
    save_file(tensors, os.path.join(OUT_DORA, "reference.safetensors"))
    print(f"dora loss {tensors['loss'].item():.6f}")


def prefix(ids_t, labels_t, text_ids):
    """Prefix tuning (Li & Liang 2021): learned keys/values per layer, PEFT layout."""
    from peft import PrefixTuningConfig

    os.makedirs(OUT_PREFIX, exist_ok=True)
    model = LlamaForCausalLM.from_pretrained(BASE, dtype=torch.float32)
    peft_model = get_peft_model(model, PrefixTuningConfig(num_virtual_tokens=5, task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    save_adapter(peft_model, OUT_PREFIX)
    tensors = {}
    peft_model.eval()
    with torch.no_grad():
        tensors["logits"] = peft_model(input_ids=text_ids).logits[0].contiguous()
    peft_model.train()
    loss = loss_fn(peft_model(input_ids=ids_t).logits, labels_t)
    loss.backward()
    tensors["loss"] = loss.detach().reshape(1)
    (name, p), = [(n, p) for n, p in peft_model.named_parameters() if p.requires_grad]
    tensors["grad.prompt_embeddings"] = p.grad.contiguous()
    save_file(tensors, os.path.join(OUT_PREFIX, "reference.safetensors"))
    print(f"prefix loss {tensors['loss'].item():.6f} ({name} {tuple(p.shape)})")


if __name__ == "__main__":
    main()
