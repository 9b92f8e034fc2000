#!/usr/bin/env python3
"""Reference fixtures for deepfeed's model parity tests, computed by PyTorch + transformers.

For each architecture (llama, qwen2, qwen3, gemma3, deepseek_v2, deepseek_v3) this script
  1. trains (once) a small byte-level BPE tokenizer on a fixed English + Chinese corpus, with the
     DeepSeek special tokens, so fixtures stay small (vocab 512 instead of DeepSeek's 129k);
  2. builds a tiny randomly initialised model with transformers and saves it in exact HF layout;
  3. writes the reference: logits for a fixed multilingual text (reference.safetensors), the token
     ids, mean NLL / perplexity and a 20-token greedy continuation of a chat prompt (reference.json).

Usage (writes crates/deepfeed-model/tests/fixtures/ and crates/deepfeed-model/assets/):
    python3 -m venv .venv-ref && .venv-ref/bin/pip install torch transformers tokenizers safetensors
    .venv-ref/bin/python scripts/make_reference.py            # all fixtures
    .venv-ref/bin/python scripts/make_reference.py gemma3     # only some (each arch has its own seed)
Run it again whenever a model file changes and commit what it writes (each fixture dir < 1 MB).
"""
import json
import math
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "crates", "deepfeed-model", "tests", "fixtures")
ASSETS = os.path.join(ROOT, "crates", "deepfeed-model", "assets")

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
# The deepseek-llm-chat template (tokenizer_config.json of deepseek-ai/deepseek-llm-7b-chat).
CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ 'User: ' + message['content'] + '\n\n' }}{% elif message['role'] == 'assistant' %}"
    "{{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}"
    "{{ message['content'] + '\n\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog. Hello world! This is a tiny corpus for a tiny tokenizer.",
    "DeepSeek models can learn from your own data: documents, chat logs and domain knowledge.",
    "Fine-tuning with LoRA trains a small adapter while the base weights stay frozen.",
    "User: What is the capital of France?\n\nAssistant: The capital of France is Paris.",
    "User: Summarise the report.\n\nAssistant: Sales grew by 12% in the third quarter, driven by exports.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 2024 3.14 and punctuation , . ; : ! ? ( ) [ ] { } \" ' - _ / \\ @ # $ % & * + =",
    "深度求索的模型可以学习你的数据。今天天气很好，我们去公园散步吧。",
    "人工智能正在改变世界。我们的公司使用本地部署的大模型处理客户服务和内部文档。",
    "请问你是谁？我是一个由深度求索公司开发的智能助手，很高兴为你服务。",
    "训练数据包括业务文档、聊天记录和领域知识。敏感信息在存储之前会被脱敏处理。",
    "<think>Let me think about this step by step.</think> The answer is 42. 答案是四十二。",
]
TEXT = (
    "Hello world! DeepSeek models learn from your data. 深度求索的模型可以学习你的数据。"
    "The quick brown fox jumps over the lazy dog. 今天天气很好，我们去公园散步吧。"
)
CHAT = [{"role": "user", "content": "你好, who are you?"}]


def train_tokenizer():
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    # <think> tags are ordinary added tokens in R1 models: kept when decoding.
    tok.add_tokens(["<think>", "</think>"])
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1", special_tokens=[(BOS, bos_id)]
    )
    return tok


def tokenizer_config():
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": {"__type": "AddedToken", "content": BOS, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
        "eos_token": {"__type": "AddedToken", "content": EOS, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
        "pad_token": PAD,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 4096,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    }


def build(arch, vocab, bos_id, eos_id):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    common = dict(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        rms_norm_eps=1e-6, bos_token_id=bos_id, eos_token_id=eos_id, initializer_range=0.15,
    )
    if arch == "llama":
        # deepseek-llm style, with llama3 rope scaling so the scaled path is covered
        cfg = LlamaConfig(**common, rope_theta=10000.0, tie_word_embeddings=False,
                          rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                        "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
        model = LlamaForCausalLM(cfg)
    elif arch == "qwen2":
        cfg = Qwen2Config(**common, rope_theta=1000000.0, tie_word_embeddings=False)
        model = Qwen2ForCausalLM(cfg)
    elif arch == "qwen3":
        cfg = Qwen3Config(**common, head_dim=32, rope_theta=1000000.0, tie_word_embeddings=True)
        model = Qwen3ForCausalLM(cfg)
    elif arch == "gemma3":
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig
        # 3 layers: sliding, full, sliding with a window of 8 tokens (shorter than the test text
        # and the greedy continuation), linear rope scaling on the full layer as Gemma 3 4B+ has,
        # a query_pre_attn_scalar != head_dim and both soft-cappings set (Gemma 2 style; transformers'
        # Gemma 3 applies only the final one) so that every switch of the decoder is exercised.
        common.update(num_hidden_layers=3)
        cfg = Gemma3TextConfig(
            **common, head_dim=32, query_pre_attn_scalar=24, sliding_window=8,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            },
            final_logit_softcapping=30.0, attn_logit_softcapping=50.0, tie_word_embeddings=True,
            hidden_activation="gelu_pytorch_tanh", pad_token_id=2,
        )
        cfg._attn_implementation = "eager"
        model = Gemma3ForCausalLM(cfg)
    elif arch == "deepseek_v2":
        from transformers import DeepseekV2Config, DeepseekV2ForCausalLM
        # MLA with a compressed query (q_lora_rank), YaRN with mscale != mscale_all_dim (so both the
        # rotary attention factor and the softmax mscale are exercised), 3 layers: dense, MoE, MoE;
        # 8 routed experts in 4 groups, group-limited greedy top-2 of 2 groups, 1 shared expert.
        common.update(num_hidden_layers=3, num_key_value_heads=4, intermediate_size=64)
        cfg = DeepseekV2Config(
            **common, q_lora_rank=48, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
            v_head_dim=16, moe_intermediate_size=16, n_routed_experts=8, n_shared_experts=1,
            num_experts_per_tok=2, first_k_dense_replace=1, topk_method="group_limited_greedy",
            n_group=4, topk_group=2, routed_scaling_factor=1.5, tie_word_embeddings=False,
            rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                             "original_max_position_embeddings": 32, "beta_fast": 32, "beta_slow": 1,
                             "mscale": 1.0, "mscale_all_dim": 0.707},
        )
        cfg._attn_implementation = "eager"
        model = DeepseekV2ForCausalLM(cfg)
    elif arch == "deepseek_v3":
        from transformers import DeepseekV3Config, DeepseekV3ForCausalLM
        # MLA without q compression (q_proj), interleaved rope, default rope; 3 layers: dense, MoE,
        # MoE; sigmoid router with a random e_score_correction_bias, noaux_tc over 2 groups
        # (top-1 group), top-2 of 8 experts, norm_topk_prob and routed_scaling_factor 2.5.
        common.update(num_hidden_layers=3, num_key_value_heads=4, intermediate_size=64)
        cfg = DeepseekV3Config(
            **common, q_lora_rank=None, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
            v_head_dim=16, moe_intermediate_size=16, n_routed_experts=8, n_shared_experts=1,
            num_experts_per_tok=2, first_k_dense_replace=1, n_group=2, topk_group=1,
            norm_topk_prob=True, routed_scaling_factor=2.5, rope_interleave=True,
            tie_word_embeddings=False, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        )
        cfg._attn_implementation = "eager"
        model = DeepseekV3ForCausalLM(cfg)
    else:
        raise ValueError(arch)
    # Random biases and norm weights too (HF initialises them to 0 / 1, which would hide bugs).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "norm" in name else 0.0))
        # DeepSeek-V3's router bias is a buffer, not a parameter
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(torch.randn_like(b) * 0.1)
    return model.eval()


def main():
    torch.manual_seed(0)
    os.makedirs(ASSETS, exist_ok=True)
    tok = train_tokenizer()
    tok_path = os.path.join(ASSETS, "tiny-tokenizer.json")
    tok.save(tok_path)
    with open(os.path.join(ASSETS, "tiny-tokenizer_config.json"), "w") as f:
        json.dump(tokenizer_config(), f, ensure_ascii=False, indent=2)

    from transformers import AutoTokenizer
    only = sys.argv[1:]
    for arch in ["llama", "qwen2", "qwen3", "gemma3", "deepseek_v2", "deepseek_v3"]:
        # own seed: these fixtures do not depend on the ones before them
        seeds = {"gemma3": 3, "deepseek_v2": 4, "deepseek_v3": 5}
        if arch in seeds:
            torch.manual_seed(seeds[arch])
        if only and arch not in only:
            continue
        out = os.path.join(FIXTURES, arch)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        shutil.copy(tok_path, os.path.join(out, "tokenizer.json"))
        with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
            json.dump(tokenizer_config(), f, ensure_ascii=False, indent=2)
        hf_tok = AutoTokenizer.from_pretrained(out)
        vocab = len(hf_tok)
        bos_id, eos_id = hf_tok.convert_tokens_to_ids(BOS), hf_tok.convert_tokens_to_ids(EOS)
        model = build(arch, vocab, bos_id, eos_id)
        if arch == "gemma3":
            assert model.config.sliding_window < len(hf_tok(TEXT)["input_ids"])
        model.save_pretrained(out, safe_serialization=True)

        ids = hf_tok(TEXT)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)
        nll = -logp[:-1].gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1)
        mean_nll = nll.mean().item()

        prompt = hf_tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
        prompt_ids = hf_tok(prompt, add_special_tokens=False)["input_ids"]
        seq, margins = list(prompt_ids), []
        with torch.no_grad():
            for _ in range(20):
                last = model(torch.tensor([seq])).logits[0, -1]
                top = torch.topk(last, 2).values
                margins.append((top[0] - top[1]).item())
                seq.append(int(last.argmax()))
        tensors = {"logits": logits.contiguous(), "token_nll": nll.contiguous()}
        if arch == "deepseek_v3":
            # the same weights with rotate-half rope (rope_interleave false), first 16 tokens
            model.config.rope_interleave = False
            with torch.no_grad():
                tensors["logits_rotate_half"] = model(torch.tensor([ids[:16]])).logits[0].float().contiguous()
            model.config.rope_interleave = True
        save_file(tensors, os.path.join(out, "reference.safetensors"))
        ref = {
            "generator": f"transformers {__import__('transformers').__version__}, torch {torch.__version__}",
            "text": TEXT, "input_ids": ids, "mean_nll": mean_nll, "perplexity": math.exp(mean_nll),
            "chat": CHAT, "chat_prompt": prompt, "chat_prompt_ids": prompt_ids,
            "greedy_ids": seq[len(prompt_ids):], "greedy_min_margin": min(margins),
        }
        with open(os.path.join(out, "reference.json"), "w") as f:
            json.dump(ref, f, ensure_ascii=False, indent=1)
        size = sum(os.path.getsize(os.path.join(out, x)) for x in os.listdir(out))
        print(f"{arch}: {len(ids)} tokens, ppl {math.exp(mean_nll):.4f}, greedy margin {min(margins):.4f}, "
              f"fixture {size/1024:.0f} KiB", file=sys.stderr)


if __name__ == "__main__":
    main()
