//! OCR through the `tesseract` command (and `pdftoppm` from poppler-utils for scanned PDF pages),
//! run as subprocesses when installed. The Tesseract C library crate is avoided on purpose: it
//! needs clang and the Tesseract headers at build time, for a feature many users never need.
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use super::{loc, Sink};

#[derive(Debug, Clone)]
pub struct OcrOptions {
    /// The tesseract program (default `tesseract`, looked up on PATH).
    pub tesseract: PathBuf,
    /// The pdftoppm program (default `pdftoppm`).
    pub pdftoppm: PathBuf,
    /// Tesseract languages (default `chi_sim+eng`).
    pub lang: String,
    /// Resolution of rendered PDF pages.
    pub dpi: u32,
}

impl Default for OcrOptions {
    fn default() -> Self {
        OcrOptions { tesseract: "tesseract".into(), pdftoppm: "pdftoppm".into(), lang: "chi_sim+eng".into(), dpi: 300 }
    }
}

pub const INSTALL_HINT: &str = "install it (Debian/Ubuntu: apt-get install tesseract-ocr tesseract-ocr-chi-sim poppler-utils; macOS: brew install tesseract tesseract-lang poppler) or convert the file to text first";

fn missing(program: &Path, what: &str) -> String {
    format!("OCR needs the `{}` command ({what}), which was not found; {INSTALL_HINT}", program.display())
}

/// Text of an image file.
pub fn image_text(path: &Path, opts: &OcrOptions) -> Result<String, String> {
    let out = Command::new(&opts.tesseract).arg(path).arg("stdout").arg("-l").arg(&opts.lang).output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => missing(&opts.tesseract, "Tesseract OCR"),
        _ => format!("running {}: {e}", opts.tesseract.display()),
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("Failed loading language") || err.contains("Error opening data file") {
            return Err(format!(
                "tesseract has no data for the languages {} ({}); install them, e.g. apt-get install tesseract-ocr-chi-sim",
                opts.lang,
                err.lines().next().unwrap_or("").trim()
            ));
        }
        return Err(format!("tesseract failed ({}): {}", out.status, err.lines().filter(|l| !l.trim().is_empty()).last().unwrap_or("").trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).replace('\x0c', "\n"))
}

/// Text of the given pages (1-based) of a PDF, rendered with pdftoppm then read by tesseract.
pub fn pdf_pages_text(path: &Path, pages: &[u32], opts: &OcrOptions) -> Result<Vec<(u32, String)>, String> {
    // check both tools before rendering anything
    Command::new(&opts.tesseract).arg("--version").output().map_err(|_| missing(&opts.tesseract, "Tesseract OCR"))?;
    let dir = std::env::temp_dir().join(format!("deepfeed-ocr-{}-{}", std::process::id(), super::sha256_hex(path.to_string_lossy().as_bytes()).get(..12).unwrap_or("x")));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = (|| {
        let mut out = Vec::new();
        for &p in pages {
            let prefix = dir.join(format!("page-{p}"));
            let r = Command::new(&opts.pdftoppm)
                .args(["-r", &opts.dpi.to_string(), "-f", &p.to_string(), "-l", &p.to_string(), "-png", "-singlefile"])
                .arg(path)
                .arg(&prefix)
                .output()
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => missing(&opts.pdftoppm, "poppler-utils, to render PDF pages"),
                    _ => format!("running {}: {e}", opts.pdftoppm.display()),
                })?;
            if !r.status.success() {
                return Err(format!("pdftoppm could not render page {p}: {}", String::from_utf8_lossy(&r.stderr).trim()));
            }
            out.push((p, image_text(&prefix.with_extension("png"), opts)?));
        }
        Ok(out)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// An image: one OCR'd text, chunked.
pub fn read_image(path: &Path, sink: &mut Sink) -> Result<(), String> {
    let text = image_text(path, &sink.options().ocr)?;
    if text.trim().is_empty() {
        return Err("OCR found no text in the image".into());
    }
    sink.chunks(&text, loc([("ocr", json!(true))]), None)
}
