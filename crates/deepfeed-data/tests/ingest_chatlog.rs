//! Chat-log exports to multi-turn `messages` records: sessions rebuilt in time order (Chinese
//! and ISO time formats), same-side messages merged, assistant speakers mapped, sessions without
//! an answer skipped and reported, personal data masked consistently within a conversation.
use deepfeed_data::ingest::chatlog::{parse_time, ChatLogOptions};
use deepfeed_data::ingest::{ingest, EstimatedTokens, IngestOptions, Inputs, Quiet};
use deepfeed_data::pii::PiiOptions;
use serde_json::Value;

#[test]
fn time_formats() {
    let base = parse_time("2024-03-05 14:03:22").unwrap();
    // 2024-03-05 is day 19787 since 1970-01-01
    assert_eq!(base, ((19787 * 24 + 14) * 60 + 3) * 60_000 + 22_000);
    for s in ["2024/3/5 14:03:22", "2024年3月5日 14:03:22", "2024年03月05日 下午2:03:22", "2024-03-05T14:03:22", "2024-03-05 2:03:22 PM", "2024.03.05 14:03:22"] {
        assert_eq!(parse_time(s), Some(base), "{s}");
    }
    assert_eq!(parse_time("2024-03-05T14:03:22.250Z"), Some(base + 250));
    assert_eq!(parse_time("2024-03-05T22:03:22+08:00"), Some(base), "offsets are applied");
    assert_eq!(parse_time("2024-03-05T09:03:22-05:00"), Some(base));
    assert_eq!(parse_time("1709647402"), Some(1_709_647_402_000));
    assert_eq!(parse_time("1709647402123"), Some(1_709_647_402_123));
    assert_eq!(parse_time("14:03"), Some((14 * 60 + 3) * 60_000));
    assert_eq!(parse_time("2024年3月5日"), Some(19787 * 86_400_000));
    assert_eq!(parse_time("上午12:30"), Some(30 * 60_000));
    for bad in ["", "yesterday", "2024-13-01 10:00", "25:00", "12345"] {
        assert_eq!(parse_time(bad), None, "{bad}");
    }
}

fn run(file: &std::path::Path, opts: &IngestOptions) -> (deepfeed_data::ingest::IngestReport, Vec<Value>) {
    let out = file.with_extension("out.jsonl");
    let _ = std::fs::remove_file(&out);
    let r = ingest(&Inputs { chat_logs: vec![file.to_path_buf()], ..Default::default() }, &out, opts, &EstimatedTokens, &mut Quiet).unwrap();
    let recs: Vec<Value> = std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for v in &recs {
        deepfeed_data::Record::parse(v).unwrap();
    }
    (r, recs)
}

fn turns(v: &Value) -> Vec<(String, String)> {
    v["messages"].as_array().unwrap().iter().map(|m| (m["role"].as_str().unwrap().to_string(), m["content"].as_str().unwrap().to_string())).collect()
}

#[test]
fn csv_export_to_conversations() {
    let d = tempfile::tempdir().unwrap();
    let csv = d.path().join("export.csv");
    // rows out of order across sessions; Chinese headers and time formats
    std::fs::write(
        &csv,
        "会话ID,发送者,发送时间,消息内容\n\
         s1,客服小王,2024年3月5日 14:01:10,您好，请问有什么可以帮您？\n\
         s2,顾客B,2024/03/05 09:00,在吗\n\
         s1,顾客A,2024年3月5日 14:00:05,我想退货\n\
         s1,顾客A,2024年3月5日 14:02:00,订单号是 A20240305001，手机 13812345678\n\
         s1,客服小王,2024年3月5日 14:03:00,好的，已为您登记，退款会原路返回。\n\
         s1,顾客A,2024年3月5日 14:03:30,谢谢\n\
         s1,客服小王,2024年3月5日 下午2:04:00,不客气！您的手机 13812345678 会收到短信。\n\
         s1,顾客A,2024年3月5日 14:05:00,好\n\
         s2,顾客B,2024/03/05 09:01,有人吗\n\
         s3,顾客C,2024-03-06 10:00:00,\n",
    )
    .unwrap();
    let mut opts = IngestOptions { pii: Some(PiiOptions { consistent: true, ..Default::default() }), ..Default::default() };
    opts.chat.system = Some("你是某商城的客服。".into());
    let (r, recs) = run(&csv, &opts);
    assert_eq!(recs.len(), 1, "{:#?}", r.sources);
    let t = turns(&recs[0]);
    assert_eq!(t[0], ("system".into(), "你是某商城的客服。".into()));
    // the customer's first message came first in time although it is later in the file
    assert_eq!(t[1], ("user".into(), "我想退货".into()));
    assert_eq!(t[2], ("assistant".into(), "您好，请问有什么可以帮您？".into()));
    assert_eq!(t[3], ("user".into(), "订单号是 A20240305001，手机 <PHONE_1>".into()));
    assert_eq!(t[4].0, "assistant");
    // 14:03:00 and 下午2:04:00 answers are separate turns around the user's 谢谢
    assert_eq!(t[5], ("user".into(), "谢谢".into()));
    assert_eq!(t[6], ("assistant".into(), "不客气！您的手机 <PHONE_1> 会收到短信。".into()), "same number, same placeholder across turns");
    assert_eq!(t.len(), 7, "the trailing 好 (no answer) is dropped");
    let m = &recs[0]["metadata"];
    assert_eq!(m["session"], "s1");
    assert_eq!(m["format"], "chat-log");
    assert_eq!(m["rows"], serde_json::json!([2, 9]));
    assert_eq!(m["messages"], 7);
    let notes = &r.sources[0].notes;
    assert!(notes.iter().any(|n| n.contains("1 session(s) without an assistant turn skipped (s2)")), "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("1 empty message(s)")), "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("trailing user turn")), "{notes:?}");
}

#[test]
fn json_export_with_mapped_fields_and_merged_messages() {
    let d = tempfile::tempdir().unwrap();
    let json = d.path().join("chat.json");
    std::fs::write(
        &json,
        r#"{"export": "shop", "data": [
            {"conv": 7, "who": "alice", "at": "2024-03-05T10:00:00Z", "says": "Hi"},
            {"conv": 7, "who": "alice", "at": "2024-03-05T10:00:05Z", "says": "my parcel is late"},
            {"conv": 7, "who": "Support-Bot", "at": "2024-03-05T10:00:09Z", "says": "Sorry! Let me check."},
            {"conv": 7, "who": "support-bot", "at": "2024-03-05T10:00:30Z", "says": "It arrives tomorrow."},
            {"conv": 8, "who": "carol", "at": "bad time", "says": "Question?"},
            {"conv": 8, "who": "helper", "at": "2024-03-05T11:00:00Z", "says": "Answer."}
        ]}"#,
    )
    .unwrap();
    let mut opts = IngestOptions::default();
    opts.chat = ChatLogOptions {
        session_col: Some("conv".into()),
        speaker_col: Some("who".into()),
        time_col: Some("at".into()),
        text_col: Some("says".into()),
        assistant: vec!["support".into(), "helper".into()],
        system: None,
    };
    let (r, recs) = run(&json, &opts);
    assert_eq!(recs.len(), 2, "{:#?}", r.sources);
    assert_eq!(
        turns(&recs[0]),
        vec![("user".into(), "Hi\nmy parcel is late".into()), ("assistant".into(), "Sorry! Let me check.\nIt arrives tomorrow.".into())]
    );
    assert_eq!(recs[0]["metadata"]["session"], "7");
    assert_eq!(turns(&recs[1]).len(), 2);
    assert!(r.sources[0].notes.iter().any(|n| n.contains("unparsable times kept in file order")));
    // a column that does not exist is a clear per-file error naming the columns
    opts.chat.text_col = Some("message".into());
    let out = d.path().join("x.jsonl");
    let e = ingest(&Inputs { chat_logs: vec![json.clone()], ..Default::default() }, &out, &opts, &EstimatedTokens, &mut Quiet).unwrap_err().to_string();
    assert!(e.contains("no text column \"message\"") && e.contains("says"), "{e}");
}
