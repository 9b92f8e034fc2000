//! Documents to records: every format built by the test itself (text in GBK/UTF-16, Markdown,
//! CSV, HTML, PDF with Latin and CJK fonts, DOCX with headings and a table, XLSX, JSON/JSONL),
//! token-based chunking with overlap, provenance, PII masking, and broken files (truncated PDF,
//! zip-bomb DOCX, invalid UTF-8, binary noise, empty files) that are reported while the run goes on.
use std::path::{Path, PathBuf};

use deepfeed_data::ingest::samples::{self, DocxPart, PdfPage};
use deepfeed_data::ingest::{chunk, decode, ingest, EstimatedTokens, IngestOptions, IngestReport, Inputs, Quiet};
use deepfeed_data::validate::TokenCounter;
use serde_json::Value;

fn run(docs: &[PathBuf], opts: &IngestOptions, out: &Path) -> (IngestReport, Vec<Value>) {
    let inputs = Inputs { documents: docs.to_vec(), ..Default::default() };
    let r = ingest(&inputs, out, opts, &EstimatedTokens, &mut Quiet).unwrap();
    let recs: Vec<Value> = std::fs::read_to_string(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(recs.len(), r.records);
    for v in &recs {
        deepfeed_data::Record::parse(v).unwrap();
        assert_eq!(v["metadata"]["sha256"].as_str().unwrap().len(), 64);
    }
    (r, recs)
}

fn texts_of<'a>(recs: &'a [Value], file: &str) -> Vec<&'a Value> {
    recs.iter().filter(|v| v["metadata"]["source"].as_str().unwrap().ends_with(file)).collect()
}

fn error_of(r: &IngestReport, file: &str) -> String {
    r.sources.iter().find(|s| s.source.ends_with(file)).unwrap_or_else(|| panic!("{file} not in report")).error.clone().unwrap_or_else(|| panic!("{file} was not skipped: {r:?}"))
}

#[test]
fn encodings_are_detected() {
    let text = "深度求索的模型可以学习你的数据。我们的公司使用本地部署的大模型处理客户服务和内部文档，敏感信息在存储之前会被脱敏处理。";
    let (gbk, _, _) = encoding_rs::GBK.encode(text);
    let (decoded, enc) = decode(&gbk);
    assert_eq!(decoded, text);
    assert!(enc == "GBK" || enc == "gb18030", "{enc}");
    let (big5, _, _) = encoding_rs::BIG5.encode("這是一份用繁體中文寫的舊文件，內容是退貨政策：七天無理由退貨，請保留發票。");
    assert_eq!(decode(&big5).1, "Big5");
    let mut utf16 = vec![0xFF, 0xFE];
    for u in "你好 hello".encode_utf16() {
        utf16.extend(u.to_le_bytes());
    }
    assert_eq!(decode(&utf16), ("你好 hello".to_string(), "UTF-16LE"));
    assert_eq!(decode("plain".as_bytes()).1, "UTF-8");
}

#[test]
fn token_estimate_counts_cjk_and_latin() {
    // 10 CJK characters -> 7 tokens; 8 Latin letters -> 2 tokens; spaces are free
    assert_eq!(EstimatedTokens.count("深度求索模型学习数据"), 7);
    assert_eq!(EstimatedTokens.count("abcd efgh"), 2);
    assert_eq!(EstimatedTokens.count(""), 0);
}

#[test]
fn chunks_follow_headings_and_overlap() {
    let para = |n: usize| format!("{}\n\n", "段落内容。".repeat(n));
    let doc = format!("# 第一章\n\n{}{}{}# 第二章\n\n{}{}", para(20), para(20), para(20), para(20), para(20));
    // a paragraph of 100 CJK characters is 70 tokens
    let spans = chunk(&doc, 160, 75, &EstimatedTokens);
    assert!(spans.len() >= 3, "{spans:?}");
    for &(s, e) in &spans {
        assert!(EstimatedTokens.count(&doc[s..e]) <= 160, "chunk too long");
    }
    assert_eq!(spans[0].0, 0);
    assert!(doc[spans.last().unwrap().1..].trim().is_empty(), "the end is covered");
    assert!(spans.windows(2).any(|w| w[1].0 < w[0].1), "some overlap expected: {spans:?}");
    let ch2 = doc.find("# 第二章").unwrap();
    assert!(spans.iter().any(|&(s, _)| s == ch2), "the second chapter starts a chunk: {spans:?}");
    // an over-long paragraph (one line, no blank lines) is cut at sentence ends
    let long = "这是一个很长的句子，用来测试切分。".repeat(100);
    let spans = chunk(&long, 64, 0, &EstimatedTokens);
    assert!(spans.len() > 10);
    for w in spans.windows(2) {
        assert_eq!(w[0].1, w[1].0, "no gap, no overlap");
        assert!(long[..w[0].1].ends_with('。'), "cut after a sentence end");
    }
    // ... and a run without any sentence end at character boundaries
    let run = "字".repeat(1000);
    let spans = chunk(&run, 64, 0, &EstimatedTokens);
    assert_eq!(spans.iter().map(|&(s, e)| run[s..e].chars().count()).sum::<usize>(), 1000);
    assert!(spans.iter().all(|&(s, e)| EstimatedTokens.count(&run[s..e]) <= 64));
}

/// A token counter that counts characters, to check that the chunker uses the counter given.
struct Chars;
impl TokenCounter for Chars {
    fn count(&self, text: &str) -> usize {
        text.chars().count()
    }
}

#[test]
fn chunking_uses_the_given_token_counter() {
    let doc = "一二三四五六七八九十。".repeat(30);
    let spans = chunk(&doc, 50, 0, &Chars);
    assert!(spans.iter().all(|&(s, e)| doc[s..e].chars().count() <= 50));
    assert_eq!(spans.len(), 8, "30 sentences of 11 characters, 4 per chunk of 50: 8 chunks");
}

#[test]
fn every_format_with_provenance() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("docs");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.md"), "# 标题\n\n第一段。\n\n第二段 with English. 电话 13812345678。\n").unwrap();
    let (gbk, _, _) = encoding_rs::GBK.encode("这是一份用GBK编码保存的旧文档，内容是退货政策：七天无理由退货。");
    std::fs::write(src.join("sub/old.txt"), &gbk).unwrap();
    std::fs::write(src.join("rows.csv"), "问题,答案\n怎么退货？,七天内申请\n,\n发票？,订单页申请\n").unwrap();
    std::fs::write(
        src.join("page.html"),
        "<html><head><meta charset=\"utf-8\"><title>t</title><style>p{color:red}</style><script>var secret = 1;</script></head>\
         <body><h1>售后服务</h1><p>退货请在<b>七天内</b>申请。</p><table><tr><td>型号</td><td>保修</td></tr><tr><td>A1</td><td>两年</td></tr></table></body></html>",
    )
    .unwrap();
    std::fs::write(
        src.join("manual.pdf"),
        samples::pdf(&[PdfPage::Latin(&["Refund policy: within 7 days.", "Invoices are issued online."]), PdfPage::Cjk(&["退货政策：七天无理由退货。", "发票在订单页申请。"])]),
    )
    .unwrap();
    std::fs::write(
        src.join("guide.docx"),
        samples::docx(&[
            DocxPart::Heading(1, "售后指南"),
            DocxPart::Para("退货须保持商品完好 & 附件齐全。"),
            DocxPart::Table(&[&["型号", "保修期"], &["A1", "两年"]]),
            DocxPart::Heading(2, "发票"),
            DocxPart::Para("电子发票在订单页下载。"),
        ]),
    )
    .unwrap();
    std::fs::write(src.join("clients.xlsx"), samples::xlsx("客户表", &[&["姓名", "城市", "订单数"], &["张三", "上海", "3"], &["", "", ""], &["李四", "北京", "12"]])).unwrap();
    std::fs::write(src.join("faq.jsonl"), "{\"id\": 1, \"content\": \"如何开发票？订单页申请。\"}\n{\"id\": 2, \"content\": \"运费谁出？质量问题由我们承担。\"}\nnot json\n").unwrap();
    std::fs::write(src.join("kb.json"), r#"{"items": [{"title": "保修", "body": "整机保修两年。"}, {"title": "退货", "body": "七天无理由。"}]}"#).unwrap();
    let out = d.path().join("records.jsonl");
    let (r, recs) = run(&[src.clone()], &IngestOptions::default(), &out);
    assert_eq!((r.read, r.skipped), (9, 0), "{:#?}", r.sources);

    let md = texts_of(&recs, "a.md");
    assert_eq!(md[0]["metadata"]["format"], "md");
    assert_eq!(md[0]["metadata"]["start"], 0);
    assert!(md[0]["text"].as_str().unwrap().contains("<PHONE>"), "PII masked by default: {}", md[0]["text"]);
    assert_eq!(r.pii.get("PHONE"), Some(&1));

    let gbk_rec = texts_of(&recs, "old.txt")[0];
    assert!(gbk_rec["text"].as_str().unwrap().contains("七天无理由退货"));
    assert_ne!(gbk_rec["metadata"]["encoding"], "UTF-8");
    let want_sha = deepfeed_data::ingest::sha256_hex(&gbk);
    assert_eq!(gbk_rec["metadata"]["sha256"], want_sha.as_str());

    let rows = texts_of(&recs, "rows.csv");
    assert_eq!(rows.len(), 2, "the empty row is skipped");
    assert_eq!(rows[0]["text"], "问题: 怎么退货？\n答案: 七天内申请");
    assert_eq!(rows[1]["metadata"]["row"], 4);

    let html = texts_of(&recs, "page.html")[0]["text"].as_str().unwrap();
    assert!(html.contains("售后服务") && html.contains("七天内") && html.contains("两年"), "{html}");
    assert!(!html.contains("secret") && !html.contains("color"), "script and style dropped: {html}");

    let pdf = texts_of(&recs, "manual.pdf");
    assert_eq!(pdf.len(), 2, "{pdf:?}");
    assert_eq!(pdf[0]["metadata"]["page"], 1);
    assert!(pdf[0]["text"].as_str().unwrap().contains("Refund policy: within 7 days."), "{}", pdf[0]["text"]);
    assert_eq!(pdf[1]["metadata"]["page"], 2);
    let cjk: String = pdf[1]["text"].as_str().unwrap().split_whitespace().collect();
    assert!(cjk.contains("退货政策：七天无理由退货。") && cjk.contains("发票在订单页申请。"), "{cjk}");

    let docx: Vec<&str> = texts_of(&recs, "guide.docx").iter().map(|v| v["text"].as_str().unwrap()).collect();
    let all = docx.join("\n\n");
    assert!(all.starts_with("# 售后指南\n\n退货须保持商品完好 & 附件齐全。"), "{all}");
    assert!(all.contains("型号 | 保修期\nA1 | 两年"), "{all}");
    assert!(all.contains("## 发票\n\n电子发票在订单页下载。"), "{all}");

    let xlsx = texts_of(&recs, "clients.xlsx");
    assert_eq!(xlsx.len(), 2);
    assert_eq!(xlsx[0]["text"], "姓名: <NAME>\n城市: 上海\n订单数: 3");
    assert_eq!(xlsx[0]["metadata"]["sheet"], "客户表");
    assert_eq!(xlsx[0]["metadata"]["row"], 2);
    assert_eq!(xlsx[1]["metadata"]["row"], 4);

    let jsonl = texts_of(&recs, "faq.jsonl");
    assert_eq!(jsonl.len(), 2);
    assert_eq!(jsonl[1]["text"], "运费谁出？质量问题由我们承担。");
    assert_eq!(jsonl[1]["metadata"]["line"], 2);
    let faq = r.sources.iter().find(|s| s.source.ends_with("faq.jsonl")).unwrap();
    assert!(faq.notes.iter().any(|n| n.contains("1 line(s) are not valid JSON")), "{faq:?}");
    let kb = texts_of(&recs, "kb.json");
    assert_eq!(kb.len(), 2);
    assert_eq!(kb[0]["text"], "整机保修两年。");
    assert_eq!(kb[1]["metadata"]["index"], 1);

    // a chosen JSON text field, and no masking
    let out2 = d.path().join("titles.jsonl");
    let opts = IngestOptions { json_text_field: Some("title".into()), pii: None, ..Default::default() };
    let (_, recs) = run(&[src.join("kb.json"), src.join("a.md")], &opts, &out2);
    assert_eq!(recs[0]["text"], "保修");
    assert!(recs.iter().any(|v| v["text"].as_str().unwrap().contains("13812345678")));
}

#[test]
fn broken_files_are_reported_and_the_run_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("docs");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("good.txt"), "这份文件是好的。").unwrap();
    std::fs::write(src.join("empty.txt"), "  \n").unwrap();
    std::fs::write(src.join("empty.csv"), "").unwrap();
    let pdf = samples::pdf(&[PdfPage::Latin(&["Hello"])]);
    std::fs::write(src.join("truncated.pdf"), &pdf[..pdf.len() / 3]).unwrap();
    std::fs::write(src.join("fake.pdf"), "this is not a pdf").unwrap();
    // 20 MB of one repeated character deflates about 1000:1
    let bomb = samples::docx_with(&vec![b'a'; 20 << 20]);
    assert!(bomb.len() < 100_000);
    std::fs::write(src.join("bomb.docx"), &bomb).unwrap();
    std::fs::write(src.join("notzip.docx"), "PK but not really").unwrap();
    // mostly UTF-8 with two stray bytes: kept, the bytes replaced and noted
    let mut bad = "有效的UTF-8文本，中间有坏字节。".repeat(40).into_bytes();
    bad.insert(30, 0xFF);
    bad.push(0xC3);
    std::fs::write(src.join("stray.md"), &bad).unwrap();
    // random bytes named .txt
    let noise: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(src.join("noise.txt"), &noise).unwrap();
    std::fs::write(src.join("broken.json"), "{\"a\": ").unwrap();
    std::fs::write(src.join("slides.pptx"), "x").unwrap();
    let out = d.path().join("out.jsonl");
    let (r, recs) = run(&[src.clone()], &IngestOptions::default(), &out);
    assert_eq!(r.read, 2, "{:#?}", r.sources);
    assert!(error_of(&r, "empty.txt").contains("empty"));
    assert!(error_of(&r, "empty.csv").contains("header row") || error_of(&r, "empty.csv").contains("empty"));
    let e = error_of(&r, "truncated.pdf");
    assert!(e.contains("not a readable PDF"), "{e}");
    assert!(error_of(&r, "fake.pdf").contains("not a PDF"));
    let e = error_of(&r, "bomb.docx");
    assert!(e.contains("zip bomb") && e.contains("ratio"), "{e}");
    assert!(error_of(&r, "notzip.docx").contains("not a valid DOCX"));
    assert!(error_of(&r, "noise.txt").contains("binary"), "{}", error_of(&r, "noise.txt"));
    assert!(error_of(&r, "broken.json").contains("not valid JSON"));
    assert!(error_of(&r, "slides.pptx").contains("not supported"));
    let stray = r.sources.iter().find(|s| s.source.ends_with("stray.md")).unwrap();
    assert!(stray.notes.iter().any(|n| n.contains("replaced by U+FFFD")), "{stray:?}");
    let t = texts_of(&recs, "stray.md")[0]["text"].as_str().unwrap();
    assert!(t.contains('\u{FFFD}') && t.contains("有效的UTF-8文本"));
    // nothing readable at all: an error, and no output file
    let out2 = d.path().join("none.jsonl");
    let inputs = Inputs { documents: vec![src.join("empty.txt"), src.join("bomb.docx")], ..Default::default() };
    let e = ingest(&inputs, &out2, &IngestOptions::default(), &EstimatedTokens, &mut Quiet).unwrap_err().to_string();
    assert!(e.contains("nothing could be read") && e.contains("bomb.docx"), "{e}");
    assert!(!out2.exists());
    let e = ingest(&Inputs { documents: vec![d.path().join("missing")], ..Default::default() }, &out2, &IngestOptions::default(), &EstimatedTokens, &mut Quiet)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing"), "{e}");
}

#[test]
fn scanned_pdf_without_ocr_tools_says_how_to_install() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("scan.pdf"), samples::pdf(&[PdfPage::Blank, PdfPage::Blank])).unwrap();
    std::fs::write(d.path().join("mixed.pdf"), samples::pdf(&[PdfPage::Latin(&["Page one has text."]), PdfPage::Blank])).unwrap();
    std::fs::write(d.path().join("photo.png"), b"\x89PNG\r\n\x1a\n").unwrap();
    let mut opts = IngestOptions::default();
    opts.ocr.tesseract = "deepfeed-no-such-tesseract".into();
    opts.ocr.pdftoppm = "deepfeed-no-such-pdftoppm".into();
    let out = d.path().join("out.jsonl");
    let (r, recs) = run(&[d.path().join("scan.pdf"), d.path().join("mixed.pdf"), d.path().join("photo.png")], &opts, &out);
    let e = error_of(&r, "scan.pdf");
    assert!(e.contains("scanned PDF") && e.contains("apt-get install tesseract-ocr tesseract-ocr-chi-sim poppler-utils"), "{e}");
    assert!(error_of(&r, "photo.png").contains("deepfeed-no-such-tesseract"));
    let mixed = r.sources.iter().find(|s| s.source.ends_with("mixed.pdf")).unwrap();
    assert_eq!(mixed.records, 1);
    assert!(mixed.notes.iter().any(|n| n.contains("1 page(s) without a text layer skipped")), "{mixed:?}");
    assert_eq!(recs.len(), 1);
}

/// Needs `tesseract` (with chi_sim) and `pdftoppm`:
/// `apt-get install tesseract-ocr tesseract-ocr-chi-sim poppler-utils`, then
/// `cargo test --release -p deepfeed-data --test ingest -- --ignored`.
#[test]
#[ignore]
fn real_ocr_of_an_image_and_a_scanned_page() {
    let d = tempfile::tempdir().unwrap();
    let pdf = d.path().join("text.pdf");
    std::fs::write(&pdf, samples::pdf(&[PdfPage::Latin(&["Refund policy: within 7 days.", "Invoices are issued online."])])).unwrap();
    // render the page to an image with pdftoppm, then OCR the image
    let st = std::process::Command::new("pdftoppm").args(["-r", "150", "-png", "-singlefile"]).arg(&pdf).arg(d.path().join("page")).status().unwrap();
    assert!(st.success());
    // and a PDF whose page is only that image: a scan
    let out = d.path().join("out.jsonl");
    let (r, recs) = run(&[d.path().join("page.png")], &IngestOptions::default(), &out);
    assert_eq!(r.read, 1, "{:?}", r.sources);
    let t = recs[0]["text"].as_str().unwrap();
    assert!(t.contains("Refund policy") && t.contains("7 days"), "{t}");
    assert_eq!(recs[0]["metadata"]["ocr"], true);
}

/// Writes the sample folder of the README walkthrough (committed under examples/ingest/):
/// `cargo test --release -p deepfeed-data --test ingest -- --ignored write_walkthrough_samples`
#[test]
#[ignore]
fn write_walkthrough_samples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ingest");
    let docs = root.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("returns.md"),
        "# 退货政策\n\n自签收之日起七天内，商品完好且附件齐全，可申请无理由退货。\n\n## 如何申请\n\n在订单页点击“申请退货”，填写原因并上传照片。客服会在一个工作日内审核。\n\n## 退款\n\n审核通过并收到退货后，退款在三到五个工作日内原路返回。\n",
    )
    .unwrap();
    let (gbk, _, _) = encoding_rs::GBK.encode("旧系统导出的发票说明\n\n电子发票在订单完成后于订单页申请，七个工作日内开具。如需纸质发票，请联系客服，联系电话 010-12345678。\n");
    std::fs::write(docs.join("invoices-gbk.txt"), &gbk).unwrap();
    std::fs::write(
        docs.join("warranty.docx"),
        samples::docx(&[
            DocxPart::Heading(1, "保修指南"),
            DocxPart::Para("整机保修两年，电池保修一年。人为损坏不在保修范围内。"),
            DocxPart::Table(&[&["配件", "保修期"], &["主机", "两年"], &["电池", "一年"], &["充电器", "一年"]]),
            DocxPart::Heading(2, "送修"),
            DocxPart::Para("送修前请备份数据，并附上购买凭证。"),
        ]),
    )
    .unwrap();
    std::fs::write(docs.join("prices.xlsx"), samples::xlsx("价格表", &[&["型号", "颜色", "价格（元）"], &["A1", "黑色", "1999"], &["A1", "白色", "1999"], &["A2 Pro", "银色", "2999"]])).unwrap();
    std::fs::write(
        docs.join("manual.pdf"),
        samples::pdf(&[
            PdfPage::Latin(&["Quick start", "Hold the power button for three seconds to turn the device on.", "Charge it fully before first use."]),
            PdfPage::Cjk(&["快速入门", "长按电源键三秒开机。", "首次使用前请充满电。"]),
        ]),
    )
    .unwrap();
    std::fs::write(
        docs.join("shipping.html"),
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>配送</title><script>track()</script></head><body><h1>配送说明</h1><p>订单在 24 小时内发货，偏远地区需三到五天送达。</p><ul><li>顺丰：次日达</li><li>邮政：三到五天</li></ul></body></html>",
    )
    .unwrap();
    std::fs::write(docs.join("broken.pdf"), "%PDF-1.7\n1 0 obj << /Type /Catalog").unwrap();
    std::fs::write(
        root.join("chat-export.csv"),
        "会话ID,发送者,发送时间,消息内容\n\
         1001,顾客,2024年3月5日 14:00:05,你好，我买的耳机左边没有声音\n\
         1001,客服小王,2024年3月5日 14:00:40,您好，很抱歉给您带来不便。请问购买多久了？\n\
         1001,顾客,2024年3月5日 14:01:10,上周买的，订单号 20240228113\n\
         1001,顾客,2024年3月5日 14:01:15,我的电话是 13812345678\n\
         1001,客服小王,2024年3月5日 14:02:00,七天内可以直接退换。我已为您登记换货，快递员会联系 13812345678 上门取件。\n\
         1001,顾客,2024年3月5日 14:02:30,好的，谢谢\n\
         1001,客服小王,2024年3月5日 下午2:02:50,不客气，祝您生活愉快！\n\
         1002,顾客,2024/03/05 15:10,发票怎么开？\n\
         1002,客服小李,2024/03/05 15:11,在订单页点击“申请发票”即可，电子发票七个工作日内开具。\n\
         1003,顾客,2024-03-06 09:00:00,在吗\n",
    )
    .unwrap();
}

/// A file read in 1 MiB windows is chunked as if it had been chunked whole: the chunks, and
/// their overlap, run on across the window boundaries.
#[test]
fn chunks_and_overlap_cross_streaming_windows() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("long.md");
    let mut text = String::new();
    let mut i = 0;
    while text.len() < (5 << 20) / 2 {
        i += 1;
        if i % 40 == 0 {
            text.push_str(&format!("# Section {i}\n\n"));
        }
        let words = 5 + (i * 7919) % 20;
        let para: Vec<String> = (0..words).map(|w| format!("w{}", (i * 31 + w) % 997)).collect();
        text.push_str(&para.join(" "));
        text.push_str(if i % 3 == 0 { "。第二句话在这里。\n\n" } else { ".\n\n" });
    }
    std::fs::write(&path, &text).unwrap();
    let opts = IngestOptions { pii: None, chunk_tokens: 256, overlap_tokens: 64, ..Default::default() };
    let (_, recs) = run(&[path], &opts, &d.path().join("out.jsonl"));
    let got: Vec<(usize, usize)> = recs.iter().map(|r| (r["metadata"]["start"].as_u64().unwrap() as usize, r["metadata"]["end"].as_u64().unwrap() as usize)).collect();
    let whole: Vec<(usize, usize)> = chunk(&text, 256, 64, &EstimatedTokens).into_iter().filter(|&(s, e)| !text[s..e].trim().is_empty()).collect();
    assert!(got.len() > 1000, "{} chunks", got.len());
    assert_eq!(got, whole);
    // every chunk overlaps the one before it (unless it starts at a heading), including the
    // chunks that span the 1 MiB window cuts
    let spanning = |w: &[(usize, usize)], at: usize| w[0].0 < at && w[0].1 > at;
    assert!(got.windows(2).any(|w| spanning(w, 1 << 20)) && got.windows(2).any(|w| spanning(w, 2 << 20)));
    for w in got.windows(2).filter(|w| !text[w[1].0..].starts_with('#')) {
        assert!(w[1].0 < w[0].1, "no overlap between {:?} and {:?}", w[0], w[1]);
    }
    for (r, &(s, e)) in recs.iter().zip(&got) {
        assert_eq!(r["text"].as_str().unwrap(), text[s..e].trim());
    }
}
