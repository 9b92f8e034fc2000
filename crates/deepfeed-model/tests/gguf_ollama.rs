//! Ollama Modelfiles: family recognition from the Jinja chat templates the families ship, and the
//! Modelfile text (`FROM`, `ADAPTER`, `TEMPLATE`, `PARAMETER stop`).
use deepfeed_model::gguf::ollama::{modelfile, ChatFamily, ModelfileSpec};
use deepfeed_model::tiny::DEFAULT_CHAT_TEMPLATE;

// The marker-bearing parts of the templates as the model repositories ship them.
const QWEN25: &str = "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- else %}{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- endif %}{%- endif %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
const R1: &str = "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{%- for message in messages %}{%- if message['role'] == 'user' %}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor -%}{% if add_generation_prompt %}{{'<｜Assistant｜><think>\\n'}}{% endif %}";
const V3: &str = "{%- for message in messages %}{%- if message['role'] == 'user' %}{{'<｜User｜>' + message['content']}}{%- endif %}{%- endfor %}{% if add_generation_prompt %}{{'<｜Assistant｜>'}}{% endif %}";
const LLAMA3: &str = "{{- bos_token }}{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}{%- endfor %}";
const GEMMA3: &str = "{{ bos_token }}{%- for message in loop_messages -%}{{ '<start_of_turn>' + role + '\\n' }}{{ '<end_of_turn>\\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{'<start_of_turn>model\\n'}}{%- endif -%}";

#[test]
fn families_are_recognised() {
    assert_eq!(ChatFamily::detect(QWEN25), Some(ChatFamily::ChatMl));
    assert_eq!(ChatFamily::detect(R1), Some(ChatFamily::DeepSeekR1 { think: true }));
    assert_eq!(ChatFamily::detect(V3), Some(ChatFamily::DeepSeekR1 { think: false }));
    assert_eq!(ChatFamily::detect(LLAMA3), Some(ChatFamily::Llama3));
    assert_eq!(ChatFamily::detect(GEMMA3), Some(ChatFamily::Gemma));
    assert_eq!(ChatFamily::detect(DEFAULT_CHAT_TEMPLATE), Some(ChatFamily::DeepSeekLlm));
    assert_eq!(ChatFamily::detect("{{ messages }}"), None);
}

#[test]
fn modelfile_has_from_adapter_template_and_stops() {
    let spec = ModelfileSpec {
        from: "./model.gguf".into(),
        adapter: Some("./adapter.gguf".into()),
        jinja_template: Some(R1.into()),
        extra_stops: vec!["<｜end▁of▁sentence｜>".into(), "my \"stop\"".into()],
        ..Default::default()
    };
    let (text, family) = modelfile(&spec).unwrap();
    assert_eq!(family, Some(ChatFamily::DeepSeekR1 { think: true }));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"FROM ./model.gguf"), "{text}");
    assert!(lines.contains(&"ADAPTER ./adapter.gguf"), "{text}");
    let t0 = text.find("TEMPLATE \"\"\"").unwrap();
    let t1 = text[t0 + 12..].find("\"\"\"").unwrap() + t0 + 12;
    let template = &text[t0 + 12..t1];
    assert!(template.contains("{{- range $i, $_ := .Messages }}"));
    assert!(template.contains("<｜User｜>{{ .Content }}"));
    assert!(template.contains("<｜Assistant｜><think>\n"));
    let stops: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("PARAMETER stop ")).collect();
    assert_eq!(
        stops,
        vec!["\"<｜begin▁of▁sentence｜>\"", "\"<｜end▁of▁sentence｜>\"", "\"<｜User｜>\"", "\"<｜Assistant｜>\"", "\"my \\\"stop\\\"\""]
    );
    // balanced Go template actions
    assert_eq!(template.matches("{{").count(), template.matches("}}").count());
    for family in [ChatFamily::ChatMl, ChatFamily::Llama3, ChatFamily::Gemma, ChatFamily::DeepSeekLlm, ChatFamily::DeepSeekR1 { think: false }] {
        let t = family.go_template();
        assert_eq!(t.matches("{{").count(), t.matches("}}").count(), "{family:?}");
        let opens = t.matches("{{- if").count() + t.matches("{{ if").count() + t.matches("{{- range").count() + t.matches("{{ range").count();
        let ends = t.matches("end }}").count();
        assert_eq!(opens, ends, "{family:?}: every if/range is closed");
        assert!(!family.stops().is_empty());
    }
}

#[test]
fn unknown_templates_are_an_error_unless_a_go_template_is_given() {
    let spec = ModelfileSpec { from: "m.gguf".into(), jinja_template: Some("{{ messages }}".into()), ..Default::default() };
    let e = modelfile(&spec).unwrap_err().to_string();
    assert!(e.contains("--template") && e.contains("ChatML"), "{e}");
    let spec = ModelfileSpec { go_template: Some("{{ .Prompt }}".into()), ..spec };
    let (text, family) = modelfile(&spec).unwrap();
    assert_eq!(family, None);
    assert!(text.contains("TEMPLATE \"\"\"{{ .Prompt }}\"\"\"\n"));
    assert!(!text.contains("PARAMETER stop"));
    let e = modelfile(&ModelfileSpec { from: "m.gguf".into(), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("no chat template"), "{e}");
    let e = modelfile(&ModelfileSpec { from: "m.gguf".into(), architecture: Some("llama".into()), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("no chat template"), "{e}");
    // no template at all (e.g. some Gemma 3 GGUFs): the family follows general.architecture
    let (text, family) = modelfile(&ModelfileSpec { from: "m.gguf".into(), architecture: Some("gemma3".into()), ..Default::default() }).unwrap();
    assert_eq!(family, Some(ChatFamily::Gemma));
    assert!(text.contains("<start_of_turn>model") && text.contains("PARAMETER stop \"<end_of_turn>\""), "{text}");
    let e = modelfile(&ModelfileSpec { from: "m.gguf".into(), go_template: Some("a\"\"\"b".into()), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("\"\"\""), "{e}");
}
