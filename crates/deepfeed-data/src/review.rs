//! `deepfeed review`: a queue of samples in SQLite (one file, WAL journal) that a person goes
//! through from the terminal — accept, edit, reject with a reason, or skip — and an export of the
//! accepted ones (edited versions where edited).
//!
//! Each sample is keyed by a normalised content hash (SHA-256 of its texts with whitespace
//! removed and letters lower-cased), so adding a file again, or a later file holding the same
//! sample, skips it: decisions, rejections included, are remembered across runs.
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::record::Record;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Accepted,
    Rejected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Accepted => "accepted",
            Status::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "accepted" => Status::Accepted,
            "rejected" => Status::Rejected,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub id: i64,
    pub record: Record,
    /// The reviewer's version, when edited.
    pub edited: Option<Record>,
    pub status: Status,
    pub reason: Option<String>,
    /// `file:line` it was added from.
    pub origin: String,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AddReport {
    pub added: usize,
    /// Already in the queue, still pending.
    pub already_queued: usize,
    /// Already accepted or rejected in an earlier run.
    pub already_decided: usize,
    /// Lines that are not valid records (line: reason).
    pub invalid: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct QueueStats {
    pub pending: usize,
    pub accepted: usize,
    /// Of the accepted, how many were edited.
    pub edited: usize,
    pub rejected: usize,
    /// Rejection reasons with counts, most frequent first.
    pub reasons: Vec<(String, usize)>,
}

pub struct ReviewQueue {
    conn: Connection,
    path: PathBuf,
}

/// The normalised content hash of a record (hex SHA-256).
pub fn content_hash(r: &Record) -> String {
    let mut h = Sha256::new();
    for t in r.texts() {
        let norm: String = t.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect();
        h.update(norm.as_bytes());
        h.update([0xff]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl ReviewQueue {
    /// Opens the queue file, creating it when missing.
    pub fn open(path: &Path) -> Result<Self> {
        let sql = |e: rusqlite::Error| DataError::Invalid(format!("{}: review queue: {e}", path.display()));
        let conn = Connection::open(path).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS samples (
                id INTEGER PRIMARY KEY,
                hash TEXT NOT NULL UNIQUE,
                record TEXT NOT NULL,
                edited TEXT,
                status TEXT NOT NULL DEFAULT 'pending',
                reason TEXT,
                origin TEXT NOT NULL,
                skips INTEGER NOT NULL DEFAULT 0,
                added_at INTEGER NOT NULL,
                decided_at INTEGER
            );
            CREATE INDEX IF NOT EXISTS samples_status ON samples(status, skips, id);",
        )
        .map_err(sql)?;
        Ok(ReviewQueue { conn, path: path.to_path_buf() })
    }

    fn err(&self, e: rusqlite::Error) -> DataError {
        DataError::Invalid(format!("{}: review queue: {e}", self.path.display()))
    }

    /// Adds the records of a project JSONL file; samples already in the queue are skipped.
    pub fn add_file(&mut self, file: &Path) -> Result<AddReport> {
        let text = std::fs::read(file).map_err(|e| DataError::io(file, e))?;
        let mut report = AddReport::default();
        let now = now();
        let tx = self.conn.transaction().map_err(|e| DataError::Invalid(format!("{}: {e}", self.path.display())))?;
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed = std::str::from_utf8(line)
                .map_err(|_| "not valid UTF-8".to_string())
                .and_then(|t| serde_json::from_str::<Value>(t.trim_start_matches('\u{feff}')).map_err(|e| format!("not valid JSON: {e}")))
                .and_then(|v| Record::parse(&v).map_err(|e| e.to_string()));
            let r = match parsed {
                Ok(r) => r,
                Err(e) => {
                    report.invalid.push(format!("{}:{}: {e}", file.display(), i + 1));
                    continue;
                }
            };
            let hash = content_hash(&r);
            let existing: Option<String> =
                tx.query_row("SELECT status FROM samples WHERE hash = ?1", params![hash], |row| row.get(0)).optional().map_err(|e| DataError::Invalid(e.to_string()))?;
            match existing.as_deref() {
                Some("pending") => report.already_queued += 1,
                Some(_) => report.already_decided += 1,
                None => {
                    tx.execute(
                        "INSERT INTO samples (hash, record, origin, added_at) VALUES (?1, ?2, ?3, ?4)",
                        params![hash, r.to_json().to_string(), format!("{}:{}", file.display(), i + 1), now],
                    )
                    .map_err(|e| DataError::Invalid(e.to_string()))?;
                    report.added += 1;
                }
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(report)
    }

    fn sample(row: &rusqlite::Row) -> rusqlite::Result<Sample> {
        let parse = |s: String| -> rusqlite::Result<Record> {
            serde_json::from_str::<Value>(&s)
                .ok()
                .and_then(|v| Record::parse(&v).ok())
                .ok_or_else(|| rusqlite::Error::InvalidColumnType(0, "record".into(), rusqlite::types::Type::Text))
        };
        let status: String = row.get(4)?;
        Ok(Sample {
            id: row.get(0)?,
            record: parse(row.get(1)?)?,
            edited: row.get::<_, Option<String>>(2)?.map(parse).transpose()?,
            status: Status::parse(&status).unwrap_or(Status::Pending),
            reason: row.get(5)?,
            origin: row.get(3)?,
        })
    }

    const COLUMNS: &'static str = "id, record, edited, origin, status, reason";

    /// The next pending sample (least skipped first, then in the order added), leaving out `except`.
    pub fn next_pending(&self, except: &[i64]) -> Result<Option<Sample>> {
        let ids = except.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let sql = format!("SELECT {} FROM samples WHERE status = 'pending' AND id NOT IN ({ids}) ORDER BY skips, id LIMIT 1", Self::COLUMNS);
        self.conn.query_row(&sql, [], Self::sample).optional().map_err(|e| self.err(e))
    }

    fn decide(&self, id: i64, status: Status, edited: Option<&Record>, reason: Option<&str>) -> Result<()> {
        let n = self
            .conn
            .execute(
                "UPDATE samples SET status = ?2, edited = ?3, reason = ?4, decided_at = ?5 WHERE id = ?1",
                params![id, status.as_str(), edited.map(|r| r.to_json().to_string()), reason, now()],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(DataError::Invalid(format!("{}: no sample {id} in the review queue", self.path.display())));
        }
        Ok(())
    }

    pub fn accept(&self, id: i64) -> Result<()> {
        self.decide(id, Status::Accepted, None, None)
    }

    /// Accepts the reviewer's version of the sample. Its hash is remembered too, so adding the
    /// edited version again is skipped as well.
    pub fn accept_edited(&self, id: i64, edited: &Record) -> Result<()> {
        self.decide(id, Status::Accepted, Some(edited), None)
    }

    pub fn reject(&self, id: i64, reason: &str) -> Result<()> {
        self.decide(id, Status::Rejected, None, Some(reason))
    }

    /// Puts the sample behind the others that were skipped less often.
    pub fn skip(&self, id: i64) -> Result<()> {
        self.conn.execute("UPDATE samples SET skips = skips + 1 WHERE id = ?1", params![id]).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Samples with this status (all when None), in the order added.
    pub fn list(&self, status: Option<Status>, limit: usize) -> Result<Vec<Sample>> {
        let filter = status.map_or(String::new(), |s| format!("WHERE status = '{}'", s.as_str()));
        let sql = format!("SELECT {} FROM samples {filter} ORDER BY id LIMIT {limit}", Self::COLUMNS);
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], Self::sample).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
    }

    pub fn stats(&self) -> Result<QueueStats> {
        let count = |sql: &str| -> Result<usize> { self.conn.query_row(sql, [], |r| r.get::<_, i64>(0)).map(|n| n as usize).map_err(|e| self.err(e)) };
        let mut stmt = self
            .conn
            .prepare("SELECT COALESCE(reason, ''), COUNT(*) FROM samples WHERE status = 'rejected' GROUP BY 1 ORDER BY 2 DESC, 1")
            .map_err(|e| self.err(e))?;
        let reasons = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize)))
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        Ok(QueueStats {
            pending: count("SELECT COUNT(*) FROM samples WHERE status = 'pending'")?,
            accepted: count("SELECT COUNT(*) FROM samples WHERE status = 'accepted'")?,
            edited: count("SELECT COUNT(*) FROM samples WHERE status = 'accepted' AND edited IS NOT NULL")?,
            rejected: count("SELECT COUNT(*) FROM samples WHERE status = 'rejected'")?,
            reasons,
        })
    }

    /// Writes the accepted samples (the edited version where there is one) to `out` as project
    /// JSONL; returns how many.
    pub fn export(&self, out: &Path) -> Result<usize> {
        let accepted = self.list(Some(Status::Accepted), usize::MAX >> 1)?;
        let mut text = String::new();
        for s in &accepted {
            text.push_str(&s.edited.as_ref().unwrap_or(&s.record).to_json().to_string());
            text.push('\n');
        }
        if out.exists() {
            return Err(DataError::Invalid(format!("{}: already exists; choose a new output path", out.display())));
        }
        let tmp = out.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(|e| DataError::io(&tmp, e))?;
        std::fs::rename(&tmp, out).map_err(|e| DataError::io(out, e))?;
        Ok(accepted.len())
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_remembered_across_runs() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("q.db");
        let data = d.path().join("a.jsonl");
        std::fs::write(
            &data,
            "{\"input_text\":\"退货怎么办？\",\"target_text\":\"七天内可退。\"}\n{\"text\":\"hello world\"}\nnot json\n{\"text\":\"spam spam\"}\n",
        )
        .unwrap();
        let mut q = ReviewQueue::open(&db).unwrap();
        let r = q.add_file(&data).unwrap();
        assert_eq!((r.added, r.invalid.len()), (3, 1));
        assert!(r.invalid[0].ends_with(":3: not valid JSON: expected ident at line 1 column 2"), "{:?}", r.invalid);
        let first = q.next_pending(&[]).unwrap().unwrap();
        q.skip(first.id).unwrap();
        let second = q.next_pending(&[]).unwrap().unwrap();
        assert_ne!(second.id, first.id, "a skipped sample goes behind");
        q.reject(second.id, "off topic").unwrap();
        let edited = Record::Pair { input: "退货怎么办？".into(), target: "收货七天内可无理由退货。".into(), rejected: None, metadata: None };
        q.accept_edited(first.id, &edited).unwrap();
        drop(q);
        // a second run: the same file again, with the rejected sample written differently
        std::fs::write(&data, "{\"text\":\"Hello   World\"}\n{\"text\":\"spam spam\"}\n{\"text\":\"new one\"}\n").unwrap();
        let mut q = ReviewQueue::open(&db).unwrap();
        let r = q.add_file(&data).unwrap();
        assert_eq!((r.added, r.already_queued, r.already_decided), (1, 1, 1));
        let s = q.stats().unwrap();
        assert_eq!((s.pending, s.accepted, s.edited, s.rejected), (2, 1, 1, 1));
        assert_eq!(s.reasons, [("off topic".to_string(), 1)]);
        let out = d.path().join("accepted.jsonl");
        assert_eq!(q.export(&out).unwrap(), 1);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), edited.to_json().to_string() + "\n");
        assert!(q.export(&out).is_err(), "an existing export is not overwritten");
    }
}
