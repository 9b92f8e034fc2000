//! Progress of a long pass over a file, on stderr: an indicatif bar on a terminal, plain lines
//! (at most one every 5 seconds) otherwise, nothing for small inputs or when switched off.
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

enum Mode {
    Off,
    Bar(ProgressBar),
    Lines { last: Instant, printed: bool },
}

pub struct Progress {
    label: &'static str,
    total: u64,
    done: u64,
    mode: Mode,
}

impl Progress {
    /// `total`: bytes to go through (0 when unknown).
    pub fn new(label: &'static str, total: u64, enabled: bool) -> Self {
        let mode = if !enabled {
            Mode::Off
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}")
                    .expect("valid progress template")
                    .progress_chars("=> "),
            );
            bar.set_message(label);
            Mode::Bar(bar)
        } else {
            Mode::Lines { last: Instant::now(), printed: false }
        };
        Progress { label, total, done: 0, mode }
    }

    pub fn set(&mut self, done: u64) {
        self.done = done;
        match &mut self.mode {
            Mode::Off => {}
            Mode::Bar(b) => b.set_position(done),
            Mode::Lines { last, printed } => {
                if last.elapsed() >= Duration::from_secs(5) {
                    *last = Instant::now();
                    *printed = true;
                    eprintln!("{}", self.line());
                }
            }
        }
    }

    fn line(&self) -> String {
        let mb = |b: u64| b as f64 / 1e6;
        if self.total > 0 {
            format!("{}: {:.0}% ({:.1} of {:.1} MB)", self.label, 100.0 * self.done as f64 / self.total as f64, mb(self.done), mb(self.total))
        } else {
            format!("{}: {:.1} MB", self.label, mb(self.done))
        }
    }

    pub fn finish(&mut self) {
        match &self.mode {
            Mode::Bar(b) => b.finish_and_clear(),
            Mode::Lines { printed: true, .. } => eprintln!("{}", self.line()),
            _ => {}
        }
        self.mode = Mode::Off;
    }
}

/// A reader that shows the bytes read so far through a `Progress` (finished when dropped).
pub struct ProgressReader<R> {
    inner: R,
    read: u64,
    progress: Progress,
}

impl ProgressReader<std::fs::File> {
    /// Opens `path` for reading with a progress display labelled `label` (when `enabled`).
    pub fn open(path: &std::path::Path, label: &'static str, enabled: bool) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let total = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(ProgressReader { inner: file, read: 0, progress: Progress::new(label, total, enabled) })
    }
}

impl<R: std::io::Read> std::io::Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.progress.set(self.read);
        Ok(n)
    }
}

impl<R> Drop for ProgressReader<R> {
    fn drop(&mut self) {
        self.progress.finish();
    }
}
