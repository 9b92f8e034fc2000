//! DeepSeek-R1 reasoning blocks: `<think> … </think>` before the answer. Kept intact by default;
//! [`ThinkFilter`] hides them from a stream of text chunks when asked.
pub const THINK_OPEN: &str = "<think>";
pub const THINK_CLOSE: &str = "</think>";

/// Removes `<think>…</think>` from streamed text. Tags may arrive split across chunks, so text
/// that could be the start of a tag is held back until the next chunk decides.
#[derive(Debug, Default)]
pub struct ThinkFilter {
    inside: bool,
    pending: String,
}

impl ThinkFilter {
    /// `starts_inside`: the prompt already opened the block (R1 templates end with `<think>\n`).
    pub fn new(starts_inside: bool) -> Self {
        ThinkFilter { inside: starts_inside, pending: String::new() }
    }

    /// Feeds a chunk; returns the visible text that is now certain.
    pub fn push(&mut self, chunk: &str) -> String {
        self.pending.push_str(chunk);
        let mut out = String::new();
        loop {
            let tag = if self.inside { THINK_CLOSE } else { THINK_OPEN };
            if let Some(i) = self.pending.find(tag) {
                if !self.inside {
                    out.push_str(&self.pending[..i]);
                }
                self.pending.drain(..i + tag.len());
                self.inside = !self.inside;
                continue;
            }
            // keep the longest tail that could still become `tag`
            let keep = (1..tag.len())
                .rev()
                .find(|&n| self.pending.len() >= n && self.pending.is_char_boundary(self.pending.len() - n) && tag.starts_with(&self.pending[self.pending.len() - n..]))
                .unwrap_or(0);
            let cut = self.pending.len() - keep;
            if !self.inside {
                out.push_str(&self.pending[..cut]);
            }
            self.pending.drain(..cut);
            return out;
        }
    }

    /// End of stream: whatever is held back is plain text (unless inside a block).
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        if self.inside { String::new() } else { rest }
    }
}

/// Removes the reasoning blocks from a whole text; leading whitespace of the answer is trimmed.
pub fn strip_think(text: &str, starts_inside: bool) -> String {
    let mut f = ThinkFilter::new(starts_inside);
    let mut out = f.push(text);
    out.push_str(&f.finish());
    out.trim_start().to_string()
}

/// Whether a rendered prompt leaves the model inside an open `<think>` block.
pub fn prompt_opens_think(prompt: &str) -> bool {
    match (prompt.rfind(THINK_OPEN), prompt.rfind(THINK_CLOSE)) {
        (Some(o), Some(c)) => o > c,
        (Some(_), None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_blocks_split_across_chunks() {
        let mut f = ThinkFilter::new(false);
        let mut out = String::new();
        for chunk in ["Hi <th", "ink>secret", " stuff</thi", "nk> answer <", "b>"] {
            out.push_str(&f.push(chunk));
        }
        out.push_str(&f.finish());
        assert_eq!(out, "Hi  answer <b>");
    }

    #[test]
    fn prompt_already_inside_block() {
        assert!(prompt_opens_think("<｜Assistant｜><think>\n"));
        assert!(!prompt_opens_think("<think>x</think>"));
        assert_eq!(strip_think("reasoning 思考</think>\n\n答案", true), "答案");
        assert_eq!(strip_think("no tags at all", false), "no tags at all");
    }
}
