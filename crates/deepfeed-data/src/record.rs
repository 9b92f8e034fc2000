//! The project's training-data format, one JSON object per line:
//!
//! | shape | fields |
//! |---|---|
//! | pair | `input_text`, `target_text` (+ `rejected_text` for preference pairs) |
//! | chat | `messages`: `[{"role": "system"|"user"|"assistant", "content": "…"}, …]` with ≥ 1 assistant turn |
//! | text | `text` (continued pre-training) |
//!
//! Every shape may carry `metadata` (an object: source, lineage, anything), which training ignores.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message { role: role.into(), content: content.into() }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Pair { input: String, target: String, rejected: Option<String>, metadata: Option<Map<String, Value>> },
    Chat { messages: Vec<Message>, metadata: Option<Map<String, Value>> },
    Text { text: String, metadata: Option<Map<String, Value>> },
}

/// Why a record is not valid: the field concerned and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "field `{}`: {}", self.field, self.message)
        }
    }
}

fn err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), message: message.into() }
}

const ROLES: [&str; 3] = ["system", "user", "assistant"];

impl Record {
    /// Checks one parsed JSON line against the project format.
    pub fn parse(v: &Value) -> Result<Record, FieldError> {
        let obj = v.as_object().ok_or_else(|| err("", format!("expected a JSON object, found {}", kind(v))))?;
        let text = |k: &str| -> Result<Option<&str>, FieldError> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(err(k, format!("must be a string, found {}", kind(other)))),
            }
        };
        let metadata = match obj.get("metadata") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(other) => return Err(err("metadata", format!("must be an object, found {}", kind(other)))),
        };
        let shapes = [obj.contains_key("input_text") || obj.contains_key("target_text"), obj.contains_key("messages"), obj.contains_key("text")];
        if shapes.iter().filter(|&&s| s).count() > 1 {
            return Err(err("", "mixes shapes: use input_text + target_text, or messages, or text"));
        }
        if shapes[0] {
            let input = text("input_text")?.ok_or_else(|| err("input_text", "missing (target_text needs it)"))?;
            let target = text("target_text")?.ok_or_else(|| err("target_text", "missing (input_text needs it)"))?;
            if target.trim().is_empty() {
                return Err(err("target_text", "is empty: nothing to learn"));
            }
            let rejected = text("rejected_text")?.map(String::from);
            return Ok(Record::Pair { input: input.into(), target: target.into(), rejected, metadata });
        }
        if shapes[1] {
            let list = obj["messages"].as_array().ok_or_else(|| err("messages", format!("must be a list, found {}", kind(&obj["messages"]))))?;
            let mut messages = Vec::with_capacity(list.len());
            for (i, m) in list.iter().enumerate() {
                let field = format!("messages[{i}]");
                let role = m.get("role").and_then(|r| r.as_str()).ok_or_else(|| err(&field, "needs a string `role`"))?;
                if !ROLES.contains(&role) {
                    return Err(err(&format!("{field}.role"), format!("{role:?} is not one of system, user, assistant")));
                }
                let content = m.get("content").and_then(|c| c.as_str()).ok_or_else(|| err(&format!("{field}.content"), "must be a string"))?;
                messages.push(Message::new(role, content));
            }
            if !messages.iter().any(|m| m.role == "assistant") {
                return Err(err("messages", "has no assistant turn: nothing to learn"));
            }
            return Ok(Record::Chat { messages, metadata });
        }
        if shapes[2] {
            let t = text("text")?.unwrap_or_default();
            if t.trim().is_empty() {
                return Err(err("text", "is empty"));
            }
            return Ok(Record::Text { text: t.into(), metadata });
        }
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        Err(err("", format!("expected input_text + target_text, messages, or text; found fields {keys:?} (convert other formats with `deepfeed convert`)")))
    }

    /// The record as one JSON line of the project format.
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        let meta = match self {
            Record::Pair { input, target, rejected, metadata } => {
                o.insert("input_text".into(), input.clone().into());
                o.insert("target_text".into(), target.clone().into());
                if let Some(r) = rejected {
                    o.insert("rejected_text".into(), r.clone().into());
                }
                metadata
            }
            Record::Chat { messages, metadata } => {
                o.insert("messages".into(), serde_json::to_value(messages).unwrap());
                metadata
            }
            Record::Text { text, metadata } => {
                o.insert("text".into(), text.clone().into());
                metadata
            }
        };
        if let Some(m) = meta {
            o.insert("metadata".into(), Value::Object(m.clone()));
        }
        Value::Object(o)
    }

    /// Whether the record still has something to learn (cleaning can empty a field).
    pub fn is_trainable(&self) -> bool {
        match self {
            Record::Pair { target, .. } => !target.trim().is_empty(),
            Record::Chat { messages, .. } => messages.iter().any(|m| m.role == "assistant" && !m.content.trim().is_empty()),
            Record::Text { text, .. } => !text.trim().is_empty(),
        }
    }

    /// Every text field, to change in place (cleaning).
    pub fn texts_mut(&mut self) -> Vec<&mut String> {
        match self {
            Record::Pair { input, target, rejected, .. } => [Some(input), Some(target), rejected.as_mut()].into_iter().flatten().collect(),
            Record::Chat { messages, .. } => messages.iter_mut().map(|m| &mut m.content).collect(),
            Record::Text { text, .. } => vec![text],
        }
    }

    /// The metadata object, created when the record has none.
    pub fn metadata_mut(&mut self) -> &mut Map<String, Value> {
        let m = match self {
            Record::Pair { metadata, .. } | Record::Chat { metadata, .. } | Record::Text { metadata, .. } => metadata,
        };
        m.get_or_insert_with(Map::new)
    }

    /// All the text of the record (for length checks).
    pub fn texts(&self) -> Vec<&str> {
        match self {
            Record::Pair { input, target, rejected, .. } => [Some(input.as_str()), Some(target.as_str()), rejected.as_deref()].into_iter().flatten().collect(),
            Record::Chat { messages, .. } => messages.iter().map(|m| m.content.as_str()).collect(),
            Record::Text { text, .. } => vec![text],
        }
    }

    /// All the texts joined by newlines (borrowed when there is only one).
    pub fn joined_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Record::Text { text, .. } => std::borrow::Cow::Borrowed(text),
            _ => std::borrow::Cow::Owned(self.texts().join("\n")),
        }
    }
}

/// "a string", "a number" … for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes_and_errors() {
        assert!(matches!(Record::parse(&json!({"input_text": "q", "target_text": "a"})), Ok(Record::Pair { .. })));
        assert!(matches!(Record::parse(&json!({"text": "t", "metadata": {"source": "x"}})), Ok(Record::Text { .. })));
        let chat = json!({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]});
        assert!(matches!(Record::parse(&chat), Ok(Record::Chat { .. })));
        let e = Record::parse(&json!({"input_text": "q"})).unwrap_err();
        assert_eq!(e.field, "target_text");
        let e = Record::parse(&json!({"messages": [{"role": "bot", "content": "x"}]})).unwrap_err();
        assert_eq!(e.field, "messages[0].role");
        let e = Record::parse(&json!({"input_text": 3, "target_text": "a"})).unwrap_err();
        assert!(e.to_string().contains("must be a string, found a number"));
        let e = Record::parse(&json!({"instruction": "x"})).unwrap_err();
        assert!(e.message.contains("deepfeed convert"));
        let r = Record::parse(&json!({"input_text": "q", "target_text": "a", "rejected_text": "b"})).unwrap();
        assert_eq!(Record::parse(&r.to_json()).unwrap(), r);
    }
}
