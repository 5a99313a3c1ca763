//! Text from outside (report fields, item names, titles, reasons) on its way
//! to a terminal. A report that says `\x1b[2J ALL CONTAINED OK` must not clear
//! the on-call engineer's screen and print a fake verdict: control characters
//! and bidirectional overrides are shown as visible escapes instead. JSON
//! output needs none of this (serde escapes control characters).

use std::borrow::Cow;

/// Characters that would act on a terminal rather than print: C0 controls,
/// DEL, C1 controls, and the Unicode bidi controls that reorder what is shown.
fn hostile(c: char, keep_newlines: bool) -> bool {
    match c {
        '\n' | '\t' => !keep_newlines,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' => true,
        _ => false,
    }
}

fn escape(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| hostile(c, keep_newlines)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hostile(c, keep_newlines) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` safe to print as (possibly several) lines: newlines and tabs kept,
/// every other control character escaped (`\u{1b}`).
pub fn printable(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// `s` safe to print inside one line (a table cell, a name): newlines and
/// tabs escaped too.
pub fn one_line(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// `s` left-aligned in `width` characters. Unlike `format!("{s:<width$}")`,
/// it takes any width (std's formatter panics past 65,535).
pub fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    let mut out = String::with_capacity(s.len() + width.saturating_sub(n));
    out.push_str(s);
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(n)));
    out
}

/// Free text typed on the command line (`--as`, `--reason`, titles, item
/// names, summaries): a credential typed there by mistake is replaced by its
/// fingerprint before anything stores or echoes it (see
/// `intake::classify::redact`), with a warning on stderr.
pub fn free_text(s: &str) -> Result<String, String> {
    match crate::intake::classify::redact(s) {
        None => Ok(s.to_owned()),
        Some(r) => {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr().lock(),
                "warning: a credential was typed into a command-line argument; cordon keeps only its fingerprint: {}",
                crate::text::one_line(&r)
            );
            Ok(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        let evil = "a\x1b[2J\x1b[HALL CONTAINED OK\r\u{7}\u{9b}x\u{202e}y";
        let p = printable(evil);
        assert!(
            !p.chars().any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{p}"
        );
        assert!(p.contains("\\u{1b}[2J"), "{p}");
        assert_eq!(printable("two\nlines\tok"), "two\nlines\tok");
        assert_eq!(one_line("two\nlines"), "two\\nlines");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn pad_takes_any_width() {
        assert_eq!(pad("ab", 4), "ab  ");
        assert_eq!(pad("abcdef", 4), "abcdef");
        let long = "x".repeat(70_000);
        assert_eq!(pad(&long, 70_001).len(), 70_001);
    }
}
