//! Every supported input format converts to the project JSONL with provenance; bad lines are
//! rejected with their reasons and never dropped silently; validate quarantines invalid lines.
use std::path::Path;

use deepfeed_data::convert::{convert, ConvertOptions, Format};
use deepfeed_data::validate::{validate, TokenCounter};
use deepfeed_data::Record;
use serde_json::Value;

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn run(dir: &Path, name: &str, content: &str, opts: ConvertOptions) -> (deepfeed_data::convert::ConvertReport, Vec<Value>) {
    let input = dir.join(name);
    std::fs::write(&input, content).unwrap();
    let out = dir.join(format!("{name}.out.jsonl"));
    let report = convert(&input, &out, &opts).unwrap();
    // everything written is valid project data
    for v in lines(&out) {
        Record::parse(&v).unwrap_or_else(|e| panic!("{name}: {e}: {v}"));
    }
    (report, lines(&out))
}

#[test]
fn every_format_converts() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();

    let (r, out) = run(p, "a.tsv", "你好\t你好！\nWhat is 2+2?\tFour.\\nSure.\nno tab here\n", Default::default());
    assert_eq!((r.read, r.written, r.rejected), (3, 2, 1));
    assert_eq!(out[1]["target_text"], "Four.\nSure.");
    assert_eq!(out[0]["metadata"]["line"], 1);
    assert_eq!(out[0]["metadata"]["format"], "tsv");
    let rejected = lines(r.rejected_file.as_ref().unwrap());
    assert_eq!(rejected[0]["line"], 3);
    assert!(rejected[0]["error"].as_str().unwrap().contains("no tab"));

    let csv = "\u{feff}question,answer,category\n\"退货政策？\",\"七天无理由退货, 运费自理\",faq\n\"multi\nline\",\"ok\",x\n";
    let (r, out) = run(p, "b.csv", csv, Default::default());
    assert_eq!((r.written, r.rejected), (2, 0));
    assert_eq!(out[0]["target_text"], "七天无理由退货, 运费自理");
    assert_eq!(out[1]["input_text"], "multi\nline");

    let alpaca = r#"[{"instruction": "Translate", "input": "你好", "output": "Hello"}, {"instruction": "Greet", "input": "", "output": "Hi", "system": "Be brief."}, {"instruction": "x"}]"#;
    let (r, out) = run(p, "c.json", alpaca, Default::default());
    assert_eq!((r.format.as_str(), r.written, r.rejected), ("alpaca", 2, 1));
    assert_eq!(out[0]["input_text"], "Translate\n\n你好");
    assert_eq!(out[1]["messages"][0]["role"], "system");

    let sharegpt = concat!(
        r#"{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}"#, "\n",
        r#"{"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}, {"from": "human", "value": "c"}, {"from": "gpt", "value": "d"}]}"#, "\n",
        r#"{"conversations": [{"from": "robot", "value": "?"}]}"#, "\n"
    );
    let (r, out) = run(p, "d.jsonl", sharegpt, Default::default());
    assert_eq!((r.format.as_str(), r.written, r.rejected), ("sharegpt", 2, 1));
    assert_eq!(out[0]["input_text"], "hi");
    assert_eq!(out[1]["messages"].as_array().unwrap().len(), 5);

    let openai = concat!(r#"{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}"#, "\n", "{not json\n");
    let (r, out) = run(p, "e.jsonl", openai, Default::default());
    assert_eq!((r.format.as_str(), r.written, r.rejected), ("openai", 1, 1));
    assert_eq!(out[0]["target_text"], "a");

    let pref = concat!(r#"{"prompt": "p", "chosen": "good", "rejected": "bad", "metadata": {"id": 7}}"#, "\n", r#"{"prompt": "p", "chosen": "same", "rejected": "same"}"#, "\n");
    let (r, out) = run(p, "f.jsonl", pref, Default::default());
    assert_eq!((r.format.as_str(), r.written, r.rejected), ("preference", 1, 1));
    assert_eq!(out[0]["rejected_text"], "bad");
    assert_eq!(out[0]["metadata"]["id"], 7, "input metadata is kept");

    let (_, out) = run(p, "g.md", "# 标题\n\n正文。\n", Default::default());
    assert_eq!(out[0]["text"], "# 标题\n\n正文。\n");

    // explicit format and field mapping
    let custom = r#"{"q": "问", "a": "答"}"#;
    let opts = ConvertOptions { format: Some(Format::Alpaca), input_field: Some("q".into()), target_field: Some("a".into()), header: false, progress: false };
    let (r, out) = run(p, "h.jsonl", custom, opts);
    assert_eq!((r.written, out[0]["input_text"].as_str()), (1, Some("问")));
}

#[test]
fn convert_refuses_what_it_cannot_do() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::write(p.join("x.bin"), "data").unwrap();
    let e = convert(&p.join("x.bin"), &p.join("o.jsonl"), &Default::default()).unwrap_err().to_string();
    assert!(e.contains("--from"), "{e}");
    std::fs::write(p.join("empty.tsv"), "").unwrap();
    let e = convert(&p.join("empty.tsv"), &p.join("o.jsonl"), &Default::default()).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    assert!(!p.join("o.jsonl").exists(), "no output for a failed conversion");
    std::fs::write(p.join("q.csv"), "foo,bar\n1,2\n").unwrap();
    let e = convert(&p.join("q.csv"), &p.join("o.jsonl"), &Default::default()).unwrap_err().to_string();
    assert!(e.contains("q.csv:1") && e.contains("--input-field"), "{e}");
    let e = convert(&p.join("q.csv"), &p.join("q.csv"), &Default::default()).unwrap_err().to_string();
    assert!(e.contains("another file"), "{e}");
    let mut bad = b"ok\tfine\n".to_vec();
    bad.extend_from_slice(b"\xff\xfe\tbroken\n");
    std::fs::write(p.join("u.tsv"), bad).unwrap();
    let r = convert(&p.join("u.tsv"), &p.join("u.jsonl"), &Default::default()).unwrap();
    assert_eq!((r.written, r.rejected), (1, 1));
}

struct Chars;
impl TokenCounter for Chars {
    fn count(&self, text: &str) -> usize {
        text.chars().count()
    }
}

#[test]
fn validate_quarantines_invalid_lines() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("train.jsonl");
    let mut content = String::new();
    content.push_str("{\"input_text\": \"q\", \"target_text\": \"a\"}\n");
    content.push_str("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n");
    content.push_str("{\"text\": \"plain\"}\n\n");
    content.push_str("{\"input_text\": \"q\", \"target_text\": \"\"}\n");
    content.push_str("[1, 2]\n");
    content.push_str("{\"input_text\": \"long\", \"target_text\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}\n");
    std::fs::write(&f, &content).unwrap();
    let r = validate(&f, Some((&Chars, 20)), false).unwrap();
    assert_eq!((r.lines, r.valid, r.invalid), (6, 3, 3));
    assert_eq!(r.shapes.get("chat"), Some(&1));
    assert!(r.errors[0].starts_with(&format!("{}:5: field `target_text`", f.display())), "{:?}", r.errors);
    assert!(r.errors[1].contains(":6: expected a JSON object"));
    assert!(r.errors[2].contains(":7:") && r.errors[2].contains("tokens"));
    let q = lines(r.quarantine_file.as_ref().unwrap());
    assert_eq!(q.iter().map(|v| v["line"].as_u64().unwrap()).collect::<Vec<_>>(), [5, 6, 7]);
    assert_eq!(std::fs::read_to_string(&f).unwrap(), content, "the input is never changed");
}
