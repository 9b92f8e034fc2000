//! Ollama `Modelfile`s: `FROM`, `ADAPTER`, `TEMPLATE` (the model's Jinja chat template turned into
//! Ollama's Go template for the chat families deepfeed knows) and `PARAMETER stop` entries.
//!
//! Jinja cannot be translated in general, so the family is recognised from the markers its template
//! emits, and a hand-written Go template that renders the same text is used (the one Ollama's own
//! library ships for that family). Unknown templates are an error that says how to pass a Go
//! template explicitly (`--template FILE`).

/// Chat-template families with a known Ollama template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatFamily {
    /// DeepSeek R1 / V3 (and R1-Distill): `<｜User｜>…<｜Assistant｜>`; R1 opens `<think>`.
    DeepSeekR1 { think: bool },
    /// deepseek-llm-chat: `User: …\n\nAssistant: …`.
    DeepSeekLlm,
    /// ChatML (Qwen2/2.5/3): `<|im_start|>role\n…<|im_end|>`.
    ChatMl,
    /// Llama 3.x: `<|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|>`.
    Llama3,
    /// Gemma: `<start_of_turn>user\n…<end_of_turn>`.
    Gemma,
}

impl ChatFamily {
    /// Recognises the family of a Jinja chat template.
    pub fn detect(jinja: &str) -> Option<ChatFamily> {
        if jinja.contains("<｜User｜>") && jinja.contains("<｜Assistant｜>") {
            // R1 templates end the generation prompt with `<think>\n`
            return Some(ChatFamily::DeepSeekR1 { think: jinja.contains("<｜Assistant｜><think>") });
        }
        if jinja.contains("<|im_start|>") && jinja.contains("<|im_end|>") {
            return Some(ChatFamily::ChatMl);
        }
        if jinja.contains("<|start_header_id|>") && jinja.contains("<|eot_id|>") {
            return Some(ChatFamily::Llama3);
        }
        if jinja.contains("<start_of_turn>") && jinja.contains("<end_of_turn>") {
            return Some(ChatFamily::Gemma);
        }
        if jinja.contains("'User: '") && jinja.contains("'Assistant:") {
            return Some(ChatFamily::DeepSeekLlm);
        }
        None
    }

    /// The family for a model without a chat template, from its GGUF `general.architecture`
    /// (as Ollama's library does): gemma* → Gemma, qwen2/qwen3 → ChatML.
    pub fn from_architecture(arch: &str) -> Option<ChatFamily> {
        match arch {
            "gemma" | "gemma2" | "gemma3" => Some(ChatFamily::Gemma),
            "qwen2" | "qwen3" => Some(ChatFamily::ChatMl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ChatFamily::DeepSeekR1 { .. } => "DeepSeek R1/V3",
            ChatFamily::DeepSeekLlm => "DeepSeek LLM",
            ChatFamily::ChatMl => "ChatML (Qwen)",
            ChatFamily::Llama3 => "Llama 3",
            ChatFamily::Gemma => "Gemma",
        }
    }

    /// Ollama Go template rendering the same prompt as the family's Jinja template.
    pub fn go_template(self) -> String {
        match self {
            ChatFamily::DeepSeekR1 { think } => {
                let gen = if think { "<｜Assistant｜><think>\n" } else { "<｜Assistant｜>" };
                format!(
                    r#"{{{{- if .System }}}}{{{{ .System }}}}{{{{ end }}}}
{{{{- range $i, $_ := .Messages }}}}
{{{{- $last := eq (len (slice $.Messages $i)) 1 }}}}
{{{{- if eq .Role "user" }}}}<｜User｜>{{{{ .Content }}}}
{{{{- else if eq .Role "assistant" }}}}<｜Assistant｜>{{{{ .Content }}}}{{{{- if not $last }}}}<｜end▁of▁sentence｜>{{{{- end }}}}
{{{{- end }}}}
{{{{- if and $last (ne .Role "assistant") }}}}{gen}{{{{- end }}}}
{{{{- end }}}}"#
                )
            }
            ChatFamily::DeepSeekLlm => r#"{{- if .System }}{{ .System }}

{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}User: {{ .Content }}

{{ else if eq .Role "assistant" }}Assistant: {{ .Content }}{{ if not $last }}<｜end▁of▁sentence｜>{{ end }}
{{- end }}
{{- if and $last (ne .Role "assistant") }}Assistant:{{ end }}
{{- end }}"#
                .to_string(),
            ChatFamily::ChatMl => r#"{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}<|im_start|>{{ .Role }}
{{ .Content }}{{ if not $last }}<|im_end|>
{{ end }}
{{- if and $last (ne .Role "assistant") }}<|im_end|>
<|im_start|>assistant
{{ end }}
{{- end }}"#
                .to_string(),
            ChatFamily::Llama3 => r#"{{- if .System }}<|start_header_id|>system<|end_header_id|>

{{ .System }}<|eot_id|>
{{- end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}{{ if not $last }}<|eot_id|>{{ end }}
{{- if and $last (ne .Role "assistant") }}<|eot_id|><|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- end }}"#
                .to_string(),
            ChatFamily::Gemma => r#"{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if or (eq .Role "user") (eq .Role "system") }}<start_of_turn>user
{{ .Content }}<end_of_turn>
{{ if $last }}<start_of_turn>model
{{ end }}
{{- else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}{{ if not $last }}<end_of_turn>
{{ end }}
{{- end }}
{{- end }}"#
                .to_string(),
        }
    }

    /// `PARAMETER stop` strings: the family's turn markers.
    pub fn stops(self) -> &'static [&'static str] {
        match self {
            ChatFamily::DeepSeekR1 { .. } => &["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"],
            ChatFamily::DeepSeekLlm => &["User:", "<｜end▁of▁sentence｜>"],
            ChatFamily::ChatMl => &["<|im_start|>", "<|im_end|>"],
            ChatFamily::Llama3 => &["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
            ChatFamily::Gemma => &["<end_of_turn>"],
        }
    }
}

/// What goes into a Modelfile.
#[derive(Debug, Clone, Default)]
pub struct ModelfileSpec {
    /// `FROM`: a GGUF path (relative to the Modelfile, or absolute).
    pub from: String,
    /// `ADAPTER`: a GGUF LoRA adapter path.
    pub adapter: Option<String>,
    /// The model's Jinja chat template, if any.
    pub jinja_template: Option<String>,
    /// A Go template given by the user, used instead of a converted one.
    pub go_template: Option<String>,
    /// Extra stop strings (e.g. the EOS token), added after the family's.
    pub extra_stops: Vec<String>,
    /// GGUF `general.architecture`: picks the family when there is no chat template at all.
    pub architecture: Option<String>,
}

/// The Modelfile text, and the family recognised (None when `go_template` was given).
pub fn modelfile(spec: &ModelfileSpec) -> crate::Result<(String, Option<ChatFamily>)> {
    let (template, family) = match (&spec.go_template, &spec.jinja_template) {
        (Some(t), _) => (t.clone(), None),
        (None, Some(j)) => {
            let family = ChatFamily::detect(j).ok_or_else(|| {
                crate::ModelError::Template(
                    "cannot convert this chat template to Ollama's Go template: it is none of the known families \
                     (DeepSeek R1/V3, DeepSeek LLM, ChatML/Qwen, Llama 3, Gemma); write the Go template yourself and pass it with --template FILE \
                     (see https://github.com/ollama/ollama/blob/main/docs/template.md)"
                        .into(),
                )
            })?;
            (family.go_template(), Some(family))
        }
        (None, None) => match spec.architecture.as_deref().and_then(ChatFamily::from_architecture) {
            Some(family) => (family.go_template(), Some(family)),
            None => {
                return Err(crate::ModelError::Template(
                    "the model has no chat template to convert; pass an Ollama Go template with --template FILE".into(),
                ))
            }
        },
    };
    if template.contains("\"\"\"") {
        return Err(crate::ModelError::Template("the template contains \"\"\", which a Modelfile TEMPLATE cannot hold".into()));
    }
    let mut out = String::new();
    out.push_str("# Written by `deepfeed export ollama`. Create the model with:\n#   ollama create NAME -f Modelfile\n");
    out.push_str(&format!("FROM {}\n", spec.from));
    if let Some(a) = &spec.adapter {
        out.push_str(&format!("ADAPTER {a}\n"));
    }
    out.push_str(&format!("TEMPLATE \"\"\"{template}\"\"\"\n"));
    let mut stops: Vec<String> = family.map(|f| f.stops().iter().map(|s| s.to_string()).collect()).unwrap_or_default();
    for s in &spec.extra_stops {
        if !s.is_empty() && !stops.contains(s) {
            stops.push(s.clone());
        }
    }
    for s in stops {
        out.push_str(&format!("PARAMETER stop {}\n", quote(&s)));
    }
    Ok((out, family))
}

/// A Modelfile string argument: double-quoted with `\` and `"` escaped.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
