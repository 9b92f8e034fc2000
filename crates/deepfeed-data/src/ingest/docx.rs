//! DOCX: `word/document.xml` read with zip + quick-xml. Paragraphs become blank-line separated
//! blocks, headings (`Heading N` / `标题 N` styles, numeric style ids, outline levels) become
//! Markdown `#` lines so chunks start at them, and table rows become `cell | cell` lines.
//!
//! Zip bombs: the archive's declared sizes are checked before anything is inflated (total and
//! per-entry ratio), and the entry is read through a byte cap, since declared sizes can lie.
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use quick_xml::events::Event;
use serde_json::Map;

use super::{Limits, Sink};

/// Refuses archives that would expand beyond the limits (declared sizes).
pub fn check_zip<R: Read + Seek>(zip: &mut zip::ZipArchive<R>, limits: &Limits) -> Result<(), String> {
    let mut total = 0u64;
    for i in 0..zip.len() {
        let f = zip.by_index_raw(i).map_err(|e| format!("zip entry {i}: {e}"))?;
        total = total.saturating_add(f.size());
        let ratio = f.size() / f.compressed_size().max(1);
        if f.size() > 1 << 20 && ratio > limits.max_zip_ratio {
            return Err(format!(
                "refused as a possible zip bomb: entry {} expands {} bytes to {} (ratio {ratio}, limit {})",
                f.name().map(|n| n.to_string()).unwrap_or_else(|_| format!("#{i}")),
                f.compressed_size(),
                f.size(),
                limits.max_zip_ratio
            ));
        }
    }
    if total > limits.max_unzipped_bytes {
        return Err(format!("refused as a possible zip bomb: the entries expand to {total} bytes (limit {})", limits.max_unzipped_bytes));
    }
    Ok(())
}

/// Opens a zip container and checks it.
pub fn open_zip(path: &Path, limits: &Limits, what: &str) -> Result<zip::ZipArchive<BufReader<File>>, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(BufReader::new(f)).map_err(|e| format!("not a valid {what} (zip) file: {e}"))?;
    check_zip(&mut zip, limits)?;
    Ok(zip)
}

/// One entry's bytes, read through the cap.
fn read_entry<R: Read + Seek>(zip: &mut zip::ZipArchive<R>, name: &str, limits: &Limits) -> Result<Vec<u8>, String> {
    let entry = zip.by_name(name).map_err(|e| format!("{name}: {e} (not a Word document?)"))?;
    let mut buf = Vec::new();
    entry.take(limits.max_unzipped_bytes + 1).read_to_end(&mut buf).map_err(|e| format!("{name}: {e}"))?;
    if buf.len() as u64 > limits.max_unzipped_bytes {
        return Err(format!("refused as a possible zip bomb: {name} expands beyond {} bytes", limits.max_unzipped_bytes));
    }
    Ok(buf)
}

/// The heading level of a paragraph style id, if it is a heading style.
fn heading_level(style: &str) -> Option<usize> {
    let s = style.to_lowercase().replace([' ', '_', '-'], "");
    if s == "title" || s == "标题" {
        return Some(1);
    }
    let digits = s.strip_prefix("heading").or_else(|| s.strip_prefix("标题")).unwrap_or(&s);
    digits.parse::<usize>().ok().filter(|n| (1..=6).contains(n))
}

fn attr(e: &quick_xml::events::BytesStart, local: &str) -> Option<String> {
    e.attributes().flatten().find(|a| a.key.local_name().as_ref() == local).map(|a| a.value.to_string())
}

/// The text of `word/document.xml`.
pub fn document_text(xml: &[u8]) -> Result<String, String> {
    let xml = std::str::from_utf8(xml).map_err(|e| format!("word/document.xml is not UTF-8: {e}"))?;
    let mut r = quick_xml::Reader::from_str(xml);
    let mut out = String::new();
    let mut para = String::new();
    let mut level: Option<usize> = None;
    let mut in_t = false;
    // open tables: the rows of each, a row being its cells' text
    let mut tables: Vec<Vec<Vec<String>>> = Vec::new();
    loop {
        let ev = r.read_event().map_err(|e| format!("word/document.xml at byte {}: {e}", r.buffer_position()))?;
        match ev {
            Event::Eof => break,
            Event::Start(e) => match e.local_name().as_ref() {
                "p" => {
                    para.clear();
                    level = None;
                }
                "t" => in_t = true,
                "tbl" => tables.push(Vec::new()),
                "tr" => {
                    if let Some(t) = tables.last_mut() {
                        t.push(Vec::new());
                    }
                }
                "tc" => {
                    if let Some(row) = tables.last_mut().and_then(|t| t.last_mut()) {
                        row.push(String::new());
                    }
                }
                _ => {}
            },
            Event::Empty(e) => match e.local_name().as_ref() {
                "pStyle" => level = level.or(attr(&e, "val").and_then(|v| heading_level(&v))),
                "outlineLvl" => level = level.or(attr(&e, "val").and_then(|v| v.parse::<usize>().ok()).filter(|&n| n < 6).map(|n| n + 1)),
                "tab" => para.push('\t'),
                "br" | "cr" => para.push('\n'),
                _ => {}
            },
            Event::Text(t) if in_t => para.push_str(&t.xml_content(quick_xml::XmlVersion::Implicit1_0)),
            Event::GeneralRef(g) if in_t => match g.resolve_char_ref() {
                Ok(Some(c)) => para.push(c),
                _ => para.push_str(match &*g.into_inner() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "",
                }),
            },
            Event::End(e) => match e.local_name().as_ref() {
                "t" => in_t = false,
                "p" => {
                    let text = para.trim();
                    if let Some(cell) = tables.last_mut().and_then(|t| t.last_mut()).and_then(|row| row.last_mut()) {
                        if !text.is_empty() {
                            if !cell.is_empty() {
                                cell.push(' ');
                            }
                            cell.push_str(text);
                        }
                    } else if !text.is_empty() {
                        if let Some(n) = level {
                            out.push_str(&"#".repeat(n));
                            out.push(' ');
                        }
                        out.push_str(text);
                        out.push_str("\n\n");
                    }
                    para.clear();
                }
                "tbl" => {
                    let rows = tables.pop().unwrap_or_default();
                    let lines: Vec<String> = rows.iter().map(|r| r.join(" | ")).filter(|l| !l.replace('|', "").trim().is_empty()).collect();
                    let block = lines.join("\n");
                    // a nested table's rows go into the enclosing cell
                    match tables.last_mut().and_then(|t| t.last_mut()).and_then(|row| row.last_mut()) {
                        Some(cell) => cell.push_str(&block.replace('\n', "; ")),
                        None if !block.is_empty() => {
                            out.push_str(&block);
                            out.push_str("\n\n");
                        }
                        None => {}
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
    Ok(out)
}

pub fn read(path: &Path, sink: &mut Sink) -> Result<(), String> {
    let limits = sink.options().limits.clone();
    let mut zip = open_zip(path, &limits, "DOCX")?;
    let xml = read_entry(&mut zip, "word/document.xml", &limits)?;
    let text = document_text(&xml)?;
    sink.chunks(&text, Map::new(), None)
}
