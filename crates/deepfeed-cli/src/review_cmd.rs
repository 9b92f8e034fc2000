//! `deepfeed review`: add samples to a SQLite review queue, go through them from the terminal
//! (accept / edit in $EDITOR / reject with a reason / skip / quit), list, count and export.
use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use deepfeed_data::review::{ReviewQueue, Sample, Status};
use deepfeed_data::Record;

#[derive(Args)]
pub struct ReviewArgs {
    /// The queue (a SQLite file, created when missing)
    #[arg(long, global = true, default_value = "review.db")]
    queue: PathBuf,
    #[command(subcommand)]
    what: ReviewCommand,
}

#[derive(Subcommand)]
enum ReviewCommand {
    /// Add the records of project JSONL files (samples already queued or decided are skipped)
    Add {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Go through pending samples: [a]ccept, [e]dit ($EDITOR), [r]eject with a reason, [s]kip, [q]uit
    Next,
    /// Show samples
    List {
        /// pending, accepted or rejected (default: all)
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Counts per status and the rejection reasons
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Write the accepted samples (edited versions where edited) as project JSONL
    Export {
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(a: ReviewArgs) -> Result<()> {
    let mut q = ReviewQueue::open(&a.queue)?;
    match a.what {
        ReviewCommand::Add { files } => {
            for f in &files {
                let r = q.add_file(f)?;
                for e in &r.invalid {
                    eprintln!("skipped {e}");
                }
                println!(
                    "{}: {} added, {} already queued, {} already decided, {} invalid lines",
                    f.display(),
                    r.added,
                    r.already_queued,
                    r.already_decided,
                    r.invalid.len()
                );
            }
            print_stats(&q)
        }
        ReviewCommand::Next => {
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            let stdout = std::io::stdout();
            interactive(&q, &mut input, &mut stdout.lock())
        }
        ReviewCommand::List { status, limit } => {
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(Status::parse(s).ok_or_else(|| anyhow::anyhow!("--status {s:?}: expected pending, accepted or rejected"))?),
            };
            for s in q.list(status, limit)? {
                let mut out = std::io::stdout().lock();
                show(&s, &mut out)?;
            }
            Ok(())
        }
        ReviewCommand::Stats { json } => {
            if json {
                println!("{}", serde_json::to_string_pretty(&q.stats()?)?);
                Ok(())
            } else {
                print_stats(&q)
            }
        }
        ReviewCommand::Export { out } => {
            crate::refuse_existing(&out)?;
            let n = q.export(&out)?;
            println!("exported {n} accepted samples to {}", out.display());
            Ok(())
        }
    }
}

fn print_stats(q: &ReviewQueue) -> Result<()> {
    let s = q.stats()?;
    println!("queue: {} pending, {} accepted ({} edited), {} rejected", s.pending, s.accepted, s.edited, s.rejected);
    if !s.reasons.is_empty() {
        println!("rejection reasons: {}", s.reasons.iter().map(|(r, n)| format!("{n} {r}")).collect::<Vec<_>>().join("; "));
    }
    Ok(())
}

fn show(s: &Sample, out: &mut dyn Write) -> Result<()> {
    let status = match (s.status, &s.edited) {
        (Status::Accepted, Some(_)) => "accepted (edited)".to_string(),
        (Status::Rejected, _) => format!("rejected: {}", s.reason.as_deref().unwrap_or("")),
        (st, _) => st.as_str().to_string(),
    };
    writeln!(out, "── sample {} · {} · {status}", s.id, s.origin)?;
    match s.edited.as_ref().unwrap_or(&s.record) {
        Record::Pair { input, target, rejected, .. } => {
            writeln!(out, "input:\n{input}\ntarget:\n{target}")?;
            if let Some(r) = rejected {
                writeln!(out, "rejected:\n{r}")?;
            }
        }
        Record::Chat { messages, .. } => {
            for m in messages {
                writeln!(out, "{}:\n{}", m.role, m.content)?;
            }
        }
        Record::Text { text, .. } => writeln!(out, "text:\n{text}")?,
    }
    Ok(())
}

/// Opens `$VISUAL` / `$EDITOR` (default `vi`) on the sample as pretty JSON; returns the file's
/// text after the editor exits.
fn edit_in_editor(id: i64, draft: &str) -> Result<String> {
    let path = std::env::temp_dir().join(format!("deepfeed-review-{}-{id}.json", std::process::id()));
    std::fs::write(&path, draft)?;
    let set = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let editor = set("VISUAL").or_else(|| set("EDITOR")).unwrap_or_else(|| "vi".into());
    // through the shell, so that EDITOR may carry arguments ("code --wait")
    let status = std::process::Command::new("sh").arg("-c").arg(format!("{editor} \"$1\"")).arg("sh").arg(&path).status();
    let text = std::fs::read_to_string(&path);
    let _ = std::fs::remove_file(&path);
    match status {
        Ok(s) if s.success() => Ok(text?),
        Ok(s) => bail!("the editor ({editor}) exited with {s}; the sample is unchanged"),
        Err(e) => bail!("cannot start the editor ({editor}): {e}; set EDITOR"),
    }
}

fn read_line(input: &mut dyn BufRead) -> Result<Option<String>> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim().to_string()))
}

/// The review loop, reading answers from `input` (the terminal; tests pipe it).
pub fn interactive(q: &ReviewQueue, input: &mut dyn BufRead, out: &mut dyn Write) -> Result<()> {
    let (mut accepted, mut edited, mut rejected, mut skipped) = (0, 0, 0, 0);
    let mut skipped_now: Vec<i64> = Vec::new();
    'samples: while let Some(s) = q.next_pending(&skipped_now)? {
        show(&s, out)?;
        let mut draft = serde_json::to_string_pretty(&s.record.to_json())?;
        loop {
            write!(out, "[a]ccept [e]dit [r]eject [s]kip [q]uit > ")?;
            out.flush()?;
            let Some(answer) = read_line(input)? else { break 'samples };
            match answer.as_str() {
                "a" | "accept" => {
                    q.accept(s.id)?;
                    accepted += 1;
                    break;
                }
                "e" | "edit" => {
                    let text = match edit_in_editor(s.id, &draft) {
                        Ok(t) => t,
                        Err(e) => {
                            writeln!(out, "{e}")?;
                            continue;
                        }
                    };
                    let parsed = serde_json::from_str::<serde_json::Value>(&text).map_err(|e| format!("not valid JSON: {e}")).and_then(|v| Record::parse(&v).map_err(|e| e.to_string()));
                    match parsed {
                        Ok(r) => {
                            q.accept_edited(s.id, &r)?;
                            edited += 1;
                            writeln!(out, "saved the edited sample")?;
                            break;
                        }
                        Err(e) => {
                            // keep the reviewer's text for the next try
                            writeln!(out, "the edited sample is not valid ({e}); [e]dit again, or choose another action")?;
                            draft = text;
                        }
                    }
                }
                "r" | "reject" => {
                    write!(out, "reason > ")?;
                    out.flush()?;
                    let Some(reason) = read_line(input)? else { break 'samples };
                    q.reject(s.id, if reason.is_empty() { "no reason given" } else { &reason })?;
                    rejected += 1;
                    break;
                }
                "s" | "skip" => {
                    q.skip(s.id)?;
                    skipped_now.push(s.id);
                    skipped += 1;
                    break;
                }
                "q" | "quit" => break 'samples,
                other => writeln!(out, "{other:?}: type a, e, r, s or q")?,
            }
        }
    }
    let st = q.stats()?;
    writeln!(out, "this session: {accepted} accepted, {edited} edited, {rejected} rejected, {skipped} skipped; {} pending in the queue", st.pending)?;
    Ok(())
}
