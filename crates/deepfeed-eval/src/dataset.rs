//! The evaluation data: project JSONL (`input_text`/`target_text`, `messages`, `text`), each
//! record optionally saying how it is judged in `metadata.eval`:
//!
//! ```json
//! {"input_text": "2+2?", "target_text": "4", "metadata": {"eval": {"kind": "contains", "task": "math"}}}
//! {"input_text": "Capital of France?", "metadata": {"eval": {"kind": "choice", "choices": ["Paris", "Rome"], "answer": 0}}}
//! {"input_text": "Sentiment: great!", "target_text": "positive", "metadata": {"eval": {"kind": "label", "labels": ["positive", "negative"]}}}
//! ```
//!
//! Records without `metadata.eval` use the file's `task` settings from the config.
use std::path::Path;

use deepfeed_model::ChatMessage;
use regex::Regex;
use serde_json::Value;

use crate::config::{TaskDefaults, TaskKind};
use crate::error::{EvalError, Result};

/// How one record is judged.
#[derive(Debug, Clone)]
pub struct Task {
    /// Groups records for per-task accuracy and thresholds.
    pub name: String,
    pub kind: TaskKind,
    /// Kind `choice`: the options, and the index of the right one.
    pub choices: Vec<String>,
    pub answer: Option<usize>,
    /// Kind `regex`.
    pub pattern: Option<Regex>,
    /// Kind `label`.
    pub labels: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Shape {
    /// `input_text` + `target_text`
    Pair,
    /// `messages`; the last assistant turn is the target
    Chat,
    /// `text`: perplexity of the whole text only
    Text,
}

#[derive(Debug, Clone)]
pub struct EvalSample {
    /// 1-based line in the data file.
    pub line: usize,
    pub shape: Shape,
    /// The conversation before the expected answer (empty for `text` records).
    pub context: Vec<ChatMessage>,
    /// The expected answer (`target_text`, or the content of the last assistant turn).
    pub target: Option<String>,
    /// `text` records.
    pub text: Option<String>,
    pub task: Task,
}

impl EvalSample {
    /// The user-visible prompt (last user turn) for reports.
    pub fn prompt_preview(&self) -> String {
        if let Some(t) = &self.text {
            return t.chars().take(200).collect();
        }
        self.context.iter().rev().find(|m| m.role == "user").map(|m| m.content.clone()).unwrap_or_default()
    }

    /// Whether the model generates an answer for this record (everything with a prompt except
    /// multiple choice, which is scored by log-likelihood).
    pub fn generates(&self) -> bool {
        !matches!(self.shape, Shape::Text) && self.task.kind != TaskKind::Choice
    }
}

fn str_list(v: &Value, field: &str) -> std::result::Result<Vec<String>, String> {
    let arr = v.as_array().ok_or_else(|| format!("field `{field}`: must be a list of strings, found {}", deepfeed_data::record::kind(v)))?;
    arr.iter()
        .enumerate()
        .map(|(i, x)| x.as_str().map(String::from).ok_or_else(|| format!("field `{field}[{i}]`: must be a string, found {}", deepfeed_data::record::kind(x))))
        .collect()
}

/// Parses one JSON line into a sample; `Err` is the message without the file/line prefix.
fn parse_line(v: &Value, defaults: &TaskDefaults) -> std::result::Result<EvalSample, String> {
    let obj = v.as_object().ok_or_else(|| format!("expected a JSON object, found {}", deepfeed_data::record::kind(v)))?;
    let get_str = |k: &str| -> std::result::Result<Option<String>, String> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("field `{k}`: must be a string, found {}", deepfeed_data::record::kind(other))),
        }
    };
    let eval = match obj.get("metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => match m.get("eval") {
            None | Some(Value::Null) => None,
            Some(Value::Object(e)) => Some(e.clone()),
            Some(other) => return Err(format!("field `metadata.eval`: must be an object, found {}", deepfeed_data::record::kind(other))),
        },
        Some(other) => return Err(format!("field `metadata`: must be an object, found {}", deepfeed_data::record::kind(other))),
    };
    const EVAL_FIELDS: [&str; 6] = ["kind", "task", "choices", "answer", "pattern", "labels"];
    if let Some(e) = &eval {
        if let Some(k) = e.keys().find(|k| !EVAL_FIELDS.contains(&k.as_str())) {
            return Err(format!("field `metadata.eval.{k}`: unknown; expected one of {}", EVAL_FIELDS.join(", ")));
        }
    }
    let e = |k: &str| eval.as_ref().and_then(|e| e.get(k)).filter(|v| !v.is_null());

    // shape
    let (shape, context, target, text) = if obj.contains_key("messages") {
        let list = obj["messages"].as_array().ok_or("field `messages`: must be a list")?;
        let mut msgs = Vec::new();
        for (i, m) in list.iter().enumerate() {
            let role = m.get("role").and_then(|r| r.as_str()).ok_or(format!("field `messages[{i}].role`: must be a string"))?;
            if !["system", "user", "assistant"].contains(&role) {
                return Err(format!("field `messages[{i}].role`: {role:?} is not one of system, user, assistant"));
            }
            let content = m.get("content").and_then(|c| c.as_str()).ok_or(format!("field `messages[{i}].content`: must be a string"))?;
            msgs.push(ChatMessage::new(role, content));
        }
        // the last assistant turn is the expected answer; a conversation ending on a user turn
        // has no target (fine for multiple choice and regex)
        let (context, target) = match msgs.last() {
            Some(m) if m.role == "assistant" => (msgs[..msgs.len() - 1].to_vec(), Some(m.content.clone())),
            _ => (msgs, None),
        };
        if !context.iter().any(|m| m.role == "user") {
            return Err("field `messages`: needs a user turn before the answer".into());
        }
        (Shape::Chat, context, target, None)
    } else if obj.contains_key("input_text") || obj.contains_key("target_text") {
        let input = get_str("input_text")?.ok_or("field `input_text`: missing (the prompt of the sample)")?;
        (Shape::Pair, vec![ChatMessage::new("user", &input)], get_str("target_text")?, None)
    } else if obj.contains_key("text") {
        let t = get_str("text")?.filter(|t| !t.trim().is_empty()).ok_or("field `text`: is empty")?;
        (Shape::Text, vec![], None, Some(t))
    } else {
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        return Err(format!("expected input_text + target_text, messages, or text; found fields {keys:?}"));
    };
    let target = target.filter(|t| !t.trim().is_empty());

    // task
    let kind = match e("kind") {
        Some(k) => serde_json::from_value::<TaskKind>(k.clone())
            .map_err(|_| format!("field `metadata.eval.kind`: expected exact, contains, regex, choice, label or none, found {k}"))?,
        None if eval.as_ref().is_some_and(|e| e.contains_key("choices")) => TaskKind::Choice,
        None => defaults.kind,
    };
    let kind = if matches!(shape, Shape::Text) { TaskKind::None } else { kind };
    let name = match e("task") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(format!("field `metadata.eval.task`: must be a string, found {}", deepfeed_data::record::kind(other))),
        None if eval.as_ref().is_some_and(|e| e.contains_key("kind")) => kind.name().to_string(),
        None => defaults.name.clone().unwrap_or_else(|| kind.name().to_string()),
    };
    let mut task = Task { name, kind, choices: vec![], answer: None, pattern: None, labels: vec![] };
    match kind {
        TaskKind::Choice => {
            let choices = e("choices").ok_or("multiple choice without `metadata.eval.choices` (a list of the options)")?;
            task.choices = str_list(choices, "metadata.eval.choices")?;
            if task.choices.len() < 2 {
                return Err(format!("field `metadata.eval.choices`: needs at least 2 options, found {}", task.choices.len()));
            }
            task.answer = Some(match e("answer") {
                Some(Value::Number(n)) => {
                    let i = n.as_u64().map(|i| i as usize).filter(|&i| i < task.choices.len());
                    i.ok_or(format!("field `metadata.eval.answer`: must be an index in 0..{}, found {n}", task.choices.len()))?
                }
                Some(Value::String(s)) => task.choices.iter().position(|c| c == s).ok_or(format!("field `metadata.eval.answer`: {s:?} is not one of the choices"))?,
                Some(other) => return Err(format!("field `metadata.eval.answer`: must be an index or a choice, found {}", deepfeed_data::record::kind(other))),
                None => match &target {
                    Some(t) => task.choices.iter().position(|c| c.trim() == t.trim()).ok_or(format!(
                        "field `target_text`: {t:?} is not one of the choices (or give `metadata.eval.answer`)"
                    ))?,
                    None => return Err("multiple choice without an answer: give `metadata.eval.answer` (index) or the right choice as target".into()),
                },
            });
        }
        TaskKind::Regex => {
            let p = match e("pattern") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => return Err(format!("field `metadata.eval.pattern`: must be a string, found {}", deepfeed_data::record::kind(other))),
                None => defaults.pattern.clone().ok_or("kind regex without a pattern: give `metadata.eval.pattern` or `task.pattern` in the config")?,
            };
            task.pattern = Some(Regex::new(&p).map_err(|err| format!("field `metadata.eval.pattern`: not a valid regex: {err}"))?);
        }
        TaskKind::Label => {
            task.labels = match e("labels") {
                Some(l) => str_list(l, "metadata.eval.labels")?,
                None => defaults.labels.clone(),
            };
            if task.labels.is_empty() {
                return Err("kind label without a label set: give `metadata.eval.labels` or `task.labels` in the config".into());
            }
            if let Some(t) = &target {
                if !task.labels.iter().any(|l| crate::accuracy::normalise(l) == crate::accuracy::normalise(t)) {
                    return Err(format!("field `target_text`: {t:?} is not one of the labels {:?}", task.labels));
                }
            }
        }
        _ => {}
    }
    // which kinds need the expected answer
    let needs_target = matches!(shape, Shape::Pair | Shape::Chat) && matches!(kind, TaskKind::Exact | TaskKind::Contains | TaskKind::Label | TaskKind::None);
    if needs_target && target.is_none() {
        let field = if matches!(shape, Shape::Chat) { "messages" } else { "target_text" };
        let what = if matches!(shape, Shape::Chat) { "no final assistant turn" } else { "missing or empty" };
        return Err(format!("field `{field}`: {what}; task kind {} needs the expected answer", kind.name()));
    }
    Ok(EvalSample { line: 0, shape, context, target, text, task })
}

/// Reads the evaluation file. Errors name the file, line and field.
pub fn load(path: &Path, defaults: &TaskDefaults) -> Result<Vec<EvalSample>> {
    let bytes = std::fs::read(path).map_err(|e| EvalError::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| EvalError::Data { path: path.into(), line: 0, message: format!("not UTF-8 text ({e})") })?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |message: String| EvalError::Data { path: path.into(), line: n + 1, message };
        let v: Value = serde_json::from_str(line).map_err(|e| err(format!("not valid JSON: {e}")))?;
        let mut s = parse_line(&v, defaults).map_err(err)?;
        s.line = n + 1;
        out.push(s);
    }
    if out.is_empty() {
        return Err(EvalError::Invalid(format!("{}: the file is empty (no records to evaluate)", path.display())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> std::result::Result<EvalSample, String> {
        parse_line(&v, &TaskDefaults::default())
    }

    #[test]
    fn shapes_kinds_and_errors() {
        let s = parse(json!({"input_text": "q", "target_text": "a"})).unwrap();
        assert_eq!(s.task.kind, TaskKind::Exact);
        assert_eq!(s.task.name, "exact");
        let s = parse(json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})).unwrap();
        assert_eq!(s.target.as_deref(), Some("a"));
        assert_eq!(s.context.len(), 1);
        let s = parse(json!({"input_text": "q", "metadata": {"eval": {"choices": ["x", "y"], "answer": "y", "task": "mc"}}})).unwrap();
        assert_eq!((s.task.kind, s.task.answer, s.task.name.as_str()), (TaskKind::Choice, Some(1), "mc"));
        assert!(!s.generates());

        let e = parse(json!({"input_text": "q"})).unwrap_err();
        assert!(e.contains("`target_text`") && e.contains("exact"), "{e}");
        let e = parse(json!({"input_text": "q", "target_text": "a", "metadata": {"eval": {"kind": "choice"}}})).unwrap_err();
        assert!(e.contains("without `metadata.eval.choices`"), "{e}");
        let e = parse(json!({"input_text": "q", "metadata": {"eval": {"choices": ["x", "y"], "answer": 5}}})).unwrap_err();
        assert!(e.contains("metadata.eval.answer"), "{e}");
        let e = parse(json!({"input_text": "q", "target_text": "a", "metadata": {"eval": {"kind": "regex", "pattern": "("}}})).unwrap_err();
        assert!(e.contains("not a valid regex"), "{e}");
        let e = parse(json!({"input_text": "q", "target_text": "maybe", "metadata": {"eval": {"kind": "label", "labels": ["yes", "no"]}}})).unwrap_err();
        assert!(e.contains("not one of the labels"), "{e}");
        let e = parse(json!({"input_text": "q", "target_text": "a", "metadata": {"eval": {"kinds": "x"}}})).unwrap_err();
        assert!(e.contains("metadata.eval.kinds"), "{e}");
    }
}
