//! Recognise credentials in raw text without ever echoing what is not one.
//!
//! GitHub classic tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`) end in a
//! checksum: the last 6 characters are base62(CRC32(the 30 random characters)),
//! zero-padded. No scanner checks it, so scanners report look-alikes that
//! GitHub would never have issued; cordon checks it and refuses to spend a
//! revocation call on them. Fine-grained tokens (`github_pat_`) carry no
//! publicly documented checksum: they are matched by format only.
//!
//! Since 27 April 2026 GitHub App installation tokens also come in a stateless
//! format, `ghs_` + app id + `_` + a JWT (about 520 characters, two dots; see
//! [`cordon_connector::github_token`]). They carry no CRC checksum: they are
//! matched by structure, and one whose JWT header or payload does not decode
//! is reported as damaged rather than spent on.
//!
//! AWS access key ids (`AKIA` long-term, `ASIA` session) are 20 characters of
//! the base32 alphabet; secrets are 40 characters of base64. A secret is only
//! taken when it can be paired with a key id in the same text (the nearest
//! one), or when it stands alone on a line: a free-floating 40-character
//! string is far more often a hash than a key.

use std::sync::OnceLock;

use cordon_connector::Secret;
use regex::Regex;

/// What kind of GitHub credential a prefix denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GithubKind {
    /// `ghp_`: classic personal access token.
    ClassicPat,
    /// `github_pat_`: fine-grained personal access token.
    FineGrainedPat,
    /// `gho_`: OAuth app user token.
    Oauth,
    /// `ghu_`: GitHub App user-to-server token.
    AppUser,
    /// `ghs_`: GitHub App installation (server-to-server) token.
    Installation,
    /// `ghr_`: refresh token.
    Refresh,
}

impl GithubKind {
    pub fn prefix(self) -> &'static str {
        match self {
            GithubKind::ClassicPat => "ghp_",
            GithubKind::FineGrainedPat => "github_pat_",
            GithubKind::Oauth => "gho_",
            GithubKind::AppUser => "ghu_",
            GithubKind::Installation => "ghs_",
            GithubKind::Refresh => "ghr_",
        }
    }

    fn from_classic_prefix(p: &str) -> Option<GithubKind> {
        Some(match p {
            "ghp" => GithubKind::ClassicPat,
            "gho" => GithubKind::Oauth,
            "ghu" => GithubKind::AppUser,
            "ghs" => GithubKind::Installation,
            "ghr" => GithubKind::Refresh,
            _ => return None,
        })
    }
}

/// One thing found in the text. Secrets stay in [`Secret`]; everything else
/// here is safe to print.
#[derive(Debug)]
pub enum Found {
    GithubToken {
        kind: GithubKind,
        secret: Secret,
        /// 1-based line in the input.
        line: usize,
    },
    AwsKey {
        key_id: String,
        /// `ASIA`: temporary session credentials (revoke the role's sessions).
        session: bool,
        secret: Option<Secret>,
        line: usize,
        /// Line of the paired secret, when it is on another line.
        secret_line: Option<usize>,
    },
    /// Looked like a credential but is not a valid one. `reason` never
    /// contains the text itself.
    Invalid {
        what: &'static str,
        reason: String,
        /// Fingerprint of the rejected text, so a user can match it up.
        fingerprint: String,
        line: usize,
    },
    /// A 40-character AWS-secret-shaped string with no key id to pair it with.
    AwsSecretUnpaired { secret: Secret, line: usize },
    /// A private key block (OpenSSH or PEM): a deploy key's, a GitHub App's.
    PrivateKey {
        secret: Secret,
        info: crate::intake::private_key::PrivateKeyInfo,
        line: usize,
    },
    /// A non-empty line in which nothing was recognised.
    Unrecognised { line: usize, length: usize },
}

impl Found {
    pub fn line(&self) -> usize {
        match self {
            Found::GithubToken { line, .. }
            | Found::AwsKey { line, .. }
            | Found::Invalid { line, .. }
            | Found::AwsSecretUnpaired { line, .. }
            | Found::PrivateKey { line, .. }
            | Found::Unrecognised { line, .. } => *line,
        }
    }
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// base62(CRC32(random part)), left-padded with `0` to 6 characters.
pub fn github_checksum(random_part: &str) -> String {
    let mut n = crc32fast::hash(random_part.as_bytes());
    let mut digits = Vec::with_capacity(6);
    while n > 0 {
        digits.push(BASE62[(n % 62) as usize]);
        n /= 62;
    }
    while digits.len() < 6 {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8_lossy(&digits).into_owned()
}

/// True when a classic token's last 6 characters are the checksum of the 30 before.
pub fn classic_checksum_ok(token: &str) -> bool {
    let Some(body) = token.get(4..) else {
        return false;
    };
    if body.len() != 36 || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (random, check) = body.split_at(30);
    github_checksum(random) == check
}

struct Patterns {
    stateless: Regex,
    classic: Regex,
    fine: Regex,
    aws_id: Regex,
    aws_secret: Regex,
}

fn patterns() -> Option<&'static Patterns> {
    static P: OnceLock<Option<Patterns>> = OnceLock::new();
    P.get_or_init(|| {
        Some(Patterns {
            // GitHub's pattern is `ghs_[A-Za-z0-9\._]{36,}`; base64url may
            // also hold `-`, so each JWT segment takes it too.
            stateless: Regex::new(r"ghs_[0-9]{1,20}_[A-Za-z0-9_.-]{20,}").ok()?,
            classic: Regex::new(r"(gh[pousr])_([A-Za-z0-9]*)").ok()?,
            fine: Regex::new(r"github_pat_([A-Za-z0-9_]*)").ok()?,
            aws_id: Regex::new(r"(AKIA|ASIA)[A-Z2-7]{16}").ok()?,
            aws_secret: Regex::new(r"[A-Za-z0-9/+]{40}").ok()?,
        })
    })
    .as_ref()
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'/' || b == b'+' || b == b'='
}

/// Scan `text` and return everything recognised, in order of appearance.
pub fn classify(text: &str) -> Vec<Found> {
    let Some(p) = patterns() else {
        return Vec::new();
    };
    let mut out: Vec<(usize, Found)> = Vec::new();
    let mut covered: Vec<(usize, usize)> = Vec::new();
    let bytes = text.as_bytes();
    // Newline offsets once; a line number is a binary search (counting the
    // newlines before every match was quadratic on a large text).
    let newlines: Vec<usize> = text
        .bytes()
        .enumerate()
        .filter(|(_, b)| *b == b'\n')
        .map(|(i, _)| i)
        .collect();
    let line_of = |pos: usize| newlines.partition_point(|&n| n < pos) + 1;
    let before_ok = |start: usize| start == 0 || !is_word(bytes[start - 1]);

    // Private key blocks first: their base64 lines are no one else's matches.
    for k in crate::intake::private_key::find_private_keys(text) {
        covered.push((k.start, k.end));
        let line = line_of(k.start);
        out.push((
            k.start,
            match k.info {
                Ok(info) => Found::PrivateKey {
                    secret: k.secret,
                    info,
                    line,
                },
                Err(reason) => Found::Invalid {
                    what: "private key",
                    reason,
                    fingerprint: k.secret.fingerprint(),
                    line,
                },
            },
        ));
    }

    for m in p.stateless.find_iter(text) {
        if !before_ok(m.start()) {
            continue;
        }
        // A sentence may end right after the token.
        let tok = m.as_str().trim_end_matches('.');
        let end = m.start() + tok.len();
        let line = line_of(m.start());
        let parsed = cordon_connector::github_token::stateless_installation(tok);
        if parsed == Err(cordon_connector::github_token::StatelessShapeError::NotStateless) {
            continue; // an identifier that starts like one; the classic check sees it
        }
        covered.push((m.start(), end));
        match parsed {
            Ok(_) => out.push((
                m.start(),
                Found::GithubToken {
                    kind: GithubKind::Installation,
                    secret: Secret::new(tok),
                    line,
                },
            )),
            Err(e) => out.push((
                m.start(),
                Found::Invalid {
                    what: "github installation token",
                    reason: match e {
                        cordon_connector::github_token::StatelessShapeError::Damaged(why) => format!(
                            "stateless `ghs_` token ({} characters) whose structure is broken: {why}; a truncated or corrupted copy, no revocation call will be spent on it",
                            tok.len()
                        ),
                        cordon_connector::github_token::StatelessShapeError::NotStateless => {
                            continue;
                        }
                    },
                    fingerprint: cordon_connector::fingerprint(tok.as_bytes()),
                    line,
                },
            )),
        }
    }

    for m in p.fine.find_iter(text) {
        if !before_ok(m.start()) {
            continue;
        }
        let tok = m.as_str();
        let body = &tok["github_pat_".len()..];
        let ok = body.len() == 82
            && body.as_bytes()[22] == b'_'
            && body[..22].bytes().all(|b| b.is_ascii_alphanumeric())
            && body[23..].bytes().all(|b| b.is_ascii_alphanumeric());
        covered.push((m.start(), m.end()));
        let line = line_of(m.start());
        if ok {
            out.push((
                m.start(),
                Found::GithubToken {
                    kind: GithubKind::FineGrainedPat,
                    secret: Secret::new(tok),
                    line,
                },
            ));
        } else {
            out.push((
                m.start(),
                Found::Invalid {
                    what: "github fine-grained token",
                    reason: format!(
                        "wrong shape: `github_pat_` must be followed by 22 characters, `_` and 59 characters (found {} characters)",
                        body.len()
                    ),
                    fingerprint: cordon_connector::fingerprint(tok.as_bytes()),
                    line,
                },
            ));
        }
    }

    for c in p.classic.captures_iter(text) {
        let (Some(m), Some(prefix), Some(body)) = (c.get(0), c.get(1), c.get(2)) else {
            continue;
        };
        if !before_ok(m.start()) {
            continue;
        }
        let Some(kind) = GithubKind::from_classic_prefix(prefix.as_str()) else {
            continue;
        };
        if overlaps(&covered, m.start(), m.end()) {
            continue;
        }
        // A trailing `_` means something longer than a token (an identifier).
        if bytes.get(m.end()) == Some(&b'_') {
            continue;
        }
        let tok = m.as_str();
        let line = line_of(m.start());
        covered.push((m.start(), m.end()));
        let fp = cordon_connector::fingerprint(tok.as_bytes());
        let len = body.as_str().len();
        if len == 36 {
            if classic_checksum_ok(tok) {
                out.push((
                    m.start(),
                    Found::GithubToken {
                        kind,
                        secret: Secret::new(tok),
                        line,
                    },
                ));
            } else {
                out.push((
                    m.start(),
                    Found::Invalid {
                        what: "github token",
                        reason: format!(
                            "`{}` token with a wrong checksum: GitHub never issued it (a look-alike or a corrupted copy); no revocation call will be spent on it",
                            kind.prefix()
                        ),
                        fingerprint: fp,
                        line,
                    },
                ));
            }
        } else if len >= 8 {
            out.push((
                m.start(),
                Found::Invalid {
                    what: "github token",
                    reason: format!(
                        "`{}` followed by {len} characters instead of 36: truncated or not a token",
                        kind.prefix()
                    ),
                    fingerprint: fp,
                    line,
                },
            ));
        }
    }

    let mut ids: Vec<(usize, usize, String)> = Vec::new();
    for m in p.aws_id.find_iter(text) {
        let before = m.start() == 0 || !bytes[m.start() - 1].is_ascii_alphanumeric();
        let after = bytes
            .get(m.end())
            .is_none_or(|b| !b.is_ascii_alphanumeric());
        if before && after && !overlaps(&covered, m.start(), m.end()) {
            ids.push((m.start(), m.end(), m.as_str().to_owned()));
        }
    }
    for (s, e, _) in &ids {
        covered.push((*s, *e));
    }

    let mut secrets: Vec<(usize, Secret)> = Vec::new();
    for m in p.aws_secret.find_iter(text) {
        // `=` may precede a secret (`KEY=...`) but not follow it (padding of a longer blob).
        let before = m.start() == 0 || {
            let b = bytes[m.start() - 1];
            b == b'=' || !is_b64(b)
        };
        let after = bytes.get(m.end()).is_none_or(|b| !is_b64(*b));
        if !before || !after || overlaps(&covered, m.start(), m.end()) {
            continue;
        }
        let s = m.as_str();
        // A 40-character hex string is a SHA-1 (git commit ids), not a key.
        let has_upper = s.bytes().any(|b| b.is_ascii_uppercase());
        let has_lower = s.bytes().any(|b| b.is_ascii_lowercase());
        let has_digit = s.bytes().any(|b| b.is_ascii_digit());
        if !(has_upper && has_lower && has_digit) {
            continue;
        }
        secrets.push((m.start(), Secret::new(s)));
    }

    // Pair each key id with the nearest unused secret (by byte distance).
    let mut used = vec![false; secrets.len()];
    let mut pairs: Vec<Option<usize>> = vec![None; ids.len()];
    let mut candidates: Vec<(usize, usize, usize)> = Vec::new();
    for (i, (s, _, _)) in ids.iter().enumerate() {
        for (j, (pos, _)) in secrets.iter().enumerate() {
            candidates.push((s.abs_diff(*pos), i, j));
        }
    }
    candidates.sort();
    for (_, i, j) in candidates {
        if pairs[i].is_none() && !used[j] {
            pairs[i] = Some(j);
            used[j] = true;
        }
    }
    let secret_pos: Vec<usize> = secrets.iter().map(|(p, _)| *p).collect();
    let mut taken: Vec<Option<Secret>> = secrets.into_iter().map(|(_, s)| Some(s)).collect();
    for (i, (s, _, id)) in ids.iter().enumerate() {
        let secret_line = pairs[i].map(|j| line_of(secret_pos[j]));
        let secret = pairs[i].and_then(|j| taken.get_mut(j).and_then(Option::take));
        out.push((
            *s,
            Found::AwsKey {
                key_id: id.clone(),
                session: id.starts_with("ASIA"),
                secret,
                line: line_of(*s),
                secret_line,
            },
        ));
    }
    // Unpaired secrets count only when they stand alone on their line.
    for m in p.aws_secret.find_iter(text) {
        let Some(idx) = taken
            .iter()
            .position(|t| t.as_ref().is_some_and(|t| t.expose() == m.as_str()))
        else {
            continue;
        };
        let line_start = text[..m.start()].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[m.end()..]
            .find('\n')
            .map_or(text.len(), |i| m.end() + i);
        let alone = text[line_start..line_end].trim() == m.as_str();
        if let Some(secret) = taken[idx].take() {
            if alone {
                out.push((
                    m.start(),
                    Found::AwsSecretUnpaired {
                        secret,
                        line: line_of(m.start()),
                    },
                ));
            }
        }
    }

    out.sort_by_key(|(pos, _)| *pos);
    out.into_iter().map(|(_, f)| f).collect()
}

/// `text` with every credential-shaped part (a GitHub token of any length or
/// checksum, a fine-grained PAT, a 40-character AWS-secret-shaped string)
/// replaced by `[redacted sha256:<fingerprint prefix>]`, or `None` when there
/// was none. For free text typed on the command line (`--reason`, `--as`,
/// titles, item names): it is stored in plans and the audit log and echoed
/// by `log show` and `report`, so a token pasted there by mistake must be
/// kept only as its fingerprint. AWS key ids are not secret and stay.
pub fn redact(text: &str) -> Option<String> {
    let p = patterns()?;
    let bytes = text.as_bytes();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let word_before = |s: usize| s > 0 && is_word(bytes[s - 1]);
    for m in p.fine.find_iter(text) {
        if !word_before(m.start()) && m.len() > "github_pat_".len() + 4 {
            spans.push((m.start(), m.end()));
        }
    }
    for c in p.classic.captures_iter(text) {
        let (Some(m), Some(body)) = (c.get(0), c.get(2)) else {
            continue;
        };
        if !word_before(m.start())
            && body.as_str().len() >= 8
            && !overlaps(&spans, m.start(), m.end())
        {
            spans.push((m.start(), m.end()));
        }
    }
    for m in p.aws_secret.find_iter(text) {
        let s = m.as_str();
        let mixed = s.bytes().any(|b| b.is_ascii_uppercase())
            && s.bytes().any(|b| b.is_ascii_lowercase())
            && s.bytes().any(|b| b.is_ascii_digit());
        let alone =
            (m.start() == 0 || !is_b64(bytes[m.start() - 1]) || bytes[m.start() - 1] == b'=')
                && bytes.get(m.end()).is_none_or(|b| !is_b64(*b));
        if mixed && alone && !overlaps(&spans, m.start(), m.end()) {
            spans.push((m.start(), m.end()));
        }
    }
    if spans.is_empty() {
        return None;
    }
    spans.sort();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e) in spans {
        out.push_str(&text[at..s]);
        let fp = cordon_connector::fingerprint(&bytes[s..e]);
        out.push_str(&format!(
            "[redacted sha256:{}]",
            fp.get(..16).unwrap_or(&fp)
        ));
        at = e;
    }
    out.push_str(&text[at..]);
    Some(out)
}

/// Classify input that holds one secret per line (plain-text intake):
/// every non-empty line in which nothing was recognised is reported as
/// [`Found::Unrecognised`], by line number and length only.
pub fn classify_lines(text: &str) -> Vec<Found> {
    let found = classify(text);
    let mut lines_with: std::collections::BTreeSet<usize> = found.iter().map(Found::line).collect();
    lines_with.extend(found.iter().filter_map(|f| match f {
        Found::AwsKey { secret_line, .. } => *secret_line,
        _ => None,
    }));
    let mut out = found;
    for (i, l) in text.lines().enumerate() {
        let n = i + 1;
        let t = l.trim();
        if !t.is_empty() && !t.starts_with('#') && lines_with.insert(n) {
            out.push(Found::Unrecognised {
                line: n,
                length: t.len(),
            });
        }
    }
    out.sort_by_key(Found::line);
    out
}

fn overlaps(covered: &[(usize, usize)], s: usize, e: usize) -> bool {
    covered.iter().any(|(a, b)| s < *b && *a < e)
}

/// A classic token with a valid checksum, for tests and demos: `prefix` +
/// 30 characters derived from `seed` + the checksum.
pub fn make_classic_token(prefix: &str, seed: &str) -> String {
    let mut random = String::with_capacity(30);
    let mut state = crc32fast::hash(seed.as_bytes()) as u64 | 1;
    while random.len() < 30 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        random.push(BASE62[(state % 62) as usize] as char);
    }
    let check = github_checksum(&random);
    format!("{prefix}{random}{check}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn kinds(found: &[Found]) -> Vec<String> {
        found
            .iter()
            .map(|f| match f {
                Found::GithubToken { kind, .. } => format!("gh:{kind:?}"),
                Found::AwsKey {
                    key_id,
                    secret,
                    session,
                    ..
                } => format!(
                    "aws:{}:{}:{}",
                    &key_id[..4],
                    if *session { "session" } else { "long" },
                    secret.is_some()
                ),
                Found::Invalid { what, .. } => format!("invalid:{what}"),
                Found::AwsSecretUnpaired { .. } => "aws-secret-unpaired".into(),
                Found::PrivateKey { info, .. } => format!("private-key:{}", info.format),
                Found::Unrecognised { .. } => "unrecognised".into(),
            })
            .collect()
    }

    /// Issue 17: a private key block is one finding, and its base64 lines are
    /// nobody else's (a 40-character run of them is not an AWS secret).
    #[test]
    fn a_private_key_block_is_one_finding_and_its_body_matches_nothing_else() {
        let mut rng = rand::thread_rng();
        let key = ssh_key::PrivateKey::random(&mut rng, ssh_key::Algorithm::Ed25519).unwrap();
        let pem = key.to_openssh(ssh_key::LineEnding::LF).unwrap().to_string();
        let body40: String = pem.lines().nth(1).unwrap().chars().take(40).collect();
        let text = format!("{pem}\n{body40}\nAKIAIOSFODNN7EXAMPLE\n");
        let found = classify(&text);
        let k = kinds(&found);
        assert_eq!(
            k.iter().filter(|x| x.starts_with("private-key")).count(),
            1,
            "{k:?}"
        );
        assert!(k.contains(&"private-key:openssh".to_owned()), "{k:?}");
        // The 40 characters alone on their line still count (outside the block).
        assert!(k.iter().any(|x| x.starts_with("aws:AKIA")), "{k:?}");
        assert!(
            found.iter().all(|f| f.line() != 2),
            "nothing inside the block"
        );
    }

    #[test]
    fn free_text_keeps_only_fingerprints_of_credentials() {
        let tok = make_classic_token("ghp_", "free-text-canary");
        let secret = "Zk3pQ9vLm2Xw8Rt5Yb7Nc4Hd6Jf1Gs0Ae9Uo3Iy2";
        let fine = format!("github_pat_{}_{}", "A".repeat(22), "b".repeat(59));
        for typed in [
            tok.clone(),
            format!("leaked {tok} in #ops"),
            format!("key AKIAQX3DJRZN6B4TYW2E secret={secret}"),
            format!("{fine}!"),
            // A wrong checksum or a cut-off token is still not stored.
            format!("{}X", &tok[..tok.len() - 1]),
            "ghp_abcdefgh1234".into(),
        ] {
            let r = redact(&typed).unwrap();
            assert!(r.contains("[redacted sha256:"), "{r}");
            for needle in [&tok[4..20], &secret[..20], &fine[11..30], "abcdefgh1234"] {
                assert!(!r.contains(needle), "{typed} -> {r}");
            }
        }
        // Key ids are not secret; ordinary text is left alone.
        assert!(redact("key AKIAQX3DJRZN6B4TYW2E was rotated").is_none());
        assert!(redact("leaked in the deploy log, rotating now").is_none());
        assert!(redact("commit 0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d").is_none());
    }

    #[test]
    fn valid_classic_tokens_of_every_prefix_are_recognised() {
        for p in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
            let t = make_classic_token(p, "seed");
            assert!(classic_checksum_ok(&t));
            let f = classify(&format!("token = \"{t}\"\n"));
            assert_eq!(f.len(), 1, "{p}");
            assert!(matches!(&f[0], Found::GithubToken { secret, .. } if secret.expose() == t));
        }
    }

    #[test]
    fn wrong_checksum_is_invalid_and_never_echoed() {
        let t = make_classic_token("ghp_", "x");
        let last = t.chars().last().unwrap();
        let bad = format!(
            "{}{}",
            &t[..t.len() - 1],
            if last == 'A' { 'B' } else { 'A' }
        );
        let f = classify(&bad);
        assert_eq!(kinds(&f), vec!["invalid:github token"]);
        let Found::Invalid { reason, .. } = &f[0] else {
            panic!()
        };
        assert!(!reason.contains(&bad[4..]));
        assert!(!format!("{f:?}").contains(&bad[4..]));
    }

    #[test]
    fn truncated_token_is_reported_as_truncated() {
        let t = make_classic_token("ghp_", "y");
        let f = classify(&t[..20]);
        assert_eq!(kinds(&f), vec!["invalid:github token"]);
        let Found::Invalid { reason, .. } = &f[0] else {
            panic!()
        };
        assert!(reason.contains("16 characters instead of 36"), "{reason}");
    }

    #[test]
    fn token_inside_longer_text_is_found_but_not_inside_an_identifier() {
        let t = make_classic_token("gho_", "z");
        let f = classify(&format!("curl -H 'Authorization: token {t}' https://x"));
        assert_eq!(kinds(&f), vec!["gh:Oauth"]);
        assert!(classify(&format!("my{t}")).is_empty());
        assert!(classify(&format!("{t}_suffix")).is_empty());
    }

    fn stateless(app: u64, payload: &str) -> String {
        use base64::Engine as _;
        let b = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "ghs_{app}_{}.{}.{}",
            b(r#"{"alg":"RS256","typ":"JWT"}"#),
            b(payload),
            "Sig-_nature0".repeat(29)
        )
    }

    // issue 17: GitHub's 2026 stateless installation tokens were reported as
    // "truncated or not a token".
    #[test]
    fn stateless_installation_token_is_recognised_whole() {
        let t = stateless(123456, r#"{"exp":1777777777,"installation_id":9}"#);
        assert!(t.len() > 400, "{}", t.len());
        let f = classify(&format!("GITHUB_TOKEN={t}\n"));
        assert_eq!(kinds(&f), vec!["gh:Installation"]);
        let Found::GithubToken { secret, .. } = &f[0] else {
            panic!()
        };
        assert_eq!(secret.expose(), t);
        // Cut short inside the payload: damaged, named by fingerprint only.
        let cut = &t[..t.len() - 380];
        let f = classify(cut);
        assert_eq!(kinds(&f), vec!["invalid:github installation token"]);
        assert!(!format!("{f:?}").contains(&cut[10..]));
        // The classic 40-character form keeps its checksum check.
        let classic = make_classic_token("ghs_", "s");
        assert_eq!(kinds(&classify(&classic)), vec!["gh:Installation"]);
        let bad = format!("{}0", &classic[..classic.len() - 1]);
        if bad != classic {
            assert_eq!(kinds(&classify(&bad)), vec!["invalid:github token"]);
        }
    }

    #[test]
    fn fine_grained_pat_by_shape() {
        let tok = format!("github_pat_{}_{}", "A1".repeat(11), "b2c".repeat(19) + "dd");
        let f = classify(&format!("x {tok} y"));
        assert_eq!(kinds(&f), vec!["gh:FineGrainedPat"]);
        let f = classify("github_pat_tooshort_abc");
        assert_eq!(kinds(&f), vec!["invalid:github fine-grained token"]);
    }

    #[test]
    fn aws_key_id_and_secret_are_paired() {
        let text = "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";
        let f = classify(text);
        assert_eq!(kinds(&f), vec!["aws:AKIA:long:true"]);
        let Found::AwsKey { secret, .. } = &f[0] else {
            panic!()
        };
        assert_eq!(
            secret.as_ref().unwrap().expose(),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        );
    }

    #[test]
    fn two_pairs_pair_by_nearness() {
        let text = "A=AKIAAAAAAAAAAAAAAAAA S=aaaaaaaaaaBBBBBBBBBB1111111111cccccccccc\nB=ASIABBBBBBBBBBBBBBBB S=dddddddddd2222222222EEEEEEEEEEffffffffff\n";
        let f = classify(text);
        assert_eq!(
            kinds(&f),
            vec!["aws:AKIA:long:true", "aws:ASIA:session:true"]
        );
        let Found::AwsKey { secret, .. } = &f[1] else {
            panic!()
        };
        assert!(secret.as_ref().unwrap().expose().starts_with("dddd"));
    }

    #[test]
    fn look_alikes_are_not_secrets() {
        // git sha-1, a longer base32 word, a lowercase akia, an uuid
        let text = "commit 9fceb02d0ae598e95dc970b74767f19372d61af8\nAKIAIOSFODNN7EXAMPLEXX\nakiaiosfodnn7example\n123e4567-e89b-12d3-a456-426614174000\nghx_abcdefghijklmnopqrstuvwxyz0123456789\n";
        assert!(classify(text).is_empty(), "{:?}", kinds(&classify(text)));
    }

    #[test]
    fn a_paired_secret_on_its_own_line_is_not_reported_as_unrecognised() {
        let text = "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";
        assert_eq!(kinds(&classify_lines(text)), vec!["aws:AKIA:long:true"]);
    }

    #[test]
    fn lone_secret_line_is_unpaired_and_other_lines_unrecognised() {
        let text = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\nhello world\n\n";
        let f = classify_lines(text);
        assert_eq!(kinds(&f), vec!["aws-secret-unpaired", "unrecognised"]);
        assert!(!format!("{f:?}").contains("hello"));
    }
}
