//! Chat-log exports (CSV/TSV with a header row, or JSON/JSONL message objects) to multi-turn
//! `messages` records. Columns are mapped by options, with defaults covering common English and
//! Chinese export headers. Each session is rebuilt in time order (file order breaks ties, and is
//! kept when a time cannot be parsed), consecutive messages of the same side are merged, speakers
//! named in `assistant` become `assistant` turns and everyone else `user`; trailing user turns
//! (nothing to learn) are dropped and sessions without an assistant turn are skipped and counted.
//! Chat logs are read whole: sessions have to be regrouped.
use std::collections::HashMap;
use std::path::Path;

use regex::Regex;
use serde_json::{json, Value};

use super::{loc, read_whole, text, Sink};

#[derive(Debug, Clone)]
pub struct ChatLogOptions {
    /// Column/field of the session (conversation) id; default: the first header among
    /// session, session_id, conversation_id, chat_id, thread_id, 会话ID, 会话编号, 对话ID…
    pub session_col: Option<String>,
    /// Column of the speaker; default: speaker, sender, from, role, author, 发送者, 发言人, 角色…
    pub speaker_col: Option<String>,
    /// Column of the time; default: time, timestamp, created_at, datetime, date, 时间, 发送时间…
    pub time_col: Option<String>,
    /// Column of the message text; default: text, content, message, msg, body, 内容, 消息内容…
    pub text_col: Option<String>,
    /// Speakers whose turns are the assistant's (case-insensitive; a speaker whose name starts
    /// with one of them matches too, e.g. `客服` matches `客服小王`).
    pub assistant: Vec<String>,
    /// A system prompt put first in every conversation.
    pub system: Option<String>,
}

impl Default for ChatLogOptions {
    fn default() -> Self {
        ChatLogOptions {
            session_col: None,
            speaker_col: None,
            time_col: None,
            text_col: None,
            assistant: ["assistant", "agent", "客服", "bot", "support", "staff", "service"].map(String::from).to_vec(),
            system: None,
        }
    }
}

const SESSION: [&str; 12] = ["session", "session_id", "sessionid", "conversation", "conversation_id", "chat_id", "thread_id", "dialog_id", "会话", "会话id", "会话编号", "对话id"];
const SPEAKER: [&str; 13] = ["speaker", "sender", "from", "role", "author", "user", "name", "发送者", "发送人", "发言人", "角色", "昵称", "发送方"];
const TIME: [&str; 13] = ["time", "timestamp", "created_at", "create_time", "datetime", "date", "sent_at", "时间", "发送时间", "消息时间", "日期", "创建时间", "timestamp_ms"];
const TEXT: [&str; 10] = ["text", "content", "message", "msg", "body", "内容", "消息", "消息内容", "聊天内容", "文本"];

/// The column to use: the one named by the option (which must exist) or the first default found.
fn pick(headers: &[String], given: Option<&str>, defaults: &[&str], what: &str, required: bool) -> Result<Option<usize>, String> {
    let norm = |s: &str| s.trim().trim_start_matches('\u{feff}').to_lowercase();
    if let Some(g) = given {
        return headers.iter().position(|h| norm(h) == norm(g)).map(Some).ok_or_else(|| format!("no {what} column {g:?}; the columns are: {}", headers.join(", ")));
    }
    let found = defaults.iter().find_map(|d| headers.iter().position(|h| norm(h) == *d));
    if found.is_none() && required {
        return Err(format!("no {what} column found (looked for {}); name it with --{what}-col. The columns are: {}", defaults.join(", "), headers.join(", ")));
    }
    Ok(found)
}

struct Msg {
    row: usize,
    session: String,
    speaker: String,
    time_raw: String,
    time: Option<i64>,
    text: String,
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Milliseconds since 1970-01-01 (UTC when the time has an offset, else local wall time) of the
/// common export formats: `2024-03-05 14:03:22`, `2024/3/5 14:03`, ISO 8601 with `T`, fraction
/// and `Z`/`+08:00`, `2024年3月5日 下午2:03:22`, `14:03` (time of day only), `AM`/`PM`, and Unix
/// seconds (10 digits) or milliseconds (13 digits).
pub fn parse_time(s: &str) -> Option<i64> {
    static RE: std::sync::OnceLock<(Regex, Regex)> = std::sync::OnceLock::new();
    let (full, clock) = RE.get_or_init(|| {
        (
            Regex::new(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$").expect("static regex"),
            Regex::new(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$").expect("static regex"),
        )
    });
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = t.parse().ok()?;
        return match t.len() {
            9 | 10 => Some(n * 1000),
            12 | 13 => Some(n),
            _ => None,
        };
    }
    let upper = t.to_uppercase();
    let pm = t.contains("下午") || t.contains("晚上") || upper.ends_with("PM") || upper.contains(" PM");
    let am = t.contains("上午") || t.contains("凌晨") || t.contains("早上") || upper.ends_with("AM") || upper.contains(" AM");
    let mut n = t.to_string();
    for w in ["上午", "下午", "晚上", "凌晨", "早上", "中午", "AM", "PM", "am", "pm"] {
        n = n.replace(w, " ");
    }
    // the date part (up to the first space, `T` or 日): 年 月 / . become '-'
    let n = n.trim();
    let split = n.char_indices().find(|&(_, c)| c == ' ' || c == 'T' || c == '日').map_or(n.len(), |(i, _)| i);
    let (date, rest) = n.split_at(split);
    let date = if date.contains(':') { date.to_string() } else { date.replace(['年', '月', '/', '.'], "-") };
    let n = format!("{date} {}", rest.trim_start_matches(['T', '日']));
    let n: String = n.split_whitespace().collect::<Vec<_>>().join(" ");
    let hour12 = |h: i64| if pm && h < 12 { h + 12 } else if am && h == 12 { 0 } else { h };
    if let Some(c) = full.captures(&n) {
        let g = |i: usize| c.get(i).map_or(0, |m| m.as_str().parse::<i64>().unwrap_or(0));
        let (y, mo, d) = (g(1), g(2), g(3));
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
            return None;
        }
        let (h, mi, sec) = (hour12(g(4)), g(5), g(6));
        if h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let frac = c.get(7).map_or(0, |m| format!("{:0<3}", m.as_str())[..3].parse::<i64>().unwrap_or(0));
        let mut ms = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + frac;
        if let Some(z) = c.get(8).map(|m| m.as_str()).filter(|z| *z != "Z") {
            let digits: String = z[1..].chars().filter(char::is_ascii_digit).collect();
            let off = digits[..2].parse::<i64>().ok()? * 60 + digits[2..].parse::<i64>().ok()?;
            ms -= if z.starts_with('-') { -off } else { off } * 60_000;
        }
        return Some(ms);
    }
    let c = clock.captures(&n)?;
    let g = |i: usize| c.get(i).map_or(0, |m| m.as_str().parse::<i64>().unwrap_or(0));
    let h = hour12(g(1));
    (h <= 23 && g(2) <= 59).then(|| ((h * 60 + g(2)) * 60 + g(3)) * 1000)
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Rows of the export as (headers, row number, cells).
fn rows(path: &Path, sink: &Sink) -> Result<(Vec<String>, Vec<(usize, Vec<String>)>), String> {
    let bytes = read_whole(path, &sink.options().limits)?;
    let ext = super::format_of(path);
    let (textv, _) = text::decode(&bytes);
    if ext == "json" || ext == "jsonl" {
        let values: Vec<(usize, Value)> = if ext == "jsonl" {
            textv.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, l)| serde_json::from_str(l).map(|v| (i + 1, v)).map_err(|e| format!("line {}: not valid JSON: {e}", i + 1))).collect::<Result<_, _>>()?
        } else {
            let v: Value = serde_json::from_str(textv.trim_start_matches('\u{feff}')).map_err(|e| format!("not valid JSON: {e}"))?;
            let arr = match v {
                Value::Array(a) => a,
                Value::Object(o) => match o.into_iter().find(|(_, x)| x.as_array().is_some_and(|a| a.first().is_some_and(Value::is_object))) {
                    Some((_, Value::Array(a))) => a,
                    _ => return Err("expected an array of message objects (or an object holding one)".into()),
                },
                _ => return Err("expected an array of message objects".into()),
            };
            arr.into_iter().enumerate().map(|(i, v)| (i, v)).collect()
        };
        let mut headers: Vec<String> = Vec::new();
        for (_, v) in &values {
            if let Value::Object(o) = v {
                for k in o.keys() {
                    if !headers.contains(k) {
                        headers.push(k.clone());
                    }
                }
            }
        }
        let rows = values.iter().map(|(i, v)| (*i, headers.iter().map(|h| v.get(h).map(cell).unwrap_or_default()).collect())).collect();
        return Ok((headers, rows));
    }
    let mut rdr = csv::ReaderBuilder::new().delimiter(if ext == "tsv" { b'\t' } else { b',' }).flexible(true).from_reader(textv.as_bytes());
    let headers: Vec<String> = rdr.headers().map_err(|e| format!("header row: {e}"))?.iter().map(|h| h.trim_start_matches('\u{feff}').trim().to_string()).collect();
    let mut out = Vec::new();
    for (i, r) in rdr.records().enumerate() {
        let r = r.map_err(|e| format!("row {}: {e}", i + 2))?;
        out.push((i + 2, r.iter().map(String::from).collect()));
    }
    Ok((headers, out))
}

pub fn read(path: &Path, sink: &mut Sink) -> Result<(), String> {
    let o = sink.options().chat.clone();
    let (headers, rows) = rows(path, sink)?;
    let session = pick(&headers, o.session_col.as_deref(), &SESSION, "session", false)?;
    let speaker = pick(&headers, o.speaker_col.as_deref(), &SPEAKER, "speaker", true)?.expect("required");
    let time = pick(&headers, o.time_col.as_deref(), &TIME, "time", false)?;
    let text = pick(&headers, o.text_col.as_deref(), &TEXT, "text", true)?.expect("required");
    if session.is_none() {
        sink.note("no session column: the whole file is one conversation");
    }
    if time.is_none() {
        sink.note("no time column: messages kept in file order");
    }
    let get = |r: &[String], i: usize| r.get(i).map(|s| s.trim().to_string()).unwrap_or_default();
    let mut order: Vec<String> = Vec::new();
    let mut sessions: HashMap<String, Vec<Msg>> = HashMap::new();
    let mut empty = 0;
    for (row, cells) in &rows {
        let m = Msg {
            row: *row,
            session: session.map(|i| get(cells, i)).unwrap_or_default(),
            speaker: get(cells, speaker),
            time_raw: time.map(|i| get(cells, i)).unwrap_or_default(),
            time: time.and_then(|i| parse_time(&get(cells, i))),
            text: cells.get(text).map(|s| s.trim().to_string()).unwrap_or_default(),
        };
        if m.text.is_empty() {
            empty += 1;
            continue;
        }
        if !sessions.contains_key(&m.session) {
            order.push(m.session.clone());
        }
        sessions.entry(m.session.clone()).or_default().push(m);
    }
    if empty > 0 {
        sink.note(format!("{empty} empty message(s) left out"));
    }
    let assistant: Vec<String> = o.assistant.iter().map(|a| a.trim().to_lowercase()).filter(|a| !a.is_empty()).collect();
    let is_assistant = |s: &str| {
        let s = s.to_lowercase();
        assistant.iter().any(|a| s == *a || s.starts_with(a.as_str()))
    };
    let (mut unordered, mut no_assistant, mut trailing) = (0, Vec::new(), 0);
    for id in order {
        let mut msgs = sessions.remove(&id).unwrap_or_default();
        if time.is_some() {
            if msgs.iter().all(|m| m.time.is_some()) {
                msgs.sort_by_key(|m| m.time); // stable: file order breaks ties
            } else {
                unordered += 1;
            }
        }
        let mut turns: Vec<(String, String)> = Vec::new();
        for m in &msgs {
            let role = if is_assistant(&m.speaker) { "assistant" } else { "user" };
            match turns.last_mut() {
                Some((r, c)) if r == role => {
                    c.push('\n');
                    c.push_str(&m.text);
                }
                _ => turns.push((role.to_string(), m.text.clone())),
            }
        }
        while turns.last().is_some_and(|(r, _)| r == "user") {
            turns.pop();
            trailing += 1;
        }
        if turns.is_empty() {
            no_assistant.push(id);
            continue;
        }
        if let Some(s) = &o.system {
            turns.insert(0, ("system".into(), s.clone()));
        }
        let first = msgs.iter().map(|m| m.row).min().unwrap_or(0);
        let last = msgs.iter().map(|m| m.row).max().unwrap_or(0);
        let mut l = loc([("session", json!(id)), ("rows", json!([first, last])), ("messages", json!(msgs.len()))]);
        if time.is_some() {
            l.insert("start_time".into(), json!(msgs.first().map(|m| m.time_raw.clone())));
            l.insert("end_time".into(), json!(msgs.last().map(|m| m.time_raw.clone())));
        }
        sink.chat(turns, l)?;
    }
    if unordered > 0 {
        sink.note(format!("{unordered} session(s) with unparsable times kept in file order"));
    }
    if trailing > 0 {
        sink.note(format!("{trailing} trailing user turn(s) without an answer dropped"));
    }
    if !no_assistant.is_empty() {
        let shown: Vec<&str> = no_assistant.iter().take(5).map(String::as_str).collect();
        sink.note(format!(
            "{} session(s) without an assistant turn skipped ({}{}); assistant speakers: {}",
            no_assistant.len(),
            shown.join(", "),
            if no_assistant.len() > 5 { ", …" } else { "" },
            o.assistant.join(",")
        ));
    }
    Ok(())
}
