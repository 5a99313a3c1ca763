//! Printing: the only place that writes to stdout. `--json` output is one
//! JSON document on stdout; diagnostics go to stderr through `tracing`.

use std::io::{IsTerminal, Write};

use serde::Serialize;

pub struct Out {
    pub json: bool,
    /// When set, what would go to stdout is kept here instead (`cordon mcp`,
    /// whose stdout is the protocol channel, runs commands through this).
    pub capture: Option<std::sync::Mutex<String>>,
}

impl Out {
    pub fn new(json: bool) -> Out {
        Out {
            json,
            capture: None,
        }
    }

    /// JSON output, kept in memory instead of printed.
    pub fn capturing() -> Out {
        Out {
            json: true,
            capture: Some(std::sync::Mutex::new(String::new())),
        }
    }

    /// What was captured (empty when not capturing).
    pub fn captured(&self) -> String {
        self.capture
            .as_ref()
            .and_then(|c| c.lock().ok().map(|s| s.clone()))
            .unwrap_or_default()
    }

    pub fn json<T: Serialize>(&self, v: &T) {
        if let Some(c) = &self.capture {
            if let (Ok(mut c), Ok(text)) = (c.lock(), serde_json::to_string_pretty(v)) {
                c.push_str(&text);
                c.push('\n');
            }
            return;
        }
        let mut o = std::io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut o, v);
        let _ = writeln!(o);
    }

    pub fn line(&self, s: impl AsRef<str>) {
        if let Some(c) = &self.capture {
            if let Ok(mut c) = c.lock() {
                c.push_str(s.as_ref());
                c.push('\n');
            }
            return;
        }
        let _ = writeln!(std::io::stdout().lock(), "{}", s.as_ref());
    }

    /// A table with a header row; columns padded to the widest cell.
    pub fn table(&self, header: &[&str], rows: &[Vec<String>]) {
        let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for r in rows {
            for (i, c) in r.iter().enumerate() {
                if i < w.len() {
                    w[i] = w[i].max(c.chars().count());
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
                        format!("{c:<width$}", width = w[i])
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        };
        self.line(fmt_row(header.to_vec()));
        for r in rows {
            self.line(fmt_row(r.iter().map(String::as_str).collect()));
        }
    }
}

/// Colour only on a terminal and when NO_COLOR is unset.
pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

pub fn print_error(e: &super::error::CommandError) {
    let mut err = std::io::stderr().lock();
    let prefix = if color_enabled() {
        "\x1b[31merror:\x1b[0m"
    } else {
        "error:"
    };
    let _ = writeln!(err, "{prefix} {}", e.message);
    for h in &e.hints {
        let _ = writeln!(err, "hint: {h}");
    }
}
