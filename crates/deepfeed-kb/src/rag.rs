//! Retrieval-augmented prompts: retrieved passages go into the user turn through a template,
//! within a token budget, numbered so the answer can cite them; the citations (source, page)
//! come back next to the prompt for the caller to print or return (the server adds them as an
//! extra response field).
use deepfeed_model::ChatMessage;

use crate::retrieve::Hit;

/// `{passages}` and `{question}` are replaced.
pub const DEFAULT_TEMPLATE: &str = "Use the numbered passages below to answer the question. Cite the passages you use as [1], [2]. \
If they do not contain the answer, say so.\n\n{passages}\n\nQuestion: {question}";

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Citation {
    /// The number the passage has in the prompt ([1], [2], ...).
    pub n: usize,
    pub source: String,
    pub page: Option<u64>,
    pub chunk: Option<u64>,
    pub score: f32,
}

impl std::fmt::Display for Citation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.n, self.source)?;
        if let Some(p) = self.page {
            write!(f, ", page {p}")?;
        }
        if let Some(c) = self.chunk {
            write!(f, ", chunk {c}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct RagPrompt {
    /// The user turn to send instead of the bare question.
    pub user_message: ChatMessage,
    /// One per passage that made it into the prompt, in prompt order.
    pub citations: Vec<Citation>,
    /// Tokens the passages take (by the counter given).
    pub passage_tokens: usize,
}

/// Builds the user turn for `question` from `hits` (best first), adding passages while their
/// tokens (counted by `count_tokens`) stay within `budget`. A first passage longer than the
/// whole budget is cut to fit, so a question always gets some context when there is any.
pub fn build_prompt(question: &str, hits: &[Hit], template: &str, budget: usize, count_tokens: &dyn Fn(&str) -> usize) -> RagPrompt {
    let mut passages = String::new();
    let mut citations = Vec::new();
    let mut used = 0;
    for hit in hits {
        let n = citations.len() + 1;
        let mut header = format!("[{n}] ({}", hit.source);
        if let Some(p) = hit.page {
            header.push_str(&format!(", page {p}"));
        }
        header.push(')');
        let mut block = format!("{header}\n{}\n\n", hit.text.trim());
        let mut cost = count_tokens(&block);
        if used + cost > budget {
            if !citations.is_empty() {
                break;
            }
            // cut the first passage (by characters, proportionally, then re-checked)
            let chars: Vec<char> = hit.text.trim().chars().collect();
            let mut keep = chars.len() * budget.saturating_sub(count_tokens(&header) + 2) / cost.max(1);
            loop {
                block = format!("{header}\n{}…\n\n", chars[..keep.min(chars.len())].iter().collect::<String>());
                cost = count_tokens(&block);
                if cost <= budget || keep == 0 {
                    break;
                }
                keep = keep * 9 / 10;
            }
            if cost > budget {
                break;
            }
        }
        used += cost;
        passages.push_str(&block);
        citations.push(Citation { n, source: hit.source.clone(), page: hit.page, chunk: hit.chunk, score: hit.score });
    }
    let content = template.replace("{passages}", passages.trim_end()).replace("{question}", question);
    RagPrompt { user_message: ChatMessage::new("user", &content), citations, passage_tokens: used }
}

/// "Sources:" and one line per citation.
pub fn format_citations(citations: &[Citation]) -> String {
    let mut s = String::from("Sources:");
    for c in citations {
        s.push_str(&format!("\n  {c}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn hit(source: &str, page: Option<u64>, text: &str) -> Hit {
        Hit { chunk_id: 1, score: 1.0, doc_id: source.into(), source: source.into(), page, chunk: Some(0), text: text.into(), metadata: Value::Null, bm25_rank: None, vector_rank: None }
    }

    #[test]
    fn passages_are_numbered_cited_and_kept_within_the_budget() {
        let words = |s: &str| s.split_whitespace().count();
        let hits = vec![hit("a.md", Some(3), "alpha beta gamma"), hit("b.md", None, "delta epsilon"), hit("c.md", None, &"long ".repeat(100))];
        let p = build_prompt("what?", &hits, DEFAULT_TEMPLATE, 20, &words);
        assert_eq!(p.citations.len(), 2, "the third passage does not fit 20 words");
        assert!(p.user_message.content.contains("[1] (a.md, page 3)\nalpha beta gamma"));
        assert!(p.user_message.content.contains("[2] (b.md)\ndelta epsilon"));
        assert!(p.user_message.content.ends_with("Question: what?"));
        assert!(p.passage_tokens <= 20);
        assert_eq!(format_citations(&p.citations), "Sources:\n  [1] a.md, page 3, chunk 0\n  [2] b.md, chunk 0");
        // a first passage larger than the budget is cut, not dropped
        let p = build_prompt("q", &hits[2..], "{passages}", 30, &words);
        assert_eq!(p.citations.len(), 1);
        assert!(p.passage_tokens <= 30 && p.passage_tokens > 10, "{}", p.passage_tokens);
    }
}
