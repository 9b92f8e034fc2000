//! Documents to records: encodings (GBK, UTF-16 with BOM), chunking at headings and paragraphs
//! with overlap, CSV rows, provenance, and per-file errors that do not stop the run.
use deepfeed_data::ingest::{chunk, decode, ingest, IngestOptions};
use serde_json::Value;

#[test]
fn encodings_are_detected() {
    let text = "深度求索的模型可以学习你的数据。我们的公司使用本地部署的大模型处理客户服务和内部文档，敏感信息在存储之前会被脱敏处理。";
    let (gbk, _, _) = encoding_rs::GBK.encode(text);
    let (decoded, enc) = decode(&gbk);
    assert_eq!(decoded, text);
    assert!(enc == "GBK" || enc == "gb18030", "{enc}");
    let mut utf16 = vec![0xFF, 0xFE];
    for u in "你好 hello".encode_utf16() {
        utf16.extend(u.to_le_bytes());
    }
    assert_eq!(decode(&utf16), ("你好 hello".to_string(), "UTF-16LE"));
    assert_eq!(decode("plain".as_bytes()).1, "UTF-8");
}

#[test]
fn chunks_follow_headings_and_overlap() {
    let para = |n: usize| format!("{}\n\n", "段落内容。".repeat(n));
    let doc = format!("# 第一章\n\n{}{}{}# 第二章\n\n{}{}", para(20), para(20), para(20), para(20), para(20));
    let opts = IngestOptions { chunk_chars: 250, overlap_chars: 110 };
    let spans = chunk(&doc, &opts);
    assert!(spans.len() >= 3, "{spans:?}");
    for &(s, e) in &spans {
        assert!(doc[s..e].chars().count() <= 250 + 10, "chunk too long");
    }
    // every paragraph is in some chunk, and consecutive chunks overlap by a paragraph
    assert_eq!(spans[0].0, 0);
    assert!(doc[spans.last().unwrap().1..].trim().is_empty(), "the end is covered");
    assert!(spans.windows(2).any(|w| w[1].0 < w[0].1), "some overlap expected: {spans:?}");
    // the second chapter starts a chunk of its own
    let ch2 = doc.find("# 第二章").unwrap();
    assert!(spans.iter().any(|&(s, _)| s == ch2), "{spans:?}");
}

#[test]
fn ingest_folder_with_good_and_bad_files() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("docs");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.md"), "# 标题\n\n第一段。\n\n第二段 with English.\n").unwrap();
    let (gbk, _, _) = encoding_rs::GBK.encode("这是一份用GBK编码保存的旧文档，内容是退货政策：七天无理由退货。");
    std::fs::write(src.join("sub/old.txt"), &gbk).unwrap();
    std::fs::write(src.join("rows.csv"), "问题,答案\n怎么退货？,七天内申请\n,\n发票？,订单页申请\n").unwrap();
    std::fs::write(src.join("empty.txt"), "  \n").unwrap();
    std::fs::write(src.join("report.pdf"), "%PDF-1.4 truncated").unwrap();
    let out = d.path().join("records.jsonl");
    let r = ingest(&[src.clone()], &out, &IngestOptions::default()).unwrap();
    assert_eq!(r.files, 3, "{r:?}");
    assert_eq!(r.errors.len(), 2, "{:?}", r.errors);
    assert!(r.errors.iter().any(|e| e.contains("empty.txt") && e.contains("empty")));
    assert!(r.errors.iter().any(|e| e.contains("report.pdf") && e.contains("not supported yet")));
    let recs: Vec<Value> = std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(recs.len(), r.records);
    let gbk_rec = recs.iter().find(|v| v["metadata"]["source"].as_str().unwrap().ends_with("old.txt")).unwrap();
    assert!(gbk_rec["text"].as_str().unwrap().contains("七天无理由退货"));
    assert_ne!(gbk_rec["metadata"]["encoding"], "UTF-8");
    assert_eq!(gbk_rec["metadata"]["sha256"].as_str().unwrap().len(), 64);
    let rows: Vec<&Value> = recs.iter().filter(|v| v["metadata"]["row"].is_number()).collect();
    assert_eq!(rows.len(), 2, "the empty row is skipped");
    assert_eq!(rows[0]["text"], "问题: 怎么退货？\n答案: 七天内申请");
    for v in &recs {
        deepfeed_data::Record::parse(v).unwrap();
    }
    let e = ingest(&[d.path().join("missing")], &out, &IngestOptions::default()).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
}
