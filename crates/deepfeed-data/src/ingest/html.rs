//! HTML to text with html2text: script and style dropped, headings kept as Markdown `#` lines
//! (so chunks start at them), tables without borders, no line wrapping. The encoding comes from
//! a `<meta charset>` / `content="…; charset=…"` in the first 2 KiB, else it is sniffed.
use std::path::Path;

use encoding_rs::Encoding;
use regex::Regex;
use serde_json::Map;

use super::{read_whole, text, Sink};

/// The charset a page declares in its first 2 KiB.
fn declared_charset(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(2048)]).to_ascii_lowercase();
    let i = head.find("charset=")? + "charset=".len();
    let label: String = head[i..].trim_start_matches(['"', '\'']).chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    Encoding::for_label(label.as_bytes())
}

/// Page bytes to UTF-8 text (BOM, declared charset, else sniffed).
pub fn decode_page(bytes: &[u8], content_type: Option<&str>) -> String {
    if Encoding::for_bom(bytes).is_none() {
        let from_header = content_type.and_then(|c| c.to_ascii_lowercase().split("charset=").nth(1).and_then(|l| Encoding::for_label(l.trim().as_bytes())));
        if let Some(enc) = from_header.or_else(|| declared_charset(bytes)) {
            return enc.decode_without_bom_handling(bytes).0.into_owned();
        }
    }
    text::decode(bytes).0
}

/// HTML (UTF-8) to plain text with Markdown-style headings.
pub fn html_to_text(html: &str) -> Result<String, String> {
    let text = html2text::config::plain()
        .link_footnotes(false)
        .no_table_borders()
        .no_link_wrapping()
        .allow_width_overflow()
        .string_from_read(html.as_bytes(), 100_000)
        .map_err(|e| format!("HTML could not be converted: {e}"))?;
    // lines of the fixed-width layout: strip trailing spaces
    Ok(text.lines().map(str::trim_end).collect::<Vec<_>>().join("\n"))
}

/// The `href` targets of the page's `<a>` links, as written (entities `&amp;` undone).
pub fn links(html: &str) -> Vec<String> {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r#"(?is)<a\s[^>]*?href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))"#).expect("static regex"));
    re.captures_iter(html)
        .filter_map(|c| c.get(1).or(c.get(2)).or(c.get(3)))
        .map(|m| m.as_str().trim().replace("&amp;", "&"))
        .collect()
}

pub fn read(path: &Path, sink: &mut Sink) -> Result<(), String> {
    let bytes = read_whole(path, &sink.options().limits)?;
    let page = decode_page(&bytes, None);
    let text = html_to_text(&page)?;
    sink.chunks(&text, Map::new(), None)
}
