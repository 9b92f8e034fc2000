//! The feedback store: SQLite in WAL mode with `synchronous=FULL` (a committed row survives a
//! crash or power loss). Every answered generation is recorded with its prompt, so that
//! `POST /v1/feedback` can refer to it by id; feedback rows point at those responses.
//! [`export`] turns them into the next phase's training data, with personal data masked.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use deepfeed_data::pii::{Deidentifier, PiiCounts, PiiOptions};
use deepfeed_model::fsutil::write_dir_atomically;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Result, ServeError};

/// What a response answered: a chat (messages as JSON) or a raw completion prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Chat(Vec<deepfeed_model::ChatMessage>),
    Text(String),
}

#[derive(Debug, Clone)]
pub struct ResponseRecord {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub adapter: String,
    pub prompt: Prompt,
    pub response: String,
    pub finish_reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rating {
    Up,
    Down,
}

impl Rating {
    pub fn parse(s: &str) -> Option<Rating> {
        match s {
            "up" | "thumbs_up" | "+1" => Some(Rating::Up),
            "down" | "thumbs_down" | "-1" => Some(Rating::Down),
            _ => None,
        }
    }
    fn as_str(&self) -> &'static str {
        match self {
            Rating::Up => "up",
            Rating::Down => "down",
        }
    }
}

pub struct FeedbackStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    model TEXT NOT NULL,
    adapter TEXT NOT NULL,
    prompt_kind TEXT NOT NULL CHECK (prompt_kind IN ('chat', 'text')),
    prompt TEXT NOT NULL,
    response TEXT NOT NULL,
    finish_reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    response_id TEXT NOT NULL REFERENCES responses(id),
    created INTEGER NOT NULL,
    rating TEXT CHECK (rating IN ('up', 'down')),
    comment TEXT,
    rewrite TEXT
);
CREATE INDEX IF NOT EXISTS feedback_response ON feedback(response_id);
";

impl FeedbackStore {
    /// Opens (or creates) the database.
    pub fn open(path: &Path) -> Result<Self> {
        let err = |source| ServeError::Sqlite { path: path.into(), source };
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(FeedbackStore { path: path.into(), conn: Mutex::new(conn) })
    }

    fn err(&self, source: rusqlite::Error) -> ServeError {
        ServeError::Sqlite { path: self.path.clone(), source }
    }

    pub fn record_response(&self, r: &ResponseRecord) -> Result<()> {
        let (kind, prompt) = match &r.prompt {
            Prompt::Chat(m) => ("chat", serde_json::to_string(m).expect("messages serialise")),
            Prompt::Text(t) => ("text", t.clone()),
        };
        let conn = self.conn.lock().expect("feedback db lock");
        conn.execute(
            "INSERT INTO responses (id, created, model, adapter, prompt_kind, prompt, response, finish_reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![r.id, r.created as i64, r.model, r.adapter, kind, prompt, r.response, r.finish_reason],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn has_response(&self, id: &str) -> Result<bool> {
        let conn = self.conn.lock().expect("feedback db lock");
        conn.query_row("SELECT 1 FROM responses WHERE id = ?1", [id], |_| Ok(())).optional().map(|o| o.is_some()).map_err(|e| self.err(e))
    }

    /// Stores feedback on a recorded response; returns its id.
    pub fn add_feedback(&self, response_id: &str, rating: Option<Rating>, comment: Option<&str>, rewrite: Option<&str>, created: u64) -> Result<i64> {
        let conn = self.conn.lock().expect("feedback db lock");
        conn.execute(
            "INSERT INTO feedback (response_id, created, rating, comment, rewrite) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![response_id, created as i64, rating.as_ref().map(Rating::as_str), comment, rewrite],
        )
        .map_err(|e| self.err(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Every feedback row joined with its response, oldest first.
    pub fn rows(&self) -> Result<Vec<FeedbackRow>> {
        let conn = self.conn.lock().expect("feedback db lock");
        let mut st = conn
            .prepare(
                "SELECT f.id, f.rating, f.comment, f.rewrite, r.id, r.model, r.adapter, r.prompt_kind, r.prompt, r.response
                 FROM feedback f JOIN responses r ON r.id = f.response_id ORDER BY f.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, String>(6)?,
                    row.get::<_, String>(7)?,
                    row.get::<_, String>(8)?,
                    row.get::<_, String>(9)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            let (id, rating, comment, rewrite, response_id, model, adapter, kind, prompt, response) = r.map_err(|e| self.err(e))?;
            let prompt = if kind == "chat" {
                Prompt::Chat(serde_json::from_str(&prompt).map_err(|e| ServeError::Invalid(format!("{}: response {response_id}: stored messages: {e}", self.path.display())))?)
            } else {
                Prompt::Text(prompt)
            };
            out.push(FeedbackRow { id, rating: rating.as_deref().and_then(Rating::parse), comment, rewrite, response_id, model, adapter, prompt, response });
        }
        Ok(out)
    }
}

#[derive(Debug, Clone)]
pub struct FeedbackRow {
    pub id: i64,
    pub rating: Option<Rating>,
    pub comment: Option<String>,
    pub rewrite: Option<String>,
    pub response_id: String,
    pub model: String,
    pub adapter: String,
    pub prompt: Prompt,
    pub response: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportSummary {
    pub feedback_rows: usize,
    pub preference_pairs: usize,
    pub sft_samples: usize,
    /// Personal data masked, by type.
    pub pii_masked: PiiCounts,
}

/// The prompt as one string (the last user turn for a chat), for preference pairs.
fn prompt_key(p: &Prompt) -> String {
    match p {
        Prompt::Text(t) => t.clone(),
        Prompt::Chat(m) => serde_json::to_string(m).expect("messages serialise"),
    }
}

/// Writes `preferences.jsonl` (`prompt`, `chosen`, `rejected`: a rewrite is preferred over the
/// response it rewrites; an up-rated response over a down-rated one to the same prompt) and
/// `sft.jsonl` (project JSONL: chats as `messages`, raw prompts as `input_text`/`target_text`;
/// up-rated responses and rewrites) into a new directory `out`, atomically. Every text passes
/// through the PII masker first.
pub fn export(store: &FeedbackStore, out: &Path) -> Result<ExportSummary> {
    let rows = store.rows()?;
    let masker = Deidentifier::new(&PiiOptions::default())?;
    let mut summary = ExportSummary { feedback_rows: rows.len(), ..Default::default() };
    let mut mask = |s: &str| masker.mask(s, &mut summary.pii_masked);

    let mut prefs: Vec<Value> = Vec::new();
    let mut sft: Vec<Value> = Vec::new();
    // per prompt: responses rated up and down (response id -> text), for rating pairs
    let mut by_prompt: BTreeMap<String, (Prompt, BTreeMap<String, String>, BTreeMap<String, String>)> = BTreeMap::new();
    let mut sft_seen = std::collections::BTreeSet::new();
    for r in &rows {
        let meta = json!({"source": "feedback", "response_id": r.response_id, "model": r.model, "adapter": r.adapter});
        let masked_prompt = match &r.prompt {
            Prompt::Text(t) => Prompt::Text(mask(t)),
            Prompt::Chat(m) => Prompt::Chat(m.iter().map(|c| deepfeed_model::ChatMessage::new(&c.role, &mask(&c.content))).collect()),
        };
        let response = mask(&r.response);
        if let Some(rw) = &r.rewrite {
            let rw = mask(rw);
            if rw != response {
                prefs.push(preference(&masked_prompt, &rw, &response, &meta));
            }
            if sft_seen.insert((r.response_id.clone(), rw.clone())) {
                sft.push(sft_record(&masked_prompt, &rw, &meta));
            }
        }
        if let Some(rating) = &r.rating {
            let e = by_prompt.entry(prompt_key(&masked_prompt)).or_insert_with(|| (masked_prompt.clone(), BTreeMap::new(), BTreeMap::new()));
            match rating {
                Rating::Up => {
                    e.1.insert(r.response_id.clone(), response.clone());
                }
                Rating::Down => {
                    e.2.insert(r.response_id.clone(), response.clone());
                }
            }
        }
    }
    for (prompt, ups, downs) in by_prompt.values() {
        // a response rated both up and down is ambiguous: left out
        let ups: Vec<(&String, &String)> = ups.iter().filter(|(id, _)| !downs.contains_key(*id)).collect();
        for (id, text) in &ups {
            let meta = json!({"source": "feedback", "response_id": id, "rating": "up"});
            if sft_seen.insert(((*id).clone(), (*text).clone())) {
                sft.push(sft_record(prompt, text, &meta));
            }
        }
        for (up_id, up) in &ups {
            for (down_id, down) in downs.iter().filter(|(id, _)| !ups.iter().any(|(u, _)| u == id)) {
                if up != &down {
                    prefs.push(preference(prompt, up, down, &json!({"source": "feedback", "chosen_id": up_id, "rejected_id": down_id})));
                }
            }
        }
    }
    summary.preference_pairs = prefs.len();
    summary.sft_samples = sft.len();
    let summary_json = serde_json::to_string_pretty(&summary).expect("summary serialises");
    write_dir_atomically(out, |dir| {
        let lines = |v: &[Value]| v.iter().map(|x| x.to_string() + "\n").collect::<String>();
        let w = |name: &str, text: String| std::fs::write(dir.join(name), text).map_err(|e| deepfeed_model::ModelError::io(&dir.join(name), e));
        w("preferences.jsonl", lines(&prefs))?;
        w("sft.jsonl", lines(&sft))?;
        w("summary.json", summary_json + "\n")
    })?;
    Ok(summary)
}

fn preference(prompt: &Prompt, chosen: &str, rejected: &str, meta: &Value) -> Value {
    let mut meta = meta.clone();
    let prompt_text = match prompt {
        Prompt::Text(t) => t.clone(),
        Prompt::Chat(m) => {
            // the whole conversation stays in metadata; `prompt` is its last user turn
            meta["messages"] = json!(m);
            m.iter().rev().find(|c| c.role == "user").map(|c| c.content.clone()).unwrap_or_default()
        }
    };
    json!({"prompt": prompt_text, "chosen": chosen, "rejected": rejected, "metadata": meta})
}

fn sft_record(prompt: &Prompt, answer: &str, meta: &Value) -> Value {
    match prompt {
        Prompt::Text(t) => json!({"input_text": t, "target_text": answer, "metadata": meta}),
        Prompt::Chat(m) => {
            let mut messages = json!(m);
            messages.as_array_mut().expect("array").push(json!({"role": "assistant", "content": answer}));
            json!({"messages": messages, "metadata": meta})
        }
    }
}
