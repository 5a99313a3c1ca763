//! `allowed_signers`: the OpenSSH file that says which key speaks for whom.
//!
//! The format is the one `ssh-keygen -Y verify` reads (and git, for SSH commit
//! signing), see ssh-keygen(1), "ALLOWED SIGNERS":
//!
//! ```text
//! principals [options] keytype base64-key [comment]
//! ```
//!
//! `principals` is a comma-separated list of patterns (`*`, `?`, and `!` to
//! negate, as OpenSSH's `match_pattern_list`); options are `namespaces="a,b"`,
//! `valid-after="..."` and `valid-before="..."` (YYYYMMDD[HHMM[SS]][Z]; without
//! `Z` the machine's local time zone, as ssh-keygen reads it) and
//! `cert-authority`, which cordon refuses: it verifies plain keys only, so a
//! file that trusts a CA would silently accept nobody and is rejected instead.
//! Parsing the same file the same way as ssh-keygen is what makes approvals
//! checkable with ssh-keygen alone.

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};
use ssh_key::{HashAlg, PublicKey};

use super::Finding;

/// One key line of `allowed_signers`.
#[derive(Debug, Clone)]
pub struct SignerEntry {
    /// 1-based line number in the file.
    pub line: usize,
    /// The principal patterns, as written (`alice`, `*@example.com`, `!bob`).
    pub principals: Vec<String>,
    /// `namespaces="..."`; `None` means every namespace.
    pub namespaces: Option<Vec<String>>,
    pub valid_after: Option<DateTime<Utc>>,
    pub valid_before: Option<DateTime<Utc>>,
    /// True when a validity time was written without `Z` (local time).
    pub local_time: bool,
    pub key: PublicKey,
    pub comment: String,
}

impl SignerEntry {
    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// Does `name` match this line's principal patterns?
    pub fn matches_principal(&self, name: &str) -> bool {
        match_pattern_list(name, &self.principals)
    }

    /// The principals written without wildcards or negation.
    pub fn literal_principals(&self) -> impl Iterator<Item = &str> {
        self.principals
            .iter()
            .map(String::as_str)
            .filter(|p| !p.starts_with('!') && !p.contains(['*', '?']))
    }

    pub fn allows_namespace(&self, ns: &str) -> bool {
        match &self.namespaces {
            None => true,
            Some(list) => list.iter().any(|n| match_pattern(ns, n)),
        }
    }

    /// The validity window in words, for error messages.
    pub fn window(&self) -> String {
        let fmt = |t: &DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
        match (&self.valid_after, &self.valid_before) {
            (Some(a), Some(b)) => format!("valid from {} until {}", fmt(a), fmt(b)),
            (Some(a), None) => format!("valid from {}", fmt(a)),
            (None, Some(b)) => format!("valid until {}", fmt(b)),
            (None, None) => "always valid".into(),
        }
    }
}

/// The parsed file.
#[derive(Debug, Clone, Default)]
pub struct AllowedSigners {
    pub entries: Vec<SignerEntry>,
}

impl AllowedSigners {
    /// Every line whose key is `key`.
    pub fn entries_for_key<'a>(
        &'a self,
        key: &'a ssh_key::public::KeyData,
    ) -> impl Iterator<Item = &'a SignerEntry> + 'a {
        self.entries.iter().filter(move |e| e.key.key_data() == key)
    }

    /// Is there any line whose principal patterns match `name`?
    pub fn has_principal(&self, name: &str) -> bool {
        self.entries.iter().any(|e| e.matches_principal(name))
    }
}

/// Parse `allowed_signers` text. Every malformed line becomes an error
/// finding naming `file` and the line; the result is an error if any line is.
pub fn parse(text: &str, file: &str) -> Result<AllowedSigners, Vec<Finding>> {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line, line_no) {
            Ok(e) => entries.push(e),
            Err(msg) => errors.push(Finding::error(file, Some(line_no), msg)),
        }
    }
    if errors.is_empty() {
        Ok(AllowedSigners { entries })
    } else {
        Err(errors)
    }
}

fn parse_line(line: &str, line_no: usize) -> Result<SignerEntry, String> {
    let (principals_tok, rest) = next_token(line);
    let principals_tok = unquote(principals_tok);
    if principals_tok.is_empty() {
        return Err("missing principals".into());
    }
    let principals: Vec<String> = principals_tok
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    if principals.is_empty() {
        return Err("missing principals".into());
    }
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Err(format!(
            "principals `{principals_tok}` are not followed by a key: expected `keytype base64-key`"
        ));
    }
    // OpenSSH tries to read a key first and only then options followed by a key.
    let (first, after_first) = next_token(rest);
    let (options, key_part) = if looks_like_key_type(first) {
        (None, rest)
    } else {
        (Some(first), after_first.trim_start())
    };
    let (key, comment) = parse_key(key_part)?;
    let mut entry = SignerEntry {
        line: line_no,
        principals,
        namespaces: None,
        valid_after: None,
        valid_before: None,
        local_time: false,
        key,
        comment,
    };
    if let Some(opts) = options {
        for opt in split_options(opts) {
            let (name, value) = match opt.split_once('=') {
                Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
                None => (opt.trim(), None),
            };
            match (name.to_ascii_lowercase().as_str(), value) {
                ("cert-authority", _) => {
                    return Err("`cert-authority` is not supported by cordon: list each signer's own public key instead of the CA's".into());
                }
                ("namespaces", Some(v)) => {
                    entry.namespaces = Some(
                        v.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    );
                }
                ("valid-after", Some(v)) => {
                    let (t, local) = parse_time(v)?;
                    entry.valid_after = Some(t);
                    entry.local_time |= local;
                }
                ("valid-before", Some(v)) => {
                    let (t, local) = parse_time(v)?;
                    entry.valid_before = Some(t);
                    entry.local_time |= local;
                }
                (n @ ("namespaces" | "valid-after" | "valid-before"), None) => {
                    return Err(format!("option `{n}` needs a value, e.g. `{n}=\"...\"`"));
                }
                (other, _) => {
                    return Err(format!(
                        "unknown option `{other}`: allowed_signers options are namespaces, valid-after and valid-before"
                    ));
                }
            }
        }
    }
    Ok(entry)
}

fn looks_like_key_type(tok: &str) -> bool {
    tok.starts_with("ssh-")
        || tok.starts_with("ecdsa-")
        || tok.starts_with("sk-")
        || tok.starts_with("rsa-")
        || tok.contains("@openssh.com")
}

fn parse_key(part: &str) -> Result<(PublicKey, String), String> {
    let (kt, rest) = next_token(part);
    let (b64, comment) = next_token(rest.trim_start());
    if kt.is_empty() || b64.is_empty() {
        return Err("missing key: expected `keytype base64-key` after the principals".into());
    }
    if kt.contains("-cert-v01@openssh.com") {
        return Err(format!(
            "certificate key type `{kt}` is not supported: list the signer's plain public key"
        ));
    }
    let key = PublicKey::from_openssh(&format!("{kt} {b64}"))
        .map_err(|e| format!("cannot read the `{kt}` key: {e}"))?;
    Ok((key, comment.trim().to_owned()))
}

/// Split off the next whitespace-delimited token, honouring double quotes.
fn next_token(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    let mut in_quotes = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            c if c.is_whitespace() && !in_quotes => return (&s[..i], &s[i..]),
            _ => {}
        }
    }
    (s, "")
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(s)
}

/// Split `a,b="x,y",c` on commas outside quotes.
fn split_options(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().filter(|o| !o.trim().is_empty()).collect()
}

/// `YYYYMMDD[HHMM[SS]][Z]`. Returns the time and whether it was local time.
pub fn parse_time(s: &str) -> Result<(DateTime<Utc>, bool), String> {
    let bad =
        || format!("time `{s}` is not YYYYMMDD[HHMM[SS]][Z] (e.g. `20270131Z`, `202701311730Z`)");
    let (digits, utc) = match s.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (s, false),
    };
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<u32, String> {
        digits.get(r).and_then(|d| d.parse().ok()).ok_or_else(bad)
    };
    let (h, m, sec) = match digits.len() {
        8 => (0, 0, 0),
        12 => (num(8..10)?, num(10..12)?, 0),
        14 => (num(8..10)?, num(10..12)?, num(12..14)?),
        _ => return Err(bad()),
    };
    let year = i32::try_from(num(0..4)?).map_err(|_| bad())?;
    let date = NaiveDate::from_ymd_opt(year, num(4..6)?, num(6..8)?).ok_or_else(bad)?;
    let naive: NaiveDateTime = date.and_hms_opt(h, m, sec).ok_or_else(bad)?;
    if utc {
        Ok((Utc.from_utc_datetime(&naive), false))
    } else {
        let local = Local
            .from_local_datetime(&naive)
            .earliest()
            .ok_or_else(bad)?;
        Ok((local.with_timezone(&Utc), true))
    }
}

/// OpenSSH `match_pattern`: `*` any run, `?` any one character.
pub fn match_pattern(s: &str, pattern: &str) -> bool {
    fn go(s: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('*', rest)) => (0..=s.len()).any(|i| go(&s[i..], rest)),
            Some(('?', rest)) => !s.is_empty() && go(&s[1..], rest),
            Some((c, rest)) => s.first() == Some(c) && go(&s[1..], rest),
        }
    }
    let s: Vec<char> = s.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    go(&s, &p)
}

/// OpenSSH `match_pattern_list`: a negated match (`!pat`) wins over any
/// positive one.
pub fn match_pattern_list(s: &str, patterns: &[String]) -> bool {
    let mut matched = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if match_pattern(s, neg) {
                return false;
            }
        } else if match_pattern(s, p) {
            matched = true;
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBB0JwkRfPDzA5t6UfpijdG7OR2/gBrgdhIK0ycTHmUB";

    #[test]
    fn parses_principals_options_key_and_comment() {
        let text = format!(
            "# comment\n\n\"alice,*@ops.example,!mallory\" namespaces=\"git,cordon-plan\",valid-after=\"20260101Z\",valid-before=20270101123000Z {KEY} alice@example\n"
        );
        let s = parse(&text, "allowed_signers").unwrap();
        assert_eq!(s.entries.len(), 1);
        let e = &s.entries[0];
        assert_eq!(e.line, 3);
        assert!(e.matches_principal("alice"));
        assert!(e.matches_principal("bob@ops.example"));
        assert!(!e.matches_principal("mallory"));
        assert!(!e.matches_principal("carol"));
        assert_eq!(e.literal_principals().collect::<Vec<_>>(), vec!["alice"]);
        assert!(e.allows_namespace("cordon-plan"));
        assert!(!e.allows_namespace("file"));
        assert_eq!(
            e.valid_after.unwrap().to_rfc3339(),
            "2026-01-01T00:00:00+00:00"
        );
        assert_eq!(
            e.valid_before.unwrap().to_rfc3339(),
            "2027-01-01T12:30:00+00:00"
        );
        assert!(!e.local_time);
        assert_eq!(e.comment, "alice@example");
    }

    #[test]
    fn negated_pattern_wins() {
        let pats = vec!["*".to_string(), "!mallory".to_string()];
        assert!(match_pattern_list("alice", &pats));
        assert!(!match_pattern_list("mallory", &pats));
        assert!(match_pattern("ab", "a?"));
        assert!(!match_pattern("abc", "a?"));
    }

    #[test]
    fn errors_name_file_and_line_and_refuse_cert_authority() {
        let text = format!("alice {KEY}\nbob cert-authority {KEY}\ncarol ssh-ed25519 !!!notbase64\ndave frobnicate {KEY}\neve\nfrank valid-after=\"2026\" {KEY}\n");
        let errs = parse(&text, "policies/allowed_signers").unwrap_err();
        let lines: Vec<_> = errs.iter().map(|f| f.line.unwrap()).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6]);
        assert!(errs[0].message.contains("cert-authority"), "{}", errs[0]);
        assert!(errs[0]
            .to_string()
            .starts_with("policies/allowed_signers:2:"));
        assert!(errs[2].message.contains("unknown option `frobnicate`"));
        assert!(errs[4].message.contains("YYYYMMDD"));
    }

    #[test]
    fn time_formats() {
        assert_eq!(
            parse_time("20260301Z").unwrap().0.to_rfc3339(),
            "2026-03-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("202603011230Z").unwrap().0.to_rfc3339(),
            "2026-03-01T12:30:00+00:00"
        );
        assert!(parse_time("20260301").unwrap().1, "no Z means local time");
        assert!(parse_time("20261301Z").is_err());
        assert!(parse_time("2026030112Z").is_err());
    }
}
