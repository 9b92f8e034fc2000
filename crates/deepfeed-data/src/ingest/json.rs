//! JSON and JSONL: one text record per JSON record. The text is the field named by
//! `json_text_field` (a dotted path such as `doc.body`), else the first of `text`, `content`,
//! `body`, `document`, `passage`, else every scalar field as `key: value` lines. A `.json` file
//! holds one array of records, an object whose first array-of-objects field holds them, or a
//! single record; it is read whole. `.jsonl` is streamed line by line, and a broken line is
//! noted and skipped. Long texts are chunked. Provenance: `line` (JSONL) or `index` (JSON).
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::{json, Map, Value};

use super::{loc, read_whole, Sink};

const TEXT_FIELDS: [&str; 5] = ["text", "content", "body", "document", "passage"];

/// The text of one JSON record, or why it has none.
pub fn record_text(v: &Value, field: Option<&str>) -> Result<String, String> {
    if let Value::String(s) = v {
        return Ok(s.clone());
    }
    let Value::Object(o) = v else { return Err(format!("expected an object or a string, found {}", kind(v))) };
    if let Some(path) = field {
        let mut cur = v;
        for part in path.split('.') {
            cur = cur.get(part).ok_or_else(|| format!("no field {path:?}"))?;
        }
        return match cur {
            Value::String(s) => Ok(s.clone()),
            Value::Null => Err(format!("field {path:?} is null")),
            other => Ok(other.to_string()),
        };
    }
    if let Some(s) = TEXT_FIELDS.iter().find_map(|f| o.get(*f).and_then(Value::as_str)) {
        return Ok(s.to_string());
    }
    let lines: Vec<String> = o
        .iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) if !s.trim().is_empty() => Some(format!("{k}: {}", s.trim())),
            Value::Number(n) => Some(format!("{k}: {n}")),
            Value::Bool(b) => Some(format!("{k}: {b}")),
            _ => None,
        })
        .collect();
    Ok(lines.join("\n"))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn emit(v: &Value, l: Map<String, Value>, sink: &mut Sink, missing: &mut usize) -> Result<(), String> {
    let field = sink.options().json_text_field.clone();
    match record_text(v, field.as_deref()) {
        Ok(t) => sink.chunks(&t, l, None),
        Err(_) => {
            *missing += 1;
            Ok(())
        }
    }
}

pub fn read(path: &Path, lines: bool, sink: &mut Sink) -> Result<(), String> {
    let mut missing = 0;
    if lines {
        let mut r = BufReader::new(File::open(path).map_err(|e| e.to_string())?);
        let (mut buf, mut n, mut bad) = (Vec::new(), 0, Vec::new());
        loop {
            buf.clear();
            if r.read_until(b'\n', &mut buf).map_err(|e| e.to_string())? == 0 {
                break;
            }
            n += 1;
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim().trim_start_matches('\u{feff}');
            if line.is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(line) {
                Ok(v) => emit(&v, loc([("line", json!(n))]), sink, &mut missing)?,
                Err(e) => bad.push(format!("line {n}: {e}")),
            }
        }
        if !bad.is_empty() {
            sink.note(format!("{} line(s) are not valid JSON and were skipped (first: {})", bad.len(), bad[0]));
        }
    } else {
        let bytes = read_whole(path, &sink.options().limits)?;
        let text = String::from_utf8_lossy(&bytes);
        let v: Value = serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|e| format!("not valid JSON: {e}"))?;
        let items: Vec<&Value> = match &v {
            Value::Array(a) => a.iter().collect(),
            Value::Object(o) => match o.values().find(|x| x.as_array().is_some_and(|a| a.first().is_some_and(Value::is_object))) {
                Some(Value::Array(a)) => a.iter().collect(),
                _ => vec![&v],
            },
            other => return Err(format!("expected an array or an object of records, found {}", kind(other))),
        };
        for (i, item) in items.into_iter().enumerate() {
            emit(item, loc([("index", json!(i))]), sink, &mut missing)?;
        }
    }
    if missing > 0 {
        let field = sink.options().json_text_field.clone().unwrap_or_else(|| "text".into());
        sink.note(format!("{missing} record(s) without a {field:?} field were skipped"));
    }
    Ok(())
}
