//! Where a long job's progress goes: a redrawing bar when stderr is a terminal; otherwise
//! (CI, logs, pipes) nothing redraws and messages are plain lines.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub enum Progress {
    Bar(ProgressBar),
    Lines,
}

impl Progress {
    /// A bar over `total` units starting at `first`, drawn with indicatif's `template`.
    pub fn new(first: usize, total: usize, template: &str) -> Progress {
        // A dumb terminal cannot move the cursor back, and a bar that would not draw
        // (indicatif's own check) would swallow the messages sent through it.
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        if !std::io::stderr().is_terminal() || dumb {
            return Progress::Lines;
        }
        match ProgressStyle::with_template(template) {
            Ok(st) => {
                let bar = ProgressBar::new(total as u64)
                    .with_style(st.progress_chars("=> "))
                    .with_position(first as u64);
                if bar.is_hidden() {
                    Progress::Lines
                } else {
                    Progress::Bar(bar)
                }
            }
            Err(_) => Progress::Lines,
        }
    }

    /// A message during the run: above the bar (never through it), or a plain line.
    pub fn say(&self, msg: &str) {
        match self {
            Progress::Bar(b) => b.println(msg),
            Progress::Lines => eprintln!("{msg}"),
        }
    }

    /// One more unit done.
    pub fn inc(&self) {
        if let Progress::Bar(b) = self {
            b.inc(1);
        }
    }

    /// The bar's trailing message.
    pub fn message(&self, msg: String) {
        if let Progress::Bar(b) = self {
            b.set_message(msg);
        }
    }

    /// Takes the bar off the screen (the lines it printed stay).
    pub fn clear(&self) {
        if let Progress::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

/// Seconds as 42s, 3m07s or 1h05m.
pub fn hms(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}
