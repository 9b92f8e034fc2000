//! PDF text with lopdf (`extract_text`, page by page; it reads CJK fonts with ToUnicode maps and
//! the standard Adobe CID encodings). Pages without a text layer (scans) go through OCR when
//! tesseract and pdftoppm are installed; otherwise they are noted, and a PDF with no text at all
//! is skipped with the install hint. A PDF the parser cannot read (truncated, encrypted) is
//! skipped with lopdf's reason.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use serde_json::json;

use super::{loc, ocr, read_whole, Sink};

/// Decompressed bytes one page's content may have (a guard against compression bombs).
const MAX_PAGE_CONTENT: usize = 256 << 20;

pub fn read(path: &Path, sink: &mut Sink) -> Result<(), String> {
    let bytes = read_whole(path, &sink.options().limits)?;
    if !bytes.starts_with(b"%PDF") && !bytes[..bytes.len().min(1024)].windows(4).any(|w| w == b"%PDF") {
        return Err("not a PDF (no %PDF header)".into());
    }
    let doc = catch_unwind(AssertUnwindSafe(|| lopdf::Document::load_mem(&bytes)))
        .map_err(|_| "the PDF parser failed on this file (it is probably damaged)".to_string())?
        .map_err(|e| format!("not a readable PDF (damaged or truncated?): {e}"))?;
    if doc.is_encrypted() {
        return Err("the PDF is encrypted; save an unprotected copy first".into());
    }
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    if pages.is_empty() {
        return Err("the PDF has no pages".into());
    }
    let mut texts: Vec<(u32, String, bool)> = Vec::new();
    let mut scanned = Vec::new();
    let mut failed = Vec::new();
    for &p in &pages {
        match catch_unwind(AssertUnwindSafe(|| doc.extract_text_with_limit(&[p], MAX_PAGE_CONTENT))) {
            Ok(Ok(t)) if !t.trim().is_empty() => texts.push((p, t, false)),
            Ok(Ok(_)) => scanned.push(p),
            Ok(Err(e)) => failed.push(format!("page {p}: {e}")),
            Err(_) => failed.push(format!("page {p}: the text extractor failed")),
        }
    }
    if !failed.is_empty() {
        sink.note(format!("{} page(s) unreadable, skipped ({})", failed.len(), failed.into_iter().take(3).collect::<Vec<_>>().join("; ")));
    }
    if !scanned.is_empty() {
        match ocr::pdf_pages_text(path, &scanned, &sink.options().ocr) {
            Ok(ocred) => {
                sink.note(format!("{} page(s) without a text layer read by OCR", ocred.len()));
                texts.extend(ocred.into_iter().map(|(p, t)| (p, t, true)));
                texts.sort_by_key(|t| t.0);
            }
            Err(e) if texts.is_empty() => return Err(format!("a scanned PDF (no text layer on its {} page(s)): {e}", scanned.len())),
            Err(e) => sink.note(format!("{} page(s) without a text layer skipped: {e}", scanned.len())),
        }
    }
    for (p, t, ocred) in texts {
        let mut l = loc([("page", json!(p))]);
        if ocred {
            l.insert("ocr".into(), json!(true));
        }
        sink.chunks(&t, l, None)?;
    }
    Ok(())
}
