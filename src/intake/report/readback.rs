//! Reports that locate a secret but do not carry it (detect-secrets keeps a
//! SHA-1, a SARIF result may have no `region.snippet`, secretlint JSON without
//! `sourceContent`): the scanned file is read back at the reported line and
//! the classifier takes the credential there, confirmed by the scanner's hash
//! where it gives one.
//!
//! A report is input from whoever wrote it, so the paths in it are hostile:
//! `../outside/hosts.yml`, `/etc/...`, a symlink in the tree pointing out of
//! it, `/dev/zero`. Every path is resolved under the scan root (`--root`,
//! default the current directory) with symlinks followed, and a file that
//! ends up outside the root, is not a regular file, or is larger than
//! [`MAX_SCANNED_FILE_BYTES`] is refused for that finding with the reason,
//! never read. (Between the check and the open, a writer of the tree could
//! swap a path component for a symlink; the file opened is checked again by
//! its canonical path after opening, which closes all but a rename race on
//! a tree the attacker already controls.)

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

use super::{Credential, Finding, NotContainable, Provenance};
use crate::intake::classify::{classify, Found};

/// The largest scanned file read back (a source file, not a disk image).
pub const MAX_SCANNED_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// How a finding's secret was obtained when the report did not carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadBack {
    /// Read back from the scanned file, and its hash is the one the scanner
    /// reported.
    HashConfirmed,
    /// Read back from the scanned file at the reported line; the scanner gave
    /// no usable hash to confirm it with.
    Line,
}

impl ReadBack {
    pub fn label(self) -> &'static str {
        match self {
            ReadBack::HashConfirmed => "read back from the file, hash confirmed",
            ReadBack::Line => "read back from the file at the reported line",
        }
    }
}

/// One finding to read back: where, and how to confirm it.
pub(super) struct Wanted {
    pub prov: Provenance,
    pub line: u64,
    /// Lowercase hex SHA-1 of the secret, when the scanner gave one.
    pub sha1: Option<String>,
    /// The scanner's hash of a GitHub token covers only its prefix
    /// (detect-secrets): without a match, take the line's GitHub tokens.
    pub github_by_line: bool,
    /// What the scanner called it, for reasons: "detect-secrets `AWS Access Key`".
    pub what: String,
}

/// The scan root, resolved once.
pub(super) struct Root {
    given: PathBuf,
    canonical: Result<PathBuf, String>,
}

impl Root {
    pub fn new(given: Option<&Path>) -> Root {
        let given = given
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        let canonical = std::fs::canonicalize(&given).map_err(|e| {
            format!(
                "the scan root `{}` cannot be resolved ({e})",
                given.display()
            )
        });
        Root { given, canonical }
    }

    /// `file` (a path or a `file://` URI from the report) resolved under the
    /// root, or why it may not be read.
    pub fn resolve(&self, file: &str) -> Result<PathBuf, String> {
        let root = self.canonical.as_ref().map_err(Clone::clone)?;
        let path = file_path(file)?;
        let joined = if path.is_absolute() {
            path.clone()
        } else {
            self.given.join(&path)
        };
        let lexical_outside = path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)));
        let canonical = std::fs::canonicalize(&joined).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "`{}` does not exist under the scan root `{}`",
                path.display(),
                self.given.display()
            ),
            _ => format!("`{}` cannot be resolved ({e})", joined.display()),
        })?;
        if !canonical.starts_with(root) {
            let how = if lexical_outside {
                "the path leaves it"
            } else {
                "a symlink leads out of it"
            };
            return Err(format!(
                "`{}` is outside the scan root `{}` ({how}); cordon reads back only files under --root, so it did not read it",
                path.display(),
                self.given.display()
            ));
        }
        Ok(canonical)
    }

    /// Read `file` back under the root: its text, or why not.
    pub fn read(&self, file: &str) -> Result<Zeroizing<String>, String> {
        let path = self.resolve(file)?;
        let mut f = std::fs::File::open(&path)
            .map_err(|e| format!("`{}` cannot be read ({e})", path.display()))?;
        let meta = f
            .metadata()
            .map_err(|e| format!("`{}` cannot be read ({e})", path.display()))?;
        if !meta.is_file() {
            return Err(format!(
                "`{}` is not a regular file; cordon reads back only files",
                path.display()
            ));
        }
        if meta.len() > MAX_SCANNED_FILE_BYTES {
            return Err(format!(
                "`{}` is {} bytes, more than the {} cordon reads back",
                path.display(),
                meta.len(),
                MAX_SCANNED_FILE_BYTES
            ));
        }
        // The path opened must still be the one checked (no symlink swapped in).
        if std::fs::canonicalize(&path).ok().as_deref() != Some(path.as_path()) {
            return Err(format!(
                "`{}` changed while it was being read back; not read",
                path.display()
            ));
        }
        let mut bytes = Zeroizing::new(Vec::new());
        (&mut f)
            .take(MAX_SCANNED_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("`{}` cannot be read ({e})", path.display()))?;
        Ok(Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned()))
    }
}

/// A report's path or `file://` URI as a path. Other URI schemes and NUL
/// bytes are refused.
fn file_path(file: &str) -> Result<PathBuf, String> {
    if file.contains('\0') {
        return Err("the reported path holds a NUL byte".into());
    }
    let rest = match file.strip_prefix("file://") {
        // `file:///abs`, or `file://localhost/abs`.
        Some(r) => {
            let r = r.strip_prefix("localhost").unwrap_or(r);
            if !r.starts_with('/') {
                return Err(format!("`{file}` names a file on another host"));
            }
            percent_decode(r)?
        }
        None => {
            if let Some((scheme, _)) = file.split_once("://") {
                if !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(format!("`{scheme}://` is not a file path"));
                }
            }
            file.to_owned()
        }
    };
    Ok(PathBuf::from(rest))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "the reported URI has a bad percent escape".to_owned())?;
            if hex == 0 {
                return Err("the reported path holds a NUL byte".into());
            }
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the reported URI is not UTF-8".to_owned())
}

pub(super) fn sha1_hex(s: &str) -> String {
    hex::encode(Sha1::digest(s.as_bytes()))
}

/// Lines a classifier finding covers (an AWS pair may span two).
fn lines_of(f: &Found) -> Vec<u64> {
    let mut v = vec![f.line() as u64];
    if let Found::AwsKey {
        secret_line: Some(l),
        ..
    } = f
    {
        v.push(*l as u64);
    }
    v
}

/// The SHA-1s of the texts a classifier finding holds.
fn hashes_of(f: &Found) -> Vec<String> {
    match f {
        Found::GithubToken { secret, .. } => vec![sha1_hex(secret.expose())],
        Found::AwsKey { key_id, secret, .. } => {
            let mut v = vec![sha1_hex(key_id)];
            if let Some(s) = secret {
                v.push(sha1_hex(s.expose()));
            }
            v
        }
        Found::AwsSecretUnpaired { secret, .. } | Found::PrivateKey { secret, .. } => {
            vec![sha1_hex(secret.expose())]
        }
        Found::Invalid { .. } | Found::Unrecognised { .. } => Vec::new(),
    }
}

fn is_github(f: &Found) -> bool {
    matches!(
        f,
        Found::GithubToken { .. }
            | Found::Invalid {
                what: "github token" | "github fine-grained token",
                ..
            }
    )
}

fn not_containable(prov: Provenance, reason: String) -> Finding {
    Finding {
        provenance: prov,
        item: Err(NotContainable {
            reason,
            fingerprint: None,
        }),
    }
}

/// Read `file` back under `root` and resolve every wanted finding in it.
/// `missing` says why the secret is not in the report ("detect-secrets stores
/// only a hash of the secret"). A credential reported by several entries (a
/// key id and its secret, two rules) is one finding, with the first entry's
/// provenance.
pub(super) fn file_findings(
    root: &Root,
    file: &str,
    wanted: Vec<Wanted>,
    missing: &str,
) -> Vec<Finding> {
    let content = match root.read(file) {
        Ok(c) => c,
        Err(why) => {
            return wanted
                .into_iter()
                .map(|w| {
                    not_containable(
                        w.prov,
                        format!(
                            "{missing}, and the file cannot be read to recover it: {why}; run cordon where the scan ran, or point --root at that directory"
                        ),
                    )
                })
                .collect();
        }
    };
    let mut found: Vec<Option<Found>> = classify(&content).into_iter().map(Some).collect();
    let spans: Vec<Vec<u64>> = found
        .iter()
        .map(|f| f.as_ref().map(lines_of).unwrap_or_default())
        .collect();
    // Index of the classifier finding each entry resolved to (for merging).
    let mut taken: Vec<(usize, Provenance)> = Vec::new();
    let mut out = Vec::new();
    for w in wanted {
        let on_line: Vec<usize> = (0..found.len())
            .filter(|&i| found[i].is_some() && spans[i].contains(&w.line))
            .collect();
        let by_hash = w.sha1.as_ref().and_then(|h| {
            on_line
                .iter()
                .copied()
                .find(|&i| found[i].as_ref().is_some_and(|f| hashes_of(f).contains(h)))
        });
        let (chosen, how): (Vec<usize>, ReadBack) = match (by_hash, &w.sha1) {
            (Some(i), _) => (vec![i], ReadBack::HashConfirmed),
            (None, Some(_)) if w.github_by_line => (
                on_line
                    .iter()
                    .copied()
                    .filter(|&i| found[i].as_ref().is_some_and(is_github))
                    .collect(),
                ReadBack::Line,
            ),
            (None, Some(_)) => (Vec::new(), ReadBack::HashConfirmed),
            // No hash to confirm with: what the classifier finds on the line.
            (None, None) => (
                on_line
                    .iter()
                    .copied()
                    .filter(|&i| !matches!(found[i], Some(Found::Unrecognised { .. })))
                    .collect(),
                ReadBack::Line,
            ),
        };
        if chosen.is_empty() {
            let line = w.line;
            let shown = file;
            let reason = if on_line.is_empty() || w.sha1.is_none() {
                format!(
                    "{}: cordon finds no credential it handles at line {line} of `{shown}` (a secret type no connector handles, or the file changed since the scan)",
                    w.what
                )
            } else {
                format!(
                    "{}: no credential at line {line} of `{shown}` has the reported hash (the file changed since the scan?)",
                    w.what
                )
            };
            out.push(not_containable(w.prov, reason));
            continue;
        }
        for i in chosen {
            if taken.iter().any(|(t, _)| *t == i) {
                // Another entry (the key id, or another rule) already holds it.
                continue;
            }
            let mut prov = w.prov.clone();
            prov.read_back = Some(how);
            taken.push((i, prov));
        }
    }
    taken.sort_by_key(|(i, _)| *i);
    for (i, provenance) in taken {
        let Some(f) = found.get_mut(i).and_then(Option::take) else {
            continue;
        };
        if let Some(item) = Credential::from_found(f) {
            out.push(Finding { provenance, item });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn sha1_matches_the_tools_hash() {
        // The value detect-secrets 1.5.0 stored for a GitHub token (the prefix only).
        assert_eq!(sha1_hex("ghp"), "e175c6f5f2a92e8623bd9a4820edb4e8c1b0fd10");
    }

    #[test]
    fn file_uris_and_other_schemes() {
        assert_eq!(
            file_path("file:///tmp/a%20b.env").unwrap(),
            PathBuf::from("/tmp/a b.env")
        );
        assert_eq!(
            file_path("file://localhost/x").unwrap(),
            PathBuf::from("/x")
        );
        assert!(file_path("file://evil.example/x").is_err());
        assert!(file_path("https://example.com/x").is_err());
        assert!(file_path("file:///a%00b").is_err());
        assert!(file_path("a\0b").is_err());
        assert_eq!(file_path("src/a.env").unwrap(), PathBuf::from("src/a.env"));
    }

    #[test]
    fn paths_leaving_the_root_are_refused_symlinks_included() {
        let base = std::env::temp_dir().join(format!("cordon-rb-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::write(base.join("outside/hosts.yml"), "x").unwrap();
        std::fs::write(root.join("sub/in.env"), "y").unwrap();
        std::os::unix::fs::symlink(base.join("outside/hosts.yml"), root.join("link.yml")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/in.env"), root.join("inner.env")).unwrap();
        let r = Root::new(Some(&root));
        assert!(r.read("sub/in.env").is_ok());
        assert!(r.read("./sub/../sub/in.env").is_ok());
        // A symlink that stays inside is followed.
        assert!(r.read("inner.env").is_ok());
        let abs_inside = root.join("sub/in.env");
        assert!(r.read(abs_inside.to_str().unwrap()).is_ok());
        for bad in [
            "../outside/hosts.yml",
            "sub/../../outside/hosts.yml",
            "/etc/hostname",
        ] {
            let e = r.read(bad).unwrap_err();
            assert!(e.contains("outside the scan root"), "{bad}: {e}");
        }
        let e = r.read("link.yml").unwrap_err();
        assert!(e.contains("a symlink leads out of it"), "{e}");
        // Not a regular file.
        let e = r.read("sub").unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
