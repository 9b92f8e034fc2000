//! Plain text, Markdown and CSV/TSV, streamed: the file is read in blocks and decoded on the fly,
//! so a 10 GB file or a 50 MB line needs a few MiB of memory, not the whole file.
//!
//! Encoding: a BOM decides (UTF-8, UTF-16LE/BE); else the first 64 KiB are sniffed: valid UTF-8,
//! or UTF-8 with rare invalid bytes (at most 1 bad sequence per 100 bytes: replaced by U+FFFD and noted), else
//! chardetng's guess (GBK/GB18030, Big5, Shift_JIS, windows-1252…), decoded with encoding_rs.
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use encoding_rs::{CoderResult, Decoder, Encoding};
use serde_json::json;

use super::{loc, Sink};

/// Text is handed to the chunker in windows of about this many bytes, cut at a paragraph,
/// line or sentence end (or, in a single over-long line, at a character boundary).
pub const WINDOW: usize = 1 << 20;
const SNIFF: usize = 64 << 10;

/// The encoding of a file from its first bytes: (encoding, BOM length).
pub fn sniff(head: &[u8], complete: bool) -> (&'static Encoding, usize) {
    if let Some((enc, bom)) = Encoding::for_bom(head) {
        return (enc, bom);
    }
    let mut invalid = 0usize;
    let mut chunks = head.utf8_chunks().peekable();
    while let Some(c) = chunks.next() {
        // a multi-byte character cut at the end of the sample is not an error
        if !c.invalid().is_empty() && (complete || chunks.peek().is_some()) {
            invalid += 1;
        }
    }
    if invalid == 0 || invalid * 100 <= head.len() && head.len() >= 100 {
        return (encoding_rs::UTF_8, 0);
    }
    let mut det = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    det.feed(head, complete);
    (det.guess(None, chardetng::Utf8Detection::Deny), 0)
}

/// Bytes to text: BOM, else UTF-8, else the detected legacy encoding. Returns the encoding name.
pub fn decode(bytes: &[u8]) -> (String, &'static str) {
    let (enc, bom) = sniff(&bytes[..bytes.len().min(SNIFF)], bytes.len() <= SNIFF);
    let (text, _) = enc.decode_without_bom_handling(&bytes[bom..]);
    (text.into_owned(), enc.name())
}

/// Control characters other than tab, newline, carriage return and form feed: many of them mean
/// the file is binary, not text.
fn looks_binary(text: &str) -> bool {
    let sample: Vec<char> = text.chars().take(4096).collect();
    let ctrl = sample.iter().filter(|&&c| (c as u32) < 32 && !matches!(c, '\t' | '\n' | '\r' | '\x0c')).count();
    ctrl > 0 && ctrl * 100 > sample.len()
}

/// A reader of decoded UTF-8 bytes over a reader of encoded bytes.
pub struct DecodeReader<R> {
    inner: R,
    dec: Decoder,
    raw: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    eof: bool,
    pub replaced: bool,
}

impl<R: Read> DecodeReader<R> {
    pub fn new(inner: R, enc: &'static Encoding) -> Self {
        DecodeReader { inner, dec: enc.new_decoder_without_bom_handling(), raw: vec![0; 64 << 10], out: Vec::new(), pos: 0, eof: false, replaced: false }
    }
}

impl<R: Read> Read for DecodeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.out.len() {
            if self.eof {
                return Ok(0);
            }
            let n = self.inner.read(&mut self.raw)?;
            self.eof = n == 0;
            let cap = self.dec.max_utf8_buffer_length(n).unwrap_or(4 * n + 16);
            self.out.resize(cap, 0);
            let (res, _, written, replaced) = self.dec.decode_to_utf8(&self.raw[..n], &mut self.out, self.eof);
            debug_assert!(matches!(res, CoderResult::InputEmpty));
            self.replaced |= replaced;
            self.out.truncate(written);
            self.pos = 0;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Opens a text file: the buffered reader past the BOM, and its encoding.
fn open(path: &Path) -> Result<(BufReader<File>, &'static Encoding), String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let mut r = BufReader::with_capacity(SNIFF * 2, f);
    let head = r.fill_buf().map_err(|e| e.to_string())?.to_vec();
    let complete = head.len() < SNIFF * 2;
    let (enc, bom) = sniff(&head[..head.len().min(SNIFF)], complete && head.len() <= SNIFF);
    r.consume(bom);
    Ok((r, enc))
}

/// The largest character boundary of `text` at or below `i`.
pub fn floor_boundary(text: &str, mut i: usize) -> usize {
    if i >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Where to end a window of `text`: after the last paragraph break in its second half, else the
/// last line end or sentence end in its second half, else at a character boundary.
fn window_cut(text: &str, want: usize) -> usize {
    let want = floor_boundary(text, want);
    let half = floor_boundary(text, want / 2);
    let w = &text[..want];
    if let Some(i) = w[half..].rfind("\n\n") {
        return half + i + 2;
    }
    if let Some(i) = w[half..].rfind('\n') {
        return half + i + 1;
    }
    if let Some((i, c)) = w[half..].char_indices().rev().find(|(_, c)| matches!(c, '。' | '！' | '？' | '.' | '!' | '?' | ' ')) {
        return half + i + c.len_utf8();
    }
    want
}

/// `.txt` / `.md`: chunks with byte offsets in the decoded text.
pub fn read_text(path: &Path, sink: &mut Sink) -> Result<(), String> {
    let (r, enc) = open(path)?;
    let mut r = DecodeReader::new(r, enc);
    let mut pending = String::new();
    let mut carry: Vec<u8> = Vec::new(); // an incomplete UTF-8 character between blocks
    let mut block = vec![0u8; 256 << 10];
    let mut base = 0usize;
    let mut first = true;
    let meta = loc([("encoding", json!(enc.name()))]);
    loop {
        let n = r.read(&mut block).map_err(|e| e.to_string())?;
        carry.extend_from_slice(&block[..n]);
        let valid = match std::str::from_utf8(&carry) {
            Ok(_) => carry.len(),
            Err(e) => e.valid_up_to(),
        };
        pending.push_str(std::str::from_utf8(&carry[..valid]).expect("checked"));
        carry.drain(..valid);
        if first && (pending.len() >= 4096 || n == 0) {
            first = false;
            if looks_binary(&pending) {
                return Err("looks like a binary file, not text (many control characters); nothing read".into());
            }
        }
        while pending.len() >= WINDOW || (n == 0 && !pending.is_empty()) {
            let cut = if pending.len() >= WINDOW { window_cut(&pending, WINDOW) } else { pending.len() };
            // the window's last chunk comes back to the front of the next window
            let last = n == 0 && cut == pending.len();
            let consumed = sink.window_chunks(&pending[..cut], &meta, base, last)?;
            base += consumed;
            pending.drain(..consumed);
        }
        if n == 0 {
            break;
        }
    }
    if r.replaced {
        sink.note(format!("invalid {} byte sequences were replaced by U+FFFD", enc.name()));
    }
    Ok(())
}

/// `.csv` / `.tsv`: one record per row, `column: value` lines (empty cells left out), streamed.
pub fn read_table(path: &Path, tab: bool, sink: &mut Sink) -> Result<(), String> {
    let (r, enc) = open(path)?;
    let mut rdr = csv::ReaderBuilder::new().delimiter(if tab { b'\t' } else { b',' }).flexible(true).from_reader(DecodeReader::new(r, enc));
    let headers: Vec<String> = rdr.headers().map_err(|e| format!("header row: {e}"))?.iter().map(|h| h.trim().to_string()).collect();
    let mut row = csv::StringRecord::new();
    let mut n = 1;
    loop {
        n += 1;
        match rdr.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(format!("row {n}: {e}")),
        }
        let lines: Vec<String> = headers.iter().zip(row.iter()).filter(|(_, v)| !v.trim().is_empty()).map(|(h, v)| format!("{h}: {}", v.trim())).collect();
        sink.record(&lines.join("\n"), loc([("encoding", json!(enc.name())), ("row", json!(n))]))?;
    }
    if rdr.get_ref().replaced {
        sink.note(format!("invalid {} byte sequences were replaced by U+FFFD", enc.name()));
    }
    Ok(())
}
