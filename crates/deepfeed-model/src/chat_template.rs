//! Jinja chat templates as shipped in `tokenizer_config.json`, rendered with minijinja the way
//! transformers renders them (`trim_blocks`, `lstrip_blocks`, Python string methods,
//! `raise_exception`).
use minijinja::{context, Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl ChatTemplate {
    pub fn new(source: String) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // str.strip(), .split(), dict.items() ... as used by DeepSeek and Qwen templates
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned("chat", source).map_err(|e| ModelError::Template(format!("cannot parse: {e:#}")))?;
        Ok(ChatTemplate { env })
    }

    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool, bos_token: &str, eos_token: &str) -> Result<String> {
        let template = self.env.get_template("chat").map_err(|e| ModelError::Template(e.to_string()))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => bos_token,
                eos_token => eos_token,
            })
            .map_err(|e| ModelError::Template(format!("cannot render: {e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of DeepSeek-R1's template: namespace(), `in`, str.split, `is none`, and a
    /// generation prompt that opens the reasoning block.
    const R1_LIKE: &str = "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% set ns = namespace(is_tool=false, system_prompt='') %}{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %}{%- if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not none %}{% set content = message['content'] %}{% if '</think>' in content %}{% set content = content.split('</think>')[-1].strip() %}{% endif %}{{ '<｜Assistant｜>' + content + eos_token }}{%- endif %}{%- endfor -%}{% if add_generation_prompt and not ns.is_tool %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}";

    #[test]
    fn renders_r1_style_template() {
        let t = ChatTemplate::new(R1_LIKE.into()).unwrap();
        let msgs = vec![
            ChatMessage::new("system", "你是助手。"),
            ChatMessage::new("user", "1+1?"),
            ChatMessage::new("assistant", "<think>easy</think>\n\n2"),
            ChatMessage::new("user", "谢谢"),
        ];
        let out = t.render(&msgs, true, "<s>", "</s>").unwrap();
        assert_eq!(out, "<s>你是助手。<｜User｜>1+1?<｜Assistant｜>2</s><｜User｜>谢谢<｜Assistant｜><think>\n");
        let no_prompt = t.render(&msgs[..2], false, "<s>", "</s>").unwrap();
        assert_eq!(no_prompt, "<s>你是助手。<｜User｜>1+1?");
    }

    #[test]
    fn raise_exception_and_syntax_errors_are_errors() {
        let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}".into()).unwrap();
        let e = t.render(&[], false, "", "").unwrap_err().to_string();
        assert!(e.contains("roles must alternate"), "{e}");
        assert!(ChatTemplate::new("{% if %}".into()).is_err());
    }
}
