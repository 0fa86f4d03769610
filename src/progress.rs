//! Progress for long work: a bar on a terminal, a line per update otherwise
//! (rate and ETA either way), nothing with `--json` or in tests.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::format;

/// Minimum gap between plain progress lines.
const LINE_EVERY: Duration = Duration::from_secs(2);

pub struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
    label: String,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// `visible = false` gives a silent reporter (for `--json` and tests).
    pub fn new(label: &str, total: u64, visible: bool) -> Progress {
        let terminal = visible && std::io::stderr().is_terminal();
        let bar = terminal.then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {human_pos}/{human_len} rows  {per_sec}  ETA {eta}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            bar.set_message(label.to_string());
            bar
        });
        Progress {
            bar,
            lines: visible && !terminal,
            label: label.to_string(),
            total,
            done: 0,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    pub fn add(&mut self, n: u64) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
        } else if self.lines && (self.last_line.elapsed() >= LINE_EVERY || self.done >= self.total)
        {
            self.last_line = Instant::now();
            eprintln!("{}", self.line());
        }
    }

    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let rate = self.done as f64 / secs;
        let eta = if rate > 0.0 && self.total > self.done {
            format::duration(Duration::from_secs_f64(
                (self.total - self.done) as f64 / rate,
            ))
        } else {
            "-".into()
        };
        format!(
            "{}: {}/{} rows, {} rows/s, ETA {}",
            self.label,
            format::count(self.done),
            format::count(self.total),
            format::count(rate as u64),
            eta
        )
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
