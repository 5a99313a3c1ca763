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

    /// One line (or several) of text: control characters from the data in
    /// it are escaped, never sent to the terminal (see `crate::text`).
    pub fn line(&self, s: impl AsRef<str>) {
        let _ = writeln!(
            std::io::stdout().lock(),
            "{}",
            crate::text::printable(s.as_ref())
        );
    }

    /// Text with terminal control sequences cordon wrote itself (the
    /// `status --watch` screen clear), followed by escaped data.
    pub fn raw_then_line(&self, control: &str, s: impl AsRef<str>) {
        let _ = writeln!(
            std::io::stdout().lock(),
            "{control}{}",
            crate::text::printable(s.as_ref())
        );
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

/// A note for the person at the terminal (stderr, so `--json` output stays
/// one document); data in it is escaped like everything printed.
pub fn note(text: &str) {
    let _ = writeln!(
        std::io::stderr().lock(),
        "note: {}",
        crate::text::printable(text)
    );
}

pub fn print_error(e: &super::error::CommandError) {
    let mut err = std::io::stderr().lock();
    let prefix = if color_enabled() {
        "\x1b[31merror:\x1b[0m"
    } else {
        "error:"
    };
    let _ = writeln!(err, "{prefix} {}", crate::text::printable(&e.message));
    for h in &e.hints {
        let _ = writeln!(err, "hint: {}", crate::text::printable(h));
    }
}
