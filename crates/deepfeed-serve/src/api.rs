//! The OpenAI request bodies we accept, parsed strictly: a wrong type names its field (`param`),
//! and an option we do not implement is refused rather than silently ignored.
use deepfeed_model::{ChatMessage, GenerateOptions};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

/// Parses a JSON body into `T`; syntax and type errors become 400 with the failing field.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request body is empty; expected a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("the body is not valid JSON: {inner}"))
        } else if path == "." {
            ApiError::bad_request(format!("invalid request body: {inner}"))
        } else {
            ApiError::bad_param(&path, format!("invalid value for `{path}`: {inner}"))
        }
    })
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// `content` is a string, or an array of `{"type": "text", "text": …}` parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RequestMessage {
    pub role: String,
    pub content: Option<MessageContent>,
}

/// Sampling fields shared by both endpoints (plus two common extensions: top_k and
/// repetition_penalty, as vLLM accepts them). Parsed from the same body as the request (not a
/// `#[serde(flatten)]` field: flattening would lose the name of a field with a wrong type).
#[derive(Debug, Default, Deserialize)]
pub struct Sampling {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub repetition_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub seed: Option<i64>,
    pub n: Option<u64>,
    pub stop: Option<StopField>,
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<RequestMessage>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// Extension: retrieval from the model's knowledge base, `true`/`false` or
    /// `{"k", "mode", "max_tokens"}` (OpenAI clients send it through `extra_body`).
    #[serde(default)]
    pub kb: Option<Value>,
}

/// `prompt`: a string, an array with one string, or an array of token ids.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PromptField {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u64>),
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: PromptField,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub echo: Option<bool>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub logprobs: Option<Value>,
    #[serde(default)]
    pub best_of: Option<u64>,
    #[serde(default)]
    pub kb: Option<Value>,
}

/// Limits the server enforces on every request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub default_max_tokens: usize,
    pub max_tokens: usize,
}

impl Sampling {
    /// The generation options, checked against OpenAI's ranges and our limits.
    pub fn options(&self, limits: RequestLimits) -> Result<GenerateOptions, ApiError> {
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::bad_param("n", format!("only n=1 is supported, found n={n}")));
            }
        }
        for (name, v) in [("presence_penalty", self.presence_penalty), ("frequency_penalty", self.frequency_penalty)] {
            if v.is_some_and(|v| v != 0.0) {
                return Err(ApiError::bad_param(name, format!("{name} is not supported (use repetition_penalty); found {}", v.unwrap_or(0.0))));
            }
        }
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::bad_param("temperature", format!("temperature must be between 0 and 2, found {temperature}")));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::bad_param("top_p", format!("top_p must be in (0, 1], found {top_p}")));
        }
        let repetition_penalty = self.repetition_penalty.unwrap_or(1.0);
        if !(repetition_penalty > 0.0 && repetition_penalty.is_finite()) {
            return Err(ApiError::bad_param("repetition_penalty", format!("repetition_penalty must be > 0, found {repetition_penalty}")));
        }
        let max_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            None => limits.default_max_tokens,
            Some(0) => return Err(ApiError::bad_param("max_tokens", "max_tokens must be at least 1, found 0")),
            Some(m) if m as usize > limits.max_tokens => {
                return Err(ApiError::bad_param("max_tokens", format!("max_tokens is {m}; this server allows at most {}", limits.max_tokens)))
            }
            Some(m) => m as usize,
        };
        let stop = match &self.stop {
            None => vec![],
            Some(StopField::One(s)) => vec![s.clone()],
            Some(StopField::Many(v)) => v.clone(),
        };
        if stop.len() > 4 {
            return Err(ApiError::bad_param("stop", format!("at most 4 stop sequences are allowed, found {}", stop.len())));
        }
        if stop.iter().any(String::is_empty) {
            return Err(ApiError::bad_param("stop", "stop sequences must not be empty"));
        }
        Ok(GenerateOptions {
            max_new_tokens: max_tokens,
            temperature,
            top_k: self.top_k.unwrap_or(0),
            top_p,
            repetition_penalty,
            // no seed: a fresh one per request, as OpenAI does
            seed: self.seed.map_or_else(rand::random::<u64>, |s| s as u64),
            stop,
            stop_on_eos: true,
            hide_think: false,
        })
    }
}

const ROLES: [&str; 3] = ["system", "user", "assistant"];

impl ChatRequest {
    pub fn chat_messages(&self) -> Result<Vec<ChatMessage>, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::bad_param("messages", "messages is empty; expected at least one message"));
        }
        if self.tools.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(ApiError::bad_param("tools", "tool calling is not supported by this server"));
        }
        if self.logprobs == Some(true) {
            return Err(ApiError::bad_param("logprobs", "logprobs are not supported by this server"));
        }
        self.messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                if !ROLES.contains(&m.role.as_str()) {
                    return Err(ApiError::bad_param(
                        &format!("messages[{i}].role"),
                        format!("messages[{i}].role is {:?}; expected one of system, user, assistant", m.role),
                    ));
                }
                let content = match &m.content {
                    None => String::new(),
                    Some(MessageContent::Text(t)) => t.clone(),
                    Some(MessageContent::Parts(parts)) => {
                        let mut s = String::new();
                        for (j, p) in parts.iter().enumerate() {
                            match (p.kind.as_str(), &p.text) {
                                ("text", Some(t)) => s.push_str(t),
                                _ => {
                                    return Err(ApiError::bad_param(
                                        &format!("messages[{i}].content[{j}]"),
                                        format!("content part of type {:?}: only text parts are supported", p.kind),
                                    ))
                                }
                            }
                        }
                        s
                    }
                };
                Ok(ChatMessage::new(&m.role, &content))
            })
            .collect()
    }
}

impl CompletionRequest {
    pub fn check_unsupported(&self) -> Result<(), ApiError> {
        if self.echo == Some(true) {
            return Err(ApiError::bad_param("echo", "echo is not supported by this server"));
        }
        if self.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::bad_param("suffix", "suffix (insertion) is not supported by this server"));
        }
        if self.logprobs.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(ApiError::bad_param("logprobs", "logprobs are not supported by this server"));
        }
        if self.kb.as_ref().is_some_and(|v| !v.is_null() && *v != Value::Bool(false)) {
            return Err(ApiError::bad_param("kb", "retrieval (kb) is done for chat completions only (it searches the last user message)"));
        }
        if self.best_of.is_some_and(|b| b != 1) {
            return Err(ApiError::bad_param("best_of", "only best_of=1 is supported"));
        }
        Ok(())
    }
}

/// Body of `POST /v1/feedback`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// The `id` of a chat completion or completion this server returned.
    #[serde(alias = "id")]
    pub response_id: String,
    /// "up" or "down".
    pub rating: Option<String>,
    pub comment: Option<String>,
    /// The answer the user would have preferred.
    pub rewrite: Option<String>,
}

/// Body of `POST /admin/adapters`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterRequest {
    pub name: String,
    /// A directory under the configured adapter root (relative paths are taken from there).
    pub path: String,
    /// The adapter's knowledge base: a directory under `--kb-dir`, `"default"` (the server's
    /// `--kb`) or `"none"`. Absent: what the adapter had before a reload, else `"default"`.
    #[serde(default)]
    pub kb: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RequestLimits = RequestLimits { default_max_tokens: 16, max_tokens: 64 };

    #[test]
    fn wrong_types_name_their_field() {
        let e = parse_body::<Sampling>(br#"{"model": "m", "messages": [], "temperature": "hot"}"#).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert_eq!(e.param.as_deref(), Some("temperature"), "{e}");
        let e = parse_body::<ChatRequest>(br#"{"model": "m", "messages": [{"role": 3}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"), "{e}");
        let e = parse_body::<ChatRequest>(br#"{"model": "m", "#).unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{e}");
        let e = parse_body::<ChatRequest>(br#"{"messages": []}"#).unwrap_err();
        assert!(e.message.contains("model"), "{e}");
    }

    #[test]
    fn sampling_ranges_and_limits() {
        let s = |j: &str| parse_body::<Sampling>(format!(r#"{{"model": "m", "messages": [], {j}}}"#).as_bytes()).unwrap();
        assert_eq!(s(r#""n": 2"#).options(LIMITS).unwrap_err().param.as_deref(), Some("n"));
        assert_eq!(s(r#""temperature": 2.5"#).options(LIMITS).unwrap_err().param.as_deref(), Some("temperature"));
        assert_eq!(s(r#""top_p": 0"#).options(LIMITS).unwrap_err().param.as_deref(), Some("top_p"));
        assert_eq!(s(r#""max_tokens": 65"#).options(LIMITS).unwrap_err().param.as_deref(), Some("max_tokens"));
        assert_eq!(s(r#""stop": ["a","b","c","d","e"]"#).options(LIMITS).unwrap_err().param.as_deref(), Some("stop"));
        let o = s(r#""max_tokens": 5, "stop": "\n", "seed": 3, "temperature": 0"#).options(LIMITS).unwrap();
        assert_eq!((o.max_new_tokens, o.stop.clone(), o.seed, o.temperature), (5, vec!["\n".to_string()], 3, 0.0));
        assert_eq!(s(r#""n": 1"#).options(LIMITS).unwrap().max_new_tokens, 16);
    }

    #[test]
    fn content_parts_and_roles() {
        let r: ChatRequest = parse_body(br#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}"#).unwrap();
        assert_eq!(r.chat_messages().unwrap()[0].content, "ab");
        let r: ChatRequest = parse_body(br#"{"model": "m", "messages": [{"role": "tool", "content": "x"}]}"#).unwrap();
        assert_eq!(r.chat_messages().unwrap_err().param.as_deref(), Some("messages[0].role"));
        let r: ChatRequest = parse_body(br#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#).unwrap();
        assert!(r.chat_messages().is_err());
    }
}
