//! Printing: the only place that writes to stdout. `--json` output is one
//! JSON document on stdout; diagnostics go to stderr through `tracing`.
//!
//! A write to stdout that fails (a full disk, a closed file) is remembered and
//! turns the exit code into 1 at the end (`cli::run`): a script must not take
//! a lost `--json` summary for success. A closed pipe (`cordon log show |
//! head`) is not an error: the reader has all it wanted.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use serde::Serialize;

pub struct Out {
    pub json: bool,
    /// When set, what would go to stdout is kept here instead (`cordon mcp`,
    /// whose stdout is the protocol channel, runs commands through this).
    pub capture: Option<Mutex<String>>,
    /// The first failed write to stdout, other than a closed pipe.
    failed: Mutex<Option<std::io::Error>>,
}

impl Out {
    pub fn new(json: bool) -> Out {
        Out {
            json,
            capture: None,
            failed: Mutex::new(None),
        }
    }

    /// JSON output, kept in memory instead of printed.
    pub fn capturing() -> Out {
        Out {
            json: true,
            capture: Some(Mutex::new(String::new())),
            failed: Mutex::new(None),
        }
    }

    /// Text output, kept in memory instead of printed.
    pub fn capturing_text() -> Out {
        Out {
            json: false,
            capture: Some(Mutex::new(String::new())),
            failed: Mutex::new(None),
        }
    }

    /// What was captured (empty when not capturing).
    pub fn captured(&self) -> String {
        self.capture
            .as_ref()
            .and_then(|c| c.lock().ok().map(|s| s.clone()))
            .unwrap_or_default()
    }

    fn wrote(&self, r: std::io::Result<()>) {
        let Err(e) = r else { return };
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return;
        }
        if let Ok(mut f) = self.failed.lock() {
            f.get_or_insert(e);
        }
    }

    /// Flush stdout and hand back the first write that failed, if any.
    pub fn finish(&self) -> Option<std::io::Error> {
        self.wrote(std::io::stdout().lock().flush());
        self.failed.lock().ok().and_then(|mut f| f.take())
    }

    pub fn json<T: Serialize>(&self, v: &T) {
        if let Some(c) = &self.capture {
            if let (Ok(mut c), Ok(text)) = (c.lock(), serde_json::to_string_pretty(v)) {
                c.push_str(&text);
                c.push('\n');
            }
            return;
        }
        // Buffered: stdout flushes at every newline, and a pretty document
        // of 100,000 findings has millions of lines (issue 21).
        let mut o = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        let r = serde_json::to_writer_pretty(&mut o, v)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(o))
            .and_then(|()| o.flush());
        self.wrote(r);
    }

    /// One line (or several) of text: control characters from the data in
    /// it are escaped, never sent to the terminal (see `crate::text`).
    pub fn line(&self, s: impl AsRef<str>) {
        if let Some(c) = &self.capture {
            if let Ok(mut c) = c.lock() {
                c.push_str(&crate::text::printable(s.as_ref()));
                c.push('\n');
            }
            return;
        }
        self.wrote(writeln!(
            std::io::stdout().lock(),
            "{}",
            crate::text::printable(s.as_ref())
        ));
    }

    /// Text with terminal control sequences cordon wrote itself (the
    /// `status --watch` screen clear), followed by escaped data.
    pub fn raw_then_line(&self, control: &str, s: impl AsRef<str>) {
        if self.capture.is_some() {
            self.line(s);
            return;
        }
        self.wrote(writeln!(
            std::io::stdout().lock(),
            "{control}{}",
            crate::text::printable(s.as_ref())
        ));
    }

    /// A table with a header row; columns padded to the widest cell. Cells
    /// are shown on one line each (newlines and control characters escaped)
    /// and may be of any length.
    pub fn table(&self, header: &[&str], rows: &[Vec<String>]) {
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|c| crate::text::one_line(c).into_owned())
                    .collect()
            })
            .collect();
        let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                if let Some(x) = w.get_mut(i) {
                    *x = (*x).max(c.chars().count());
                }
            }
        }
        let fmt_row = |cells: Vec<&str>| {
            let n = cells.len();
            cells
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    if i + 1 == n {
                        c.to_owned()
                    } else {
                        crate::text::pad(c, w.get(i).copied().unwrap_or(0))
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        };
        self.line(fmt_row(header.to_vec()));
        for r in &rows {
            self.line(fmt_row(r.iter().map(String::as_str).collect()));
        }
    }
}

/// Colour only on a terminal and when NO_COLOR is unset.
pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// A diagnostic for the person at the terminal (stderr, so `--json` output
/// stays one document); data in it is escaped like everything printed.
pub fn diag(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", crate::text::printable(text));
}

/// The error on stderr; with `-v` its causes too.
pub fn print_error(e: &super::error::CommandError, verbose: bool) {
    let mut err = std::io::stderr().lock();
    let prefix = if color_enabled() {
        "\x1b[31merror:\x1b[0m"
    } else {
        "error:"
    };
    let _ = writeln!(err, "{prefix} {}", crate::text::printable(&e.message));
    if verbose {
        for c in &e.causes {
            let _ = writeln!(err, "caused by: {}", crate::text::printable(c));
        }
    }
    for h in &e.hints {
        let _ = writeln!(err, "hint: {}", crate::text::printable(h));
    }
}
