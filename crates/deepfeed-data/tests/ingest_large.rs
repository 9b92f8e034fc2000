//! Streaming: a 50 MB file that is one single line is ingested with bounded memory (the peak
//! resident set grows by far less than the file size). Its own test binary, so that no other
//! test shares the process whose peak memory is measured.
use std::io::{BufRead, BufReader, Write};

use deepfeed_data::ingest::{ingest, EstimatedTokens, IngestOptions, Inputs, Quiet};

fn peak_rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap()
}

#[test]
fn a_50_mb_single_line_streams() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("one-line.txt");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        // 1 MiB pieces of CJK text with no line break and no sentence end
        let piece = "数据流".repeat((1 << 20) / 9);
        for _ in 0..51 {
            w.write_all(piece.as_bytes()).unwrap();
        }
    }
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size >= 50 << 20);
    let before = peak_rss_kb();
    let out = d.path().join("out.jsonl");
    let t = std::time::Instant::now();
    let opts = IngestOptions { pii: None, ..Default::default() };
    let r = ingest(&Inputs { documents: vec![path.clone()], ..Default::default() }, &out, &opts, &EstimatedTokens, &mut Quiet).unwrap();
    let grown_mb = (peak_rss_kb() - before) / 1024;
    eprintln!("50 MB single line: {} records in {:.1} s, peak RSS grew by {grown_mb} MB", r.records, t.elapsed().as_secs_f64());
    assert!(grown_mb < 40, "peak memory grew by {grown_mb} MB for a {} MB file", size >> 20);
    // the records cover the whole line, in order, with contiguous offsets (no overlap is
    // possible inside one unbroken run of characters)
    let mut next = 0u64;
    let mut chars = 0usize;
    for line in BufReader::new(std::fs::File::open(&out).unwrap()).lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        assert_eq!(v["metadata"]["start"].as_u64().unwrap(), next);
        next = v["metadata"]["end"].as_u64().unwrap();
        chars += v["text"].as_str().unwrap().chars().count();
    }
    assert_eq!(next, size);
    assert_eq!(chars as u64, size / 3);
}
