//! The tokenizer embedded in a GGUF file (`tokenizer.ggml.*`), rebuilt as a `tokenizers::Tokenizer`
//! the way transformers does it (`integrations/gguf/gguf_tokenizer_mapping.py`), so that a GGUF
//! model tokenizes exactly like `AutoTokenizer.from_pretrained(..., gguf_file=...)` and llama.cpp:
//!
//! - `gpt2` (byte-level BPE: DeepSeek, Qwen, Llama 3): tokens + merges from the file; the split
//!   regex chosen by `tokenizer.ggml.pre` (`llama-bpe`, `qwen2`, `deepseek-r1-qwen`, `deepseek-llm`,
//!   otherwise GPT-2's), then byte-level.
//! - `llama` (SentencePiece-style BPE: Llama 2, Gemma): tokens + scores, merges recovered from the
//!   vocabulary (a GGUF stores none), byte fallback (`<0x0A>` tokens), `▁` for spaces. Gemma orders
//!   merges by token position (its scores do not follow the merge order) and stores runs of
//!   spaces as real spaces, renamed to `▁…` first.
//!
//! Control tokens (type 3) become special added tokens, user-defined ones (type 4) plain added
//! tokens, so both stay whole (unlike transformers, which drops byte-level control tokens spelled
//! outside the byte alphabet, such as DeepSeek's `<｜begin▁of▁sentence｜>`; llama.cpp keeps them). The tokenizer is described as tokenizer.json and parsed by the
//! `tokenizers` crate: one well-tested code path instead of hand-assembled components.
use std::collections::HashMap;

use serde_json::{json, Value};

use super::GgufFile;
use crate::error::{ModelError, Result};
use crate::tokenizer::TextTokenizer;

const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// `tokenizer.ggml.pre` → split regex (llama.cpp `llama-vocab.cpp` / transformers' table).
fn split_regex(pre: &str) -> Option<&'static str> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "dbrx" | "smaug-bpe" => Some(LLAMA3),
        "qwen2" | "deepseek-r1-qwen" | "megrez" => Some(QWEN2),
        _ => None,
    }
}

/// llama.cpp's `deepseek-llm` pre-tokenizer: a sequence of isolated splits, then byte-level
/// (deepseek-llm-7b's tokenizer.json has exactly these).
fn deepseek_llm_pre_tokenizer() -> Value {
    let splits = [
        r"[\r\n]",
        r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
        r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
        r"\s+$",
        r"[一-龥ࠀ-一가-퟿]+",
        r"\p{N}+",
    ];
    let mut seq: Vec<Value> = splits
        .iter()
        .map(|r| json!({"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": false}))
        .collect();
    seq.push(json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}));
    json!({"type": "Sequence", "pretokenizers": seq})
}

/// GPT-2's byte → printable character table (`bytes_to_unicode`).
fn byte_alphabet() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable = (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        table[b as usize] = if printable {
            char::from_u32(b).unwrap()
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap()
        };
    }
    table
}

/// transformers' `generate_merges` for SentencePiece vocabularies: every way to cut a token into
/// two tokens of the vocabulary is a merge, ranked by the merged token's `rank` (lower first),
/// then by longer left part first.
fn merges_from_vocab(vocab: &HashMap<String, u32>, rank: impl Fn(&str, u32) -> f64) -> Vec<(String, String)> {
    let mut merged: Vec<(&String, u32)> = vocab.iter().map(|(t, &i)| (t, i)).collect();
    merged.sort_by(|a, b| rank(a.0, a.1).total_cmp(&rank(b.0, b.1)).then(a.1.cmp(&b.1)));
    let mut out = Vec::new();
    for (token, _) in merged {
        let cuts: Vec<usize> = token.char_indices().map(|(i, _)| i).skip(1).collect();
        for &cut in cuts.iter().rev() {
            let (l, r) = token.split_at(cut);
            if vocab.contains_key(l) && vocab.contains_key(r) {
                out.push((l.to_string(), r.to_string()));
            }
        }
    }
    out
}

fn added_token(id: usize, content: &str, special: bool) -> Value {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
           "normalized": false, "special": special})
}

/// Builds the tokenizer of `f` (see the module docs).
pub fn tokenizer_from_gguf(f: &GgufFile) -> Result<TextTokenizer> {
    let err = |m: String| ModelError::Gguf { path: f.path.clone(), message: m };
    let kind = f.require("tokenizer.ggml.model", "a string", |v| v.as_str().map(String::from))?;
    let tokens: Vec<String> = f
        .get_str_array("tokenizer.ggml.tokens")
        .ok_or_else(|| err("metadata key `tokenizer.ggml.tokens` missing (expected an array of strings)".into()))?
        .to_vec();
    let types = f.get_i64_array("tokenizer.ggml.token_type").unwrap_or_default();
    if !types.is_empty() && types.len() != tokens.len() {
        return Err(err(format!("tokenizer.ggml.token_type has {} entries for {} tokens", types.len(), tokens.len())));
    }
    let arch = f.architecture().unwrap_or("").to_string();
    let pre = f.get_str("tokenizer.ggml.pre").unwrap_or("default").to_string();
    let special_id = |key: &str| f.get_u32(&format!("tokenizer.ggml.{key}")).filter(|&i| (i as usize) < tokens.len());
    let (bos_id, eos_id, unk_id, pad_id) =
        (special_id("bos_token_id"), special_id("eos_token_id"), special_id("unknown_token_id"), special_id("padding_token_id"));

    let gemma = arch.starts_with("gemma");
    let (vocab_tokens, model, normalizer, pre_tokenizer, decoder) = match kind.as_str() {
        "gpt2" => {
            let alphabet = byte_alphabet();
            let allowed: std::collections::HashSet<char> = alphabet.iter().copied().collect();
            // tokens are stored byte-level spelled; control and user-defined ones (DeepSeek's
            // `<｜begin▁of▁sentence｜>`) as plain text, matched whole as llama.cpp does; a few files
            // store some normal tokens in plain text too
            let spelled: Vec<String> = tokens
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let added = matches!(types.get(i), Some(&CONTROL) | Some(&USER_DEFINED));
                    if added || t.chars().all(|c| allowed.contains(&c)) {
                        t.clone()
                    } else {
                        t.bytes().map(|b| alphabet[b as usize]).collect()
                    }
                })
                .collect();
            let merges: Vec<Value> = f
                .get_str_array("tokenizer.ggml.merges")
                .ok_or_else(|| err("metadata key `tokenizer.ggml.merges` missing (a gpt2 tokenizer needs its merges)".into()))?
                .iter()
                .map(|m| {
                    let (l, r) = m.split_once(' ').ok_or_else(|| err(format!("merge {m:?}: expected two tokens separated by a space")))?;
                    Ok(json!([l, r]))
                })
                .collect::<Result<_>>()?;
            let vocab: serde_json::Map<String, Value> = spelled.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
            let model = json!({"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merges});
            let pre_tok = if pre == "deepseek-llm" {
                deepseek_llm_pre_tokenizer()
            } else {
                match split_regex(&pre) {
                    Some(r) => json!({"type": "Sequence", "pretokenizers": [
                        {"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": false},
                        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}),
                    None => json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}),
                }
            };
            let decoder = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true});
            (spelled, model, Value::Null, pre_tok, decoder)
        }
        "llama" => {
            // Gemma stores runs of spaces as spaces; GemmaTokenizer looks them up as ▁▁…
            let respelled: Vec<String> = tokens
                .iter()
                .map(|t| if gemma && t.contains(' ') && t.trim().is_empty() { "▁".repeat(t.chars().count()) } else { t.clone() })
                .collect();
            let mut vocab_ids: HashMap<String, u32> = HashMap::with_capacity(respelled.len());
            for (i, t) in respelled.iter().enumerate() {
                vocab_ids.insert(t.clone(), i as u32);
            }
            let merges = if gemma {
                merges_from_vocab(&vocab_ids, |_, id| id as f64)
            } else {
                let scores = f
                    .get_f32_array("tokenizer.ggml.scores")
                    .ok_or_else(|| err("metadata key `tokenizer.ggml.scores` missing (a llama tokenizer needs its scores)".into()))?;
                if scores.len() != tokens.len() {
                    return Err(err(format!("tokenizer.ggml.scores has {} entries for {} tokens", scores.len(), tokens.len())));
                }
                merges_from_vocab(&vocab_ids, |_, id| -(scores[id as usize] as f64))
            };
            let vocab: serde_json::Map<String, Value> = vocab_ids.iter().map(|(t, &i)| (t.clone(), json!(i))).collect();
            let unk = unk_id.map(|i| respelled[i as usize].clone());
            let model = json!({"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                "vocab": vocab, "merges": merges.iter().map(|(l, r)| json!([l, r])).collect::<Vec<_>>()});
            let byte_decoders = vec![
                json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}),
                json!({"type": "ByteFallback"}),
                json!({"type": "Fuse"}),
            ];
            if gemma {
                // GemmaTokenizer: spaces become ▁, no prefix space
                let normalizer = json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"});
                let pre_tok = json!({"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false});
                (respelled, model, normalizer, pre_tok, json!({"type": "Sequence", "decoders": byte_decoders}))
            } else {
                // LlamaTokenizer (legacy=False): Metaspace, ▁ prepended to the first word
                let prefix = f.get_bool("tokenizer.ggml.add_space_prefix").unwrap_or(true);
                let pre_tok = json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": if prefix { "first" } else { "never" }, "split": false});
                let mut decoders = byte_decoders;
                if prefix {
                    decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
                }
                (respelled, model, Value::Null, pre_tok, json!({"type": "Sequence", "decoders": decoders}))
            }
        }
        other => {
            return Err(err(format!(
                "tokenizer.ggml.model {other:?} is not supported (expected \"gpt2\" for byte-level BPE or \"llama\" for SentencePiece)"
            )))
        }
    };

    // control tokens: special; user-defined: added (kept whole) when spelled as in the vocabulary
    let mut added = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match types.get(i) {
            Some(&CONTROL) => added.push(added_token(i, t, true)),
            Some(&USER_DEFINED) if vocab_tokens[i] == *t => added.push(added_token(i, t, false)),
            _ => {}
        }
    }
    let json = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": normalizer, "pre_tokenizer": pre_tokenizer, "post_processor": null, "decoder": decoder, "model": model,
    });
    let inner = tokenizers::Tokenizer::from_bytes(serde_json::to_vec(&json).expect("JSON"))
        .map_err(|e| err(format!("building the tokenizer from tokenizer.ggml.*: {e}")))?;

    let name = |id: Option<u32>| id.map(|i| tokens[i as usize].clone());
    let template = f.get_str("tokenizer.chat_template").map(String::from);
    // llama.cpp adds BOS to SentencePiece vocabularies that do not say otherwise
    let add_bos = f.get_bool("tokenizer.ggml.add_bos_token").unwrap_or(kind == "llama");
    TextTokenizer::from_parts(
        inner,
        f.path.clone(),
        name(bos_id),
        name(eos_id),
        bos_id,
        eos_id.into_iter().collect(),
        pad_id,
        add_bos,
        template,
    )
}
