//! Printing: the only place that writes to stdout. `--json` output is one
//! JSON document on stdout; diagnostics go to stderr through `tracing`.

use std::io::{IsTerminal, Write};

use serde::Serialize;

pub struct Out {
    pub json: bool,
}

impl Out {
    pub fn json<T: Serialize>(&self, v: &T) {
        let mut o = std::io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut o, v);
        let _ = writeln!(o);
    }

    pub fn line(&self, s: impl AsRef<str>) {
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
