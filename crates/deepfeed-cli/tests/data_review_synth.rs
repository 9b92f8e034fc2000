//! `deepfeed clean --config`, `deepfeed review` (driven through stdin, with a scripted $EDITOR)
//! and `deepfeed synth` (a local HTTP server answering in the OpenAI shape; a tiny random model).
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn deepfeed(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deepfeed")).args(args).current_dir(cwd).output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn with_stdin(args: &[&str], cwd: &Path, env: &[(&str, &str)], stdin: &str) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deepfeed"));
    c.args(args).current_dir(cwd).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn clean_with_a_config_languages_pseudonyms_and_dropped_file() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let lines = [
        r#"{"input_text":"請問資料庫怎麼備份？","target_text":"联系人：张伟，电话13812345678。"}"#,
        r#"{"input_text":"How do I back up the database?","target_text":"Ask Mr. John Smith at 138-1234-5678."}"#,
        r#"{"input_text":"Comment sauvegarder la base de données ?","target_text":"Utilisez la commande de sauvegarde chaque soir."}"#,
        r#"{"text":"好"}"#,
        r#"{"messages":[{"role":"user","content":"张伟的电话是多少？联系人：张伟"},{"role":"assistant","content":"联系人：张伟，电话13812345678，地址：北京市朝阳区建国路88号"}]}"#,
    ];
    std::fs::write(p.join("in.jsonl"), lines.join("\n") + "\n").unwrap();
    std::fs::write(p.join("clean.yaml"), "steps:\n  - nfkc\n  - chinese: t2s\n  - whitespace\n  - quality: { min_chars: 2 }\n  - pii: { pseudonyms: true }\n  - dedup\n").unwrap();
    let out = ok(&deepfeed(&["clean", "in.jsonl", "--out", "out.jsonl", "--config", "clean.yaml", "--languages", "zh,en", "--dropped", "dropped.jsonl"], p));
    assert!(out.contains("steps: nfkc -> chinese -> whitespace -> quality -> language -> pii -> dedup"), "{out}");
    assert!(out.contains("1 language fr not in zh,en") && out.contains("1 fewer than 2 characters"), "{out}");
    let cleaned = std::fs::read_to_string(p.join("out.jsonl")).unwrap();
    for secret in ["张伟", "13812345678", "138-1234-5678", "John Smith", "建国路88号"] {
        assert!(!cleaned.contains(secret) && !out.contains(secret), "{secret} leaked: {cleaned}");
    }
    let recs: Vec<serde_json::Value> = cleaned.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(recs.len(), 3);
    assert!(recs[0]["input_text"].as_str().unwrap().starts_with("请问资料库"), "t2s: {}", recs[0]);
    assert_eq!(recs[0]["metadata"]["language"], "zh");
    assert_eq!(recs[1]["metadata"]["language"], "en");
    // the same person gets the same fake name in every turn of the conversation
    let turns: Vec<&str> = recs[2]["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    let fake = turns[1].strip_prefix("联系人:").and_then(|t| t.split(',').next()).unwrap();
    assert_eq!(turns[0], format!("{fake}的电话是多少?联系人:{fake}"), "{turns:?}");
    let dropped: Vec<serde_json::Value> = std::fs::read_to_string(p.join("dropped.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(dropped.len(), 2);
    assert_eq!((dropped[0]["line"].as_u64(), dropped[0]["step"].as_str()), (Some(3), Some("language")));
    assert_eq!(dropped[1]["step"], "quality");
    // a config mistake names the file and the field
    std::fs::write(p.join("bad.yaml"), "steps:\n  - quality: { min_char: 2 }\n").unwrap();
    let out = deepfeed(&["clean", "in.jsonl", "--out", "x.jsonl", "--config", "bad.yaml"], p);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("bad.yaml") && err.contains("min_char"), "{err}");
}

#[test]
fn review_queue_through_stdin() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let samples = [
        r#"{"input_text":"退货期限？","target_text":"七天。"}"#,
        r#"{"input_text":"运费谁付？","target_text":"卖家。"}"#,
        r#"{"text":"lorem ipsum"}"#,
        r#"{"input_text":"能开发票吗？","target_text":"可以。"}"#,
    ];
    std::fs::write(p.join("a.jsonl"), samples.join("\n") + "\n").unwrap();
    let out = ok(&deepfeed(&["review", "add", "a.jsonl", "--queue", "q.db"], p));
    assert!(out.contains("4 added") && out.contains("4 pending"), "{out}");
    // the editor: a script that changes the answer in the JSON file it is given
    std::fs::write(p.join("ed.sh"), "#!/bin/sh\nsed -i 's/卖家/买家/' \"$1\"\n").unwrap();
    let editor = format!("sh {}", p.join("ed.sh").display());
    // accept, edit, reject with a reason, skip, quit
    let out = with_stdin(&["review", "next", "--queue", "q.db"], p, &[("EDITOR", &editor), ("VISUAL", "")], "a\ne\nr\noff topic\ns\nq\n");
    let shown = ok(&out);
    assert!(shown.contains("退货期限？") && shown.contains("saved the edited sample"), "{shown}");
    assert!(shown.contains("this session: 1 accepted, 1 edited, 1 rejected, 1 skipped; 1 pending"), "{shown}");
    // an editor that writes an invalid sample is caught, the sample stays pending
    std::fs::write(p.join("bad.sh"), "#!/bin/sh\necho '{\"input_text\": \"x\"}' > \"$1\"\n").unwrap();
    let bad = format!("sh {}", p.join("bad.sh").display());
    let shown = ok(&with_stdin(&["review", "next", "--queue", "q.db"], p, &[("EDITOR", &bad), ("VISUAL", "")], "e\nx\nq\n"));
    assert!(shown.contains("not valid (field `target_text`: missing") && shown.contains("\"x\": type a, e, r, s or q"), "{shown}");
    // a second run: the same file again skips everything decided, the rejection included
    let out = ok(&deepfeed(&["review", "add", "a.jsonl", "--queue", "q.db"], p));
    assert!(out.contains("0 added, 1 already queued, 3 already decided"), "{out}");
    let stats: serde_json::Value = serde_json::from_str(&ok(&deepfeed(&["review", "stats", "--json", "--queue", "q.db"], p))).unwrap();
    assert_eq!((stats["accepted"].as_u64(), stats["edited"].as_u64(), stats["rejected"].as_u64()), (Some(2), Some(1), Some(1)));
    assert_eq!(stats["reasons"][0][0], "off topic");
    let listed = ok(&deepfeed(&["review", "list", "--status", "rejected", "--queue", "q.db"], p));
    assert!(listed.contains("lorem ipsum") && listed.contains("rejected: off topic"), "{listed}");
    ok(&deepfeed(&["review", "export", "--out", "accepted.jsonl", "--queue", "q.db"], p));
    let exported = std::fs::read_to_string(p.join("accepted.jsonl")).unwrap();
    assert_eq!(exported.lines().count(), 2);
    assert!(exported.contains("买家") && !exported.contains("卖家") && !exported.contains("lorem"), "{exported}");
}

/// A one-thread HTTP server answering every POST with an OpenAI chat completion holding a fixed
/// pair; it hands back the requests it saw.
fn openai_server(answers: usize) -> (String, std::thread::JoinHandle<Vec<(String, String)>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut seen = vec![];
        for _ in 0..answers {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                head.push_str(&line);
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let content = "Here you go:\n{\"question\": \"退货期限是多久？\", \"answer\": \"收货后七天内。\"}\nnoise";
            let reply = serde_json::json!({
                "id": "chatcmpl-1", "object": "chat.completion", "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            })
            .to_string();
            let mut s = stream;
            write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}", reply.len()).unwrap();
            seen.push((head, String::from_utf8(body).unwrap()));
        }
        seen
    });
    (url, handle)
}

#[test]
fn synth_through_an_openai_compatible_endpoint() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let chunks = [
        r#"{"text":"退货政策：收货后七天内可以无理由退货。","metadata":{"source":"docs/policy.md","sha256":"abc","chunk":{"start":0,"end":57}}}"#,
        r#"{"text":"发票在订单详情页申请。","metadata":{"source":"docs/invoice.md","sha256":"def","chunk":{"start":0,"end":33}}}"#,
    ];
    std::fs::write(p.join("chunks.jsonl"), chunks.join("\n") + "\n").unwrap();
    let (url, server) = openai_server(2);
    let out = ok(&deepfeed(&["synth", "chunks.jsonl", "--out", "qa.jsonl", "--endpoint", &url, "--api-key", "sk-test", "--remote-model", "qwen", "--per-chunk", "2"], p));
    assert!(out.contains("2 chunks, 2 pairs written"), "{out}");
    assert!(!out.contains("sk-test"));
    let seen = server.join().unwrap();
    assert!(seen[0].0.starts_with("POST /v1/chat/completions ") && seen[0].0.contains("Bearer sk-test"), "{}", seen[0].0);
    let req: serde_json::Value = serde_json::from_str(&seen[0].1).unwrap();
    assert_eq!(req["model"], "qwen");
    let prompt = req["messages"][0]["content"].as_str().unwrap();
    assert!(prompt.contains("收货后七天内可以无理由退货") && prompt.contains("write 2 question-answer pairs") && prompt.contains("docs/policy.md"), "{prompt}");
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(p.join("qa.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["input_text"], "退货期限是多久？");
    assert_eq!(recs[0]["target_text"], "收货后七天内。");
    assert_eq!(recs[1]["metadata"]["source"], "docs/invoice.md");
    assert_eq!(recs[1]["metadata"]["sha256"], "def");
    assert_eq!(recs[1]["metadata"]["chunk"]["end"], 33);
    assert_eq!(recs[1]["metadata"]["chunk_line"], 2);
    assert_eq!(recs[1]["metadata"]["generator"], format!("{url}/chat/completions (qwen)"));
    // the pairs are valid training data
    ok(&deepfeed(&["validate", "qa.jsonl"], p));
    // a server that is not there: each chunk fails, the run says so
    let out = deepfeed(&["synth", "chunks.jsonl", "--out", "qa2.jsonl", "--endpoint", "http://127.0.0.1:9/v1"], p);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no pair written") && err.contains("127.0.0.1:9"), "{err}");
}

#[test]
fn synth_with_a_local_random_model_survives_junk() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    ok(&deepfeed(&["init-tiny", "--out", "base"], p));
    std::fs::write(p.join("chunks.jsonl"), "{\"text\":\"退货政策：七天内可退。\",\"metadata\":{\"source\":\"a.md\"}}\n{\"text\":\"Invoices are sent in three days.\"}\n").unwrap();
    std::fs::write(p.join("t.txt"), "Make {n} pairs from: {chunk}").unwrap();
    let out = ok(&deepfeed(&["synth", "chunks.jsonl", "--out", "qa.jsonl", "--model", "base", "--template", "t.txt", "--max-tokens", "24"], p));
    // random tokens hold no pair: counted, nothing written, no failure
    assert!(out.contains("2 chunks, 0 pairs written") && out.contains("2 chunks gave no readable pair, 0 failed"), "{out}");
    assert_eq!(std::fs::read_to_string(p.join("qa.jsonl")).unwrap(), "");
    std::fs::write(p.join("bad.txt"), "no slot here").unwrap();
    let out = deepfeed(&["synth", "chunks.jsonl", "--out", "qa3.jsonl", "--model", "base", "--template", "bad.txt"], p);
    assert!(String::from_utf8_lossy(&out.stderr).contains("{chunk}"));
}
