//! Tokens for BM25: Chinese runs are cut into words by jieba (search mode, which also offers the
//! shorter words inside long compounds), everything else is lower-cased and split at
//! non-alphanumeric characters. A short list of function words (English and Chinese) is dropped.
//! The same function tokenizes chunks when they are stored (SQLite FTS5 holds the space-joined
//! tokens and ranks with its built-in Okapi BM25) and queries when they are searched.
use std::sync::LazyLock;

use jieba_rs::Jieba;

static JIEBA: LazyLock<Jieba> = LazyLock::new(Jieba::new);

const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "did", "do", "does", "for", "from", "has", "have", "how", "in", "is", "it", "its", "of", "on",
    "or", "that", "the", "to", "was", "were", "what", "when", "where", "which", "who", "why", "with", "的", "是", "了", "吗", "呢", "在", "和", "什么",
    "哪", "哪个", "哪里", "多少", "几", "请问", "吧", "啊",
];

/// CJK ideographs (the BMP blocks and Extension A), where words are not separated by spaces.
pub fn is_cjk(c: char) -> bool {
    matches!(c, '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}')
}

/// BM25 tokens of `text`, in order (repeats kept: they are term frequencies).
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |t: String| {
        if !t.is_empty() && !STOP_WORDS.contains(&t.as_str()) {
            out.push(t);
        }
    };
    let mut run = String::new();
    let mut run_cjk = false;
    let flush = |run: &mut String, cjk: bool, push: &mut dyn FnMut(String)| {
        if run.is_empty() {
            return;
        }
        if cjk {
            for tok in JIEBA.cut_for_search(run, true) {
                push(tok.word.to_string());
            }
        } else {
            for w in run.split(|c: char| !c.is_alphanumeric()) {
                push(w.to_lowercase());
            }
        }
        run.clear();
    };
    for c in text.chars() {
        let cjk = is_cjk(c);
        if !run.is_empty() && cjk != run_cjk {
            flush(&mut run, run_cjk, &mut push);
        }
        run_cjk = cjk;
        run.push(c);
    }
    flush(&mut run, run_cjk, &mut push);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_words_are_lowercased_and_stop_words_dropped() {
        assert_eq!(tokens("What is the WARRANTY of model X-200?"), vec!["warranty", "model", "x", "200"]);
    }

    #[test]
    fn chinese_is_cut_into_words_and_mixed_text_split_at_script_changes() {
        let t = tokens("退货政策是什么？iPhone保修期");
        assert!(t.contains(&"退货".to_string()) && t.contains(&"政策".to_string()), "{t:?}");
        assert!(t.contains(&"iphone".to_string()) && t.contains(&"保修期".to_string()), "{t:?}");
        assert!(!t.contains(&"是".to_string()) && !t.iter().any(|x| x.contains('？')), "{t:?}");
    }
}
