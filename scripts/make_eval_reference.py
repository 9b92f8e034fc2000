#!/usr/bin/env python3
"""Reference values for deepfeed-eval's tests, computed by PyTorch + transformers, rouge-score,
sacrebleu, nltk and jieba — independently of the Rust code.

Writes crates/deepfeed-eval/tests/fixtures/:
  eval_ppl.jsonl, eval_mc.jsonl   evaluation records (pair, chat, text; multiple choice)
  reference.json                  per-record target NLL (transformers, llama fixture model of
                                  crates/deepfeed-model/tests/fixtures/llama), windowed perplexity
                                  of a text, option log-likelihoods and the accuracy they give,
                                  ROUGE-1/2/L F1 (rouge-score) and BLEU-4 (sacrebleu, nltk) on a
                                  Chinese+English fixture, and the python-jieba tokens.

Protocol mirrored from docs/eval.md: prompt = chat template over the context with the generation
prompt; answer = what the template adds for the final assistant turn (EOS appended if missing);
both tokenized separately without special tokens; only answer tokens are scored. Multiple choice
scores the answer text cut after the option (no end-of-turn), acc = argmax loglik, acc_norm =
argmax loglik / UTF-8 bytes of the continuation.

Usage: /root/venv-ref/bin/python scripts/make_eval_reference.py
"""
import json
import math
import os

import jieba
import nltk.translate.bleu_score as nltk_bleu
import sacrebleu
import torch
from rouge_score import rouge_scorer
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "crates", "deepfeed-model", "tests", "fixtures", "llama")
OUT = os.path.join(ROOT, "crates", "deepfeed-eval", "tests", "fixtures")

PPL_RECORDS = [
    {"input_text": "What is the capital of France?", "target_text": "The capital of France is Paris."},
    {"input_text": "请问你是谁？", "target_text": "我是一个智能助手，很高兴为你服务。"},
    {"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Summarise the report."},
                  {"role": "assistant", "content": "Sales grew by 12%."}, {"role": "user", "content": "今天天气怎么样？"},
                  {"role": "assistant", "content": "今天天气很好，我们去公园散步吧。"}]},
    {"text": "Fine-tuning with LoRA trains a small adapter. 训练数据包括业务文档和聊天记录。"},
]
MC_RECORDS = [
    {"input_text": "What is the capital of France?", "metadata": {"eval": {"choices": ["Paris", "Rome", "Berlin"], "answer": 0, "task": "mc"}}},
    {"input_text": "今天天气怎么样？", "metadata": {"eval": {"choices": ["很好", "我们去公园散步吧", "不知道"], "answer": 1, "task": "mc"}}},
    {"input_text": "Which number is largest?", "metadata": {"eval": {"choices": ["3", "100", "42", "7"], "answer": 1, "task": "mc"}}},
    {"input_text": "Who are you?", "metadata": {"eval": {"choices": ["a smart assistant", "a fox", "the lazy dog"], "answer": 0, "task": "mc"}}},
    {"input_text": "训练数据包括什么？", "metadata": {"eval": {"choices": ["业务文档", "天气", "公园"], "answer": 0, "task": "mc"}}},
]
WINDOW_TEXT = ("The quick brown fox jumps over the lazy dog. 深度求索的模型可以学习你的数据。" * 3).strip()
WINDOW = (64, 24)  # context, stride
OVERLAP_PAIRS = [
    ("The capital of France is Paris.", "Paris is the capital of France."),
    ("我们的公司使用本地部署的大模型处理客户服务。", "公司使用大模型处理客户服务和内部文档。"),
    ("Sales grew by 12% in the third quarter, driven by exports.", "Sales grew 12% in the third quarter."),
    ("今天天气很好，我们去公园散步吧。", "今天天气不错，去公园吧。"),
    ("训练数据包括业务文档、聊天记录和领域知识。", "训练数据包括聊天记录和业务文档。"),
    ("DeepSeek 模型可以学习你的数据 and answer questions.", "DeepSeek模型学习你的数据, then answers questions."),
    ("Fine-tuning with LoRA trains a small adapter.", "LoRA fine-tuning trains a small adapter while the base stays frozen."),
    ("敏感信息在存储之前会被脱敏处理。", "完全不相关的回答。"),
]


def segment(text):
    """Han runs (jieba's U+4E00–U+9FD5) through jieba with HMM; other runs of letters/digits."""
    out, word, han = [], "", ""
    for c in text.lower():
        if "\u4e00" <= c <= "\u9fd5":
            if word:
                out.append(word)
                word = ""
            han += c
        else:
            if han:
                out.extend(jieba.lcut(han, HMM=True))
                han = ""
            if c.isalnum():
                word += c
            elif word:
                out.append(word)
                word = ""
    if word:
        out.append(word)
    if han:
        out.extend(jieba.lcut(han, HMM=True))
    return out


class Whitespace:
    def tokenize(self, text):
        return text.split()


def main():
    os.makedirs(OUT, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    eos = tok.eos_token_id

    def enc(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    def nll_all(ids):
        """NLL of ids[1:], one full pass."""
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double()
        logp = torch.log_softmax(logits[:-1], dim=-1)
        return [-logp[i, ids[i + 1]].item() for i in range(len(ids) - 1)]

    def answer_piece(context, answer):
        prompt = tok.apply_chat_template(context, add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(context + [{"role": "assistant", "content": answer}], tokenize=False)
        assert full.startswith(prompt)
        return prompt, full[len(prompt):]

    def split(rec):
        if "messages" in rec:
            return rec["messages"][:-1], rec["messages"][-1]["content"]
        return [{"role": "user", "content": rec["input_text"]}], rec.get("target_text")

    ppl = []
    total, count = 0.0, 0
    for rec in PPL_RECORDS:
        if "text" in rec:
            ids = tok(rec["text"])["input_ids"]
            scored = [False] + [True] * (len(ids) - 1)
        else:
            context, answer = split(rec)
            prompt, piece = answer_piece(context, answer)
            p, a = enc(prompt), enc(piece)
            ids = p + a
            scored = [False] * len(p) + [True] * len(a)
            if ids[-1] != eos:
                ids.append(eos)
                scored.append(True)
        nll = nll_all(ids)
        s = sum(n for n, sc in zip(nll, scored[1:]) if sc)
        c = sum(scored[1:])
        ppl.append({"nll": s, "tokens": c, "ids": ids})
        total += s
        count += c

    # windowed perplexity of one text (context, stride as in deepfeed's perplexity.rs)
    ids = tok(WINDOW_TEXT)["input_ids"]
    win_context, win_stride = WINDOW
    step = max(1, min(win_stride, win_context - 1))
    wsum, wcount, first = 0.0, 0, 1
    while first < len(ids):
        end = min(first + step, len(ids))
        begin = min(max(0, end - win_context), first - 1)
        nll = nll_all(ids[begin:end])
        for j in range(first, end):
            wsum += nll[j - begin - 1]
            wcount += 1
        first = end

    mc = []
    correct = correct_norm = 0
    for rec in MC_RECORDS:
        e = rec["metadata"]["eval"]
        context = [{"role": "user", "content": rec["input_text"]}]
        prompt = tok.apply_chat_template(context, add_generation_prompt=True, tokenize=False)
        p = enc(prompt)
        lls, nbytes = [], []
        for choice in e["choices"]:
            _, piece = answer_piece(context, choice)
            cont = piece[: piece.rfind(choice) + len(choice)]
            ids = p + enc(cont)
            nll = nll_all(ids)
            lls.append(-sum(nll[len(p) - 1:]))
            nbytes.append(len(cont.encode("utf-8")))
        pick = max(range(len(lls)), key=lambda i: lls[i])
        pick_norm = max(range(len(lls)), key=lambda i: lls[i] / nbytes[i])
        correct += pick == e["answer"]
        correct_norm += pick_norm == e["answer"]
        mc.append({"loglik": lls, "bytes": nbytes, "pick": pick, "pick_norm": pick_norm})

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=Whitespace())
    pairs = []
    for target, pred in OVERLAP_PAIRS:
        t, p = segment(target), segment(pred)
        s = scorer.score(" ".join(t), " ".join(p))
        sent = sacrebleu.sentence_bleu(" ".join(p), [" ".join(t)], tokenize="none").score
        pairs.append({"target": target, "prediction": pred, "target_tokens": t, "prediction_tokens": p,
                      "rouge1": s["rouge1"].fmeasure, "rouge2": s["rouge2"].fmeasure, "rougeL": s["rougeL"].fmeasure,
                      "sentence_bleu": sent})
    hyps = [" ".join(x["prediction_tokens"]) for x in pairs]
    refs = [" ".join(x["target_tokens"]) for x in pairs]
    corpus_bleu = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none").score
    nltk_corpus = 100 * nltk_bleu.corpus_bleu([[x["target_tokens"]] for x in pairs], [x["prediction_tokens"] for x in pairs])

    with open(os.path.join(OUT, "eval_ppl.jsonl"), "w", encoding="utf-8") as f:
        for r in PPL_RECORDS:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(os.path.join(OUT, "eval_mc.jsonl"), "w", encoding="utf-8") as f:
        for r in MC_RECORDS:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    ref = {
        "model": "crates/deepfeed-model/tests/fixtures/llama",
        "perplexity": {"records": ppl, "nll_sum": total, "tokens": count, "perplexity": math.exp(total / count)},
        "window": {"text": WINDOW_TEXT, "context": win_context, "stride": win_stride, "tokens": wcount, "perplexity": math.exp(wsum / wcount)},
        "multiple_choice": {"records": mc, "acc": correct / len(mc), "acc_norm": correct_norm / len(mc)},
        "overlap": {"pairs": pairs,
                    "rouge1": sum(x["rouge1"] for x in pairs) / len(pairs),
                    "rouge2": sum(x["rouge2"] for x in pairs) / len(pairs),
                    "rougeL": sum(x["rougeL"] for x in pairs) / len(pairs),
                    "corpus_bleu": corpus_bleu, "nltk_corpus_bleu": nltk_corpus},
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__,
                     "sacrebleu": sacrebleu.__version__, "jieba": jieba.__version__,
                     "rouge_score": "rouge-score", "nltk": __import__("nltk").__version__},
    }
    with open(os.path.join(OUT, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, ensure_ascii=False, indent=1)
    print(f"perplexity {ref['perplexity']['perplexity']:.6f} over {count} tokens; window ppl {ref['window']['perplexity']:.6f}")
    print(f"mc acc {ref['multiple_choice']['acc']} acc_norm {ref['multiple_choice']['acc_norm']}; "
          f"rougeL {ref['overlap']['rougeL']:.4f}; bleu {corpus_bleu:.4f} (nltk {nltk_corpus:.4f})")


if __name__ == "__main__":
    main()
