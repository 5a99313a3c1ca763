//! Signed checkpoints of the audit log, in the C2SP `tlog-checkpoint` format.
//!
//! The hash chain proves that no record was changed *relative to the records
//! around it*, but someone with write access to the state directory can cut
//! the log short, or edit a record and recompute every hash after it: the
//! rewritten chain verifies. A checkpoint fixes the log's content at a point
//! in time, signed with a key the log cannot produce on its own; once it is
//! exported (to a ticket, a chat, another machine), a rewrite of anything it
//! covers shows, as CloudTrail's digest files and transparency logs do.
//!
//! The checkpoint's root hash is the RFC 6962 Merkle tree hash over the
//! log's records, each record's canonical line (without its newline) being a
//! leaf. A checkpoint of size N therefore commits to the first N records
//! byte for byte, and a longer log that starts with them still matches it
//! (an append-only log grows; a checkpoint is a prefix).
//!
//! The text format (C2SP tlog-checkpoint over C2SP signed-note):
//!
//! ```text
//! cordon.audit/4f1c2a9e0b7d3c55        <- origin (the key's name)
//! 1042                                 <- tree size: records covered
//! 8c3Kq...base64 root hash...=         <- RFC 6962 root
//!                                      <- blank line
//! — cordon.audit/4f1c2a9e0b7d3c55 AbCd...base64(key id || Ed25519 signature)
//! ```
//!
//! The key id is the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public
//! key), 0x01 naming Ed25519; the exportable verifier key is
//! `name+hex(key id)+base64(0x01 || public key)`, the format the Go
//! `golang.org/x/mod/sumdb/note` package reads. The private key lives in the
//! state directory (`audit.key`, 0600), is generated on first use and is
//! never printed. Whoever can read that file can sign new checkpoints, so the
//! checkpoint that proves anything is one exported before the tampering,
//! checked with a verifier key exported before it (`--key`).

use std::fs::File;
use std::io::Write;
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use cordon_connector::Secret;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::verify::{verify_reader, VerifyReport, VerifyStatus};
use crate::state::{io_err, write_atomic, Home, StateError};

/// File names in the state directory.
pub const KEY_FILE: &str = "audit.key";
pub const CHECKPOINT_FILE: &str = "audit.checkpoint";

/// C2SP signed-note signature type for Ed25519.
const ALG_ED25519: u8 = 0x01;
/// A note with more signature lines than this is refused (as the Go
/// implementation does): nobody co-signs a local audit log 100 times.
const MAX_SIGNATURES: usize = 100;
/// A checkpoint is a few hundred bytes; refuse to read a huge file.
const MAX_NOTE_BYTES: u64 = 1 << 20;
const EM_DASH_PREFIX: &str = "\u{2014} ";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("checkpoint `{source_name}` is malformed: {why}")]
    Malformed { source_name: String, why: String },
    #[error("checkpoint `{source_name}` is not signed by the verifier key `{key}`: {why}")]
    BadSignature {
        source_name: String,
        key: String,
        why: String,
    },
    #[error("verifier key `{text}` is malformed: {why} (expected `name+keyid+base64`, as printed by `cordon log key`)")]
    BadVerifier { text: String, why: String },
    #[error("checkpoint signing key `{path}` is malformed: {why}; move it aside to start a new key (old checkpoints then need the old verifier key)")]
    BadKey { path: PathBuf, why: String },
    #[error("cannot sign a checkpoint: the audit log is tampered at seq {seq} ({reason}); run `cordon log verify`")]
    Tampered { seq: u64, reason: String },
}

fn malformed(source_name: &str, why: impl Into<String>) -> CheckpointError {
    CheckpointError::Malformed {
        source_name: source_name.to_owned(),
        why: why.into(),
    }
}

// ---------------------------------------------------------------------------
// RFC 6962 Merkle tree hash, streamed.

/// Leaf hash: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// Interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The RFC 6962 tree hash of a growing list of leaves in O(log n) memory:
/// the roots of the perfect subtrees that make up the tree so far (one per
/// set bit of the size, largest first), merged as leaves arrive.
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    size: u64,
    /// (height, hash), heights strictly decreasing.
    peaks: Vec<(u32, [u8; 32])>,
}

impl MerkleTree {
    pub fn new() -> MerkleTree {
        MerkleTree::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, data: &[u8]) {
        self.push_hash(leaf_hash(data));
    }

    pub fn push_hash(&mut self, leaf: [u8; 32]) {
        let mut node = (0u32, leaf);
        while let Some(&(h, left)) = self.peaks.last() {
            if h != node.0 {
                break;
            }
            self.peaks.pop();
            node = (h + 1, node_hash(&left, &node.1));
        }
        self.peaks.push(node);
        self.size += 1;
    }

    /// MTH(D[n]): RFC 6962 splits at the largest power of two below n, which
    /// is exactly folding the peaks from the smallest (rightmost) leftwards.
    pub fn root(&self) -> [u8; 32] {
        let mut it = self.peaks.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return Sha256::digest([]).into();
        };
        for (_, left) in it {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// Feeds complete lines of a byte stream to a [`MerkleTree`] without
/// holding a line in memory, and remembers the root at one chosen size.
struct LineLeaves {
    tree: MerkleTree,
    current: Sha256,
    snapshot_at: Option<u64>,
    snapshot: Option<[u8; 32]>,
}

impl LineLeaves {
    fn new(snapshot_at: Option<u64>) -> LineLeaves {
        let mut l = LineLeaves {
            tree: MerkleTree::new(),
            current: Sha256::new(),
            snapshot_at,
            snapshot: None,
        };
        l.current.update([0u8]);
        if snapshot_at == Some(0) {
            l.snapshot = Some(l.tree.root());
        }
        l
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(i) = bytes.iter().position(|b| *b == b'\n') {
            self.current.update(&bytes[..i]);
            let done = std::mem::replace(&mut self.current, Sha256::new());
            self.current.update([0u8]);
            self.tree.push_hash(done.finalize().into());
            if self.snapshot_at == Some(self.tree.size()) {
                self.snapshot = Some(self.tree.root());
            }
            bytes = &bytes[i + 1..];
        }
        self.current.update(bytes);
    }
}

/// A reader that shows every byte it passes on to a [`LineLeaves`].
struct Tee<'a, R> {
    inner: R,
    leaves: &'a mut LineLeaves,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.leaves.feed(&buf[..n]);
        Ok(n)
    }
}

/// One pass over a log: the chain verification and the Merkle tree of its
/// complete lines.
#[derive(Debug, Clone)]
pub struct LogScan {
    pub report: VerifyReport,
    /// Complete lines read (every record, when the chain is intact).
    pub size: u64,
    pub root: [u8; 32],
    /// The root over the first `snapshot_at` lines, if the log has that many.
    pub prefix_root: Option<[u8; 32]>,
}

/// Verify the chain and hash the tree in one streaming pass (bounded memory
/// for any number of records). `snapshot_at`: also return the root of the
/// tree of that size (a checkpoint's size).
pub fn scan_reader<R: Read>(r: R, snapshot_at: Option<u64>) -> io::Result<LogScan> {
    let mut leaves = LineLeaves::new(snapshot_at);
    let report = verify_reader(Tee {
        inner: r,
        leaves: &mut leaves,
    })?;
    Ok(LogScan {
        report,
        size: leaves.tree.size(),
        root: leaves.tree.root(),
        prefix_root: leaves.snapshot,
    })
}

pub fn scan_file(path: &Path, snapshot_at: Option<u64>) -> io::Result<LogScan> {
    match File::open(path) {
        Ok(f) => scan_reader(f, snapshot_at),
        Err(e) if e.kind() == io::ErrorKind::NotFound => scan_reader(&b""[..], snapshot_at),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------
// Checkpoint body.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: [u8; 32],
    /// Optional extension lines (C2SP allows them; cordon writes none).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: every line ends with a newline.
    pub fn body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    pub fn root_b64(&self) -> String {
        B64.encode(self.root)
    }

    /// Parse a checkpoint body (the note text, ending in a newline).
    pub fn parse(text: &str, source_name: &str) -> Result<Checkpoint, CheckpointError> {
        let Some(text) = text.strip_suffix('\n') else {
            return Err(malformed(
                source_name,
                "the text does not end with a newline",
            ));
        };
        let mut lines = text.split('\n');
        let origin = lines.next().unwrap_or("");
        if origin.is_empty() {
            return Err(malformed(source_name, "line 1 (origin) is empty"));
        }
        let size_s = lines
            .next()
            .ok_or_else(|| malformed(source_name, "line 2 (tree size) is missing"))?;
        let canonical_number = !size_s.is_empty()
            && size_s.bytes().all(|b| b.is_ascii_digit())
            && (size_s == "0" || !size_s.starts_with('0'));
        let size = size_s
            .parse::<u64>()
            .ok()
            .filter(|_| canonical_number)
            .ok_or_else(|| {
                malformed(
                    source_name,
                    format!("line 2 (tree size) `{size_s}` is not a decimal number without leading zeros"),
                )
            })?;
        let root_s = lines
            .next()
            .ok_or_else(|| malformed(source_name, "line 3 (root hash) is missing"))?;
        let root: [u8; 32] = B64
            .decode(root_s)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
            .ok_or_else(|| {
                malformed(
                    source_name,
                    format!("line 3 (root hash) `{root_s}` is not a base64 SHA-256 hash"),
                )
            })?;
        let mut extensions = Vec::new();
        for (i, l) in lines.enumerate() {
            if l.is_empty() {
                return Err(malformed(
                    source_name,
                    format!("line {} (an extension line) is empty", i + 4),
                ));
            }
            extensions.push(l.to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

// ---------------------------------------------------------------------------
// Keys.

/// C2SP signed-note key id: SHA-256(name || "\n" || 0x01 || key)[..4].
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// Names are non-empty, without spaces (of any kind) or `+`.
fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// The public half: checks checkpoint signatures. Safe to print and share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    pub name: String,
    pub id: [u8; 4],
    pub key: VerifyingKey,
}

impl Verifier {
    pub fn new(name: &str, key: VerifyingKey) -> Verifier {
        Verifier {
            name: name.to_owned(),
            id: key_id(name, &key),
            key,
        }
    }

    /// `name+hex(key id)+base64(0x01 || public key)`.
    pub fn encode(&self) -> String {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.id), B64.encode(k))
    }

    pub fn parse(text: &str) -> Result<Verifier, CheckpointError> {
        let text = text.trim();
        let bad = |why: &str| CheckpointError::BadVerifier {
            text: text.chars().take(120).collect(),
            why: why.to_owned(),
        };
        if text.starts_with("PRIVATE+KEY+") {
            return Err(bad(
                "this is a private signing key, not a verifier key; never share it",
            ));
        }
        // Split from the left: the name and id hold no `+`, base64 may.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("it does not have three `+`-separated parts"));
        };
        if !valid_key_name(name) {
            return Err(bad("the name is empty or contains spaces or `+`"));
        }
        let id: [u8; 4] = (id_hex.len() == 8)
            .then(|| hex::decode(id_hex).ok())
            .flatten()
            .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
            .ok_or_else(|| bad("the key id is not 8 hex digits"))?;
        let raw = B64
            .decode(key_b64)
            .map_err(|_| bad("the key is not base64"))?;
        let [alg, rest @ ..] = raw.as_slice() else {
            return Err(bad("the key is empty"));
        };
        if *alg != ALG_ED25519 {
            return Err(bad("the key is not an Ed25519 key (type byte 0x01)"));
        }
        let bytes: [u8; 32] =
            <[u8; 32]>::try_from(rest).map_err(|_| bad("an Ed25519 key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| bad("the key is not a valid Ed25519 point"))?;
        let v = Verifier::new(name, key);
        if v.id != id {
            return Err(bad("the key id does not match the name and key"));
        }
        Ok(v)
    }
}

/// The private half, loaded from (or created in) the state directory.
pub struct CheckpointKey {
    signing: SigningKey,
    name: String,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl CheckpointKey {
    /// A fresh key; its name (and so every checkpoint's origin) is derived
    /// from the public key, so two homes never share an origin.
    pub fn generate() -> CheckpointKey {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        let signing = SigningKey::from_bytes(&seed);
        seed.zeroize();
        let digest = Sha256::digest(signing.verifying_key().as_bytes());
        let name = format!("cordon.audit/{}", hex::encode(&digest[..8]));
        CheckpointKey { signing, name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn verifier(&self) -> Verifier {
        Verifier::new(&self.name, self.signing.verifying_key())
    }

    /// `PRIVATE+KEY+name+hex(key id)+base64(0x01 || seed)`, as a Secret.
    fn encode(&self) -> Secret {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(self.signing.as_bytes());
        let s = format!(
            "PRIVATE+KEY+{}+{}+{}\n",
            self.name,
            hex::encode(self.verifier().id),
            B64.encode(&k)
        );
        k.zeroize();
        Secret::new(s)
    }

    /// Parse `PRIVATE+KEY+...` text (the file's content).
    pub(crate) fn decode(text: &Secret, path: &Path) -> Result<CheckpointKey, CheckpointError> {
        let bad = |why: &str| CheckpointError::BadKey {
            path: path.to_owned(),
            why: why.to_owned(),
        };
        let body = text
            .expose()
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad("it does not start with `PRIVATE+KEY+`"))?;
        let mut parts = body.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("it does not have name, key id and key"));
        };
        if !valid_key_name(name) {
            return Err(bad("the key name is empty or contains spaces or `+`"));
        }
        let mut raw = B64
            .decode(key_b64)
            .map_err(|_| bad("the key is not base64"))?;
        let res = match raw.as_slice() {
            [ALG_ED25519, seed @ ..] if seed.len() == 32 => {
                let mut s = [0u8; 32];
                s.copy_from_slice(seed);
                let signing = SigningKey::from_bytes(&s);
                s.zeroize();
                Ok(CheckpointKey {
                    signing,
                    name: name.to_owned(),
                })
            }
            _ => Err(bad(
                "the key is not a 32-byte Ed25519 seed with type byte 0x01",
            )),
        };
        raw.zeroize();
        let key = res?;
        if hex::encode(key.verifier().id) != id_hex {
            return Err(bad("the key id does not match the key"));
        }
        Ok(key)
    }

    /// Load `audit.key` from the home, creating it (0600) on first use.
    /// Refuses a key file others can read or write, as OpenSSH does.
    pub fn load_or_create(home: &Home) -> Result<CheckpointKey, CheckpointError> {
        let path = home.root().join(KEY_FILE);
        match Self::load(home)? {
            Some(k) => Ok(k),
            None => {
                let key = CheckpointKey::generate();
                let text = key.encode();
                put_new_private(&path, text.expose().as_bytes())?;
                // Another process may have won the race: use what is there.
                Self::load(home)?.ok_or_else(|| CheckpointError::BadKey {
                    path,
                    why: "it vanished right after it was created".into(),
                })
            }
        }
    }

    /// Load `audit.key` if there is one.
    pub fn load(home: &Home) -> Result<Option<CheckpointKey>, CheckpointError> {
        let path = home.root().join(KEY_FILE);
        let md = match std::fs::symlink_metadata(&path) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read metadata of", &path)(e).into()),
        };
        home.check_safe(&path)?;
        let mode = md.permissions().mode() & 0o777;
        if mode & 0o077 != 0 || !md.is_file() {
            return Err(StateError::Unsafe {
                path: path.clone(),
                what: format!("a private key readable by others (mode {mode:03o})"),
                fix: format!("run `chmod 600 {}` and try again", path.display()),
            }
            .into());
        }
        let mut bytes = std::fs::read(&path).map_err(io_err("read", &path))?;
        let text = match String::from_utf8(std::mem::take(&mut bytes)) {
            Ok(s) => Secret::new(s),
            Err(e) => {
                let mut b = e.into_bytes();
                b.zeroize();
                return Err(CheckpointError::BadKey {
                    path,
                    why: "it is not text".into(),
                });
            }
        };
        Self::decode(&text, &path).map(Some)
    }

    /// Sign a checkpoint: the whole note text, ready to write out.
    pub fn sign(&self, cp: &Checkpoint) -> String {
        self.sign_note(&cp.body())
    }

    /// Sign a note text (lines ending in newlines) as C2SP signed-note.
    pub fn sign_note(&self, body: &str) -> String {
        let sig: Signature = self.signing.sign(body.as_bytes());
        let mut blob = self.verifier().id.to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!(
            "{body}\n{EM_DASH_PREFIX}{} {}\n",
            self.name,
            B64.encode(blob)
        )
    }
}

/// Create `path` (0600) with `bytes` unless it exists, never leaving a
/// partial file there: write a temp file, fsync, then hard-link it into
/// place (which, unlike rename, fails if another process got there first).
fn put_new_private(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{KEY_FILE}.tmp{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", path)(e)),
        }
        crate::state::sync_dir(dir)
    })();
    let _ = std::fs::remove_file(&tmp);
    res
}

// ---------------------------------------------------------------------------
// Opening a signed note.

/// Check a signed checkpoint against a verifier key and parse it. Follows
/// C2SP signed-note: signatures by other keys (witness cosignatures) are
/// ignored, but one by this key must be there and must verify; the origin
/// must be the key's name (a checkpoint of another log is not this log's).
pub fn open(
    note: &[u8],
    verifier: &Verifier,
    source_name: &str,
) -> Result<Checkpoint, CheckpointError> {
    let body = open_note(note, verifier, source_name)?;
    let cp = Checkpoint::parse(body, source_name)?;
    if cp.origin != verifier.name {
        return Err(CheckpointError::BadSignature {
            source_name: source_name.to_owned(),
            key: verifier.encode(),
            why: format!(
                "its origin `{}` is not the key's log `{}`",
                cp.origin, verifier.name
            ),
        });
    }
    Ok(cp)
}

/// Check a C2SP signed note and return its text (up to and including the
/// newline before the blank line).
pub fn open_note<'n>(
    note: &'n [u8],
    verifier: &Verifier,
    source_name: &str,
) -> Result<&'n str, CheckpointError> {
    let text =
        std::str::from_utf8(note).map_err(|_| malformed(source_name, "it is not UTF-8 text"))?;
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(malformed(source_name, "it contains control characters"));
    }
    let split = text
        .rfind("\n\n")
        .ok_or_else(|| malformed(source_name, "there is no blank line before the signatures"))?;
    let (body, sigs) = (&text[..split + 1], &text[split + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(malformed(
            source_name,
            "the signature lines do not end with a newline",
        ));
    }
    let bad_sig = |why: String| CheckpointError::BadSignature {
        source_name: source_name.to_owned(),
        key: verifier.encode(),
        why,
    };
    let mut seen: Vec<(&str, [u8; 4])> = Vec::new();
    let mut verified = false;
    let mut others = Vec::new();
    for (i, line) in sigs[..sigs.len() - 1].split('\n').enumerate() {
        if i >= MAX_SIGNATURES {
            return Err(malformed(
                source_name,
                format!("more than {MAX_SIGNATURES} signature lines"),
            ));
        }
        let rest = line.strip_prefix(EM_DASH_PREFIX).ok_or_else(|| {
            malformed(
                source_name,
                format!("signature line {} does not start with `— `", i + 1),
            )
        })?;
        let (name, b64) = rest.split_once(' ').ok_or_else(|| {
            malformed(
                source_name,
                format!("signature line {} has no signature", i + 1),
            )
        })?;
        if !valid_key_name(name) || b64.contains(' ') {
            return Err(malformed(
                source_name,
                format!("signature line {} is not `— name signature`", i + 1),
            ));
        }
        let blob = B64.decode(b64).map_err(|_| {
            malformed(
                source_name,
                format!("signature line {} is not base64", i + 1),
            )
        })?;
        if blob.len() < 5 {
            return Err(malformed(
                source_name,
                format!("signature line {} is too short", i + 1),
            ));
        }
        let id = [blob[0], blob[1], blob[2], blob[3]];
        if seen.contains(&(name, id)) {
            return Err(malformed(
                source_name,
                format!("two signatures by the same key (`{name}`)"),
            ));
        }
        seen.push((name, id));
        if name != verifier.name || id != verifier.id {
            others.push(name.to_owned());
            continue;
        }
        let sig = Signature::from_slice(&blob[4..])
            .map_err(|_| bad_sig("the signature is not 64 bytes".into()))?;
        verifier
            .key
            .verify_strict(body.as_bytes(), &sig)
            .map_err(|_| bad_sig("the signature does not verify: the checkpoint was altered, or signed by another key".into()))?;
        verified = true;
    }
    if !verified {
        return Err(bad_sig(if others.is_empty() {
            "it has no signature lines".into()
        } else {
            format!("it is signed only by `{}`", others.join("`, `"))
        }));
    }
    Ok(body)
}

/// Read a checkpoint file (bounded) and open it.
pub fn open_file(path: &Path, verifier: &Verifier) -> Result<Checkpoint, CheckpointError> {
    let f = File::open(path).map_err(io_err("read checkpoint", path))?;
    let mut buf = Vec::new();
    f.take(MAX_NOTE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(io_err("read checkpoint", path))?;
    let name = path.display().to_string();
    if buf.len() as u64 > MAX_NOTE_BYTES {
        return Err(malformed(
            &name,
            "it is larger than 1 MiB; a checkpoint is a few lines",
        ));
    }
    open(&buf, verifier, &name)
}

// ---------------------------------------------------------------------------
// Checkpoints of the log.

/// Sign a checkpoint over the log as it is now. Refuses to sign a tampered
/// log (that would bless the tampering); a torn tail is not a record, so the
/// checkpoint covers the complete records before it.
pub fn sign_log(
    log: &Path,
    key: &CheckpointKey,
) -> Result<(Checkpoint, String, LogScan), CheckpointError> {
    let scan = scan_file(log, None).map_err(io_err("read audit log", log))?;
    sign_scan(scan, key)
}

/// Sign a checkpoint over a log read back whole (the shared S3 state's).
pub fn sign_bytes(
    log: &[u8],
    key: &CheckpointKey,
) -> Result<(Checkpoint, String, LogScan), CheckpointError> {
    let scan = scan_reader(log, None).map_err(|e| {
        CheckpointError::State(crate::state::StateError::Io {
            op: "read audit log",
            path: PathBuf::from("(shared state)"),
            source: e,
        })
    })?;
    sign_scan(scan, key)
}

fn sign_scan(
    scan: LogScan,
    key: &CheckpointKey,
) -> Result<(Checkpoint, String, LogScan), CheckpointError> {
    if let VerifyStatus::Tampered { seq, reason } = &scan.report.status {
        return Err(CheckpointError::Tampered {
            seq: *seq,
            reason: reason.clone(),
        });
    }
    let cp = Checkpoint {
        origin: key.name().to_owned(),
        size: scan.size,
        root: scan.root,
        extensions: vec![],
    };
    let note = key.sign(&cp);
    Ok((cp, note, scan))
}

/// Sign a checkpoint of the home's log and keep it as `audit.checkpoint`
/// (the latest), creating the key on first use. Called after every plan run.
pub fn write_latest(home: &Home) -> Result<(Checkpoint, String), CheckpointError> {
    let key = CheckpointKey::load_or_create(home)?;
    let (cp, note, _) = sign_log(&home.audit_path(), &key)?;
    write_atomic(&home.root().join(CHECKPOINT_FILE), note.as_bytes())?;
    Ok((cp, note))
}

/// Where the shared checkpoint came from, for messages.
pub fn shared_source(remote: &dyn super::RemoteLog) -> String {
    format!("{}checkpoint", remote.describe())
}

/// Open the checkpoint kept beside a shared log. It is checked with the
/// verifier key named by its origin: this machine's own key if it signed
/// it, else the key the signing machine published beside the log (which
/// whoever can write the bucket could also have published: as with the
/// local `audit.checkpoint`, the checkpoint that proves most is one
/// exported elsewhere and checked with `log verify --checkpoint --key`).
pub fn open_shared(
    remote: &dyn super::RemoteLog,
    home: &Home,
    note: &[u8],
) -> Result<(Checkpoint, Verifier), CheckpointError> {
    let source = shared_source(remote);
    let origin = std::str::from_utf8(note)
        .ok()
        .and_then(|t| t.lines().next())
        .filter(|o| valid_key_name(o))
        .ok_or_else(|| malformed(&source, "line 1 (origin) is not a key name"))?
        .to_owned();
    let own = CheckpointKey::load(home)?
        .map(|k| k.verifier())
        .filter(|v| v.name == origin);
    let verifier = match own {
        Some(v) => v,
        None => {
            let text = remote
                .read_verifier(&origin)
                .map_err(audit_to_checkpoint)?
                .ok_or_else(|| CheckpointError::BadSignature {
                    source_name: source.clone(),
                    key: origin.clone(),
                    why: "no verifier key of that name was published beside the log".into(),
                })?;
            let v = Verifier::parse(&text)?;
            if v.name != origin {
                return Err(malformed(
                    &source,
                    "the published verifier key has another name",
                ));
            }
            v
        }
    };
    let cp = open(note, &verifier, &source)?;
    Ok((cp, verifier))
}

fn audit_to_checkpoint(e: super::AuditError) -> CheckpointError {
    match e {
        super::AuditError::State(s) => CheckpointError::State(s),
        super::AuditError::Corrupt { seq, why, .. } => {
            CheckpointError::Tampered { seq, reason: why }
        }
        super::AuditError::Encode(m) => CheckpointError::State(StateError::Config {
            what: m,
            fix: "run the command again".into(),
        }),
    }
}

/// Sign a checkpoint of a shared log with this machine's key and keep it
/// beside the log, replacing the previous one only if the log still holds
/// every record that one covers (a log cut back below its checkpoint is
/// refused, not blessed), and only the version read (`If-Match`): two
/// machines checkpointing at once never lose the larger checkpoint.
pub fn write_shared(
    log: &super::AuditLog,
    home: &Home,
) -> Result<(Checkpoint, String), CheckpointError> {
    let remote = log.remote_log().ok_or_else(|| {
        CheckpointError::State(StateError::Config {
            what: "not a shared log".into(),
            fix: "use `cordon log checkpoint` on a local state".into(),
        })
    })?;
    let key = CheckpointKey::load_or_create(home)?;
    remote
        .publish_verifier(key.name(), &key.verifier().encode())
        .map_err(audit_to_checkpoint)?;
    for _ in 0..20 {
        let current = remote.read_checkpoint().map_err(audit_to_checkpoint)?;
        let prior = match &current {
            Some((note, _)) => Some(open_shared(remote, home, note)?.0),
            None => None,
        };
        let bytes = log.read_bytes().map_err(audit_to_checkpoint)?;
        let scan = scan_reader(&bytes[..], prior.as_ref().map(|c| c.size))
            .map_err(io_err("read audit log", Path::new(&remote.describe())))?;
        if let Some(p) = &prior {
            if let Some(why) = consistency(&scan, p).describe(p) {
                return Err(CheckpointError::Tampered {
                    seq: p.size,
                    reason: format!("against the checkpoint kept beside it: {why}"),
                });
            }
        }
        let (cp, note, _) = sign_scan(scan, &key)?;
        let version = current.as_ref().and_then(|c| c.1.clone());
        if remote
            .write_checkpoint(note.as_bytes(), version.as_deref())
            .map_err(audit_to_checkpoint)?
        {
            return Ok((cp, note));
        }
        // Another machine replaced it meanwhile: check against theirs.
    }
    Err(CheckpointError::State(StateError::Config {
        what: "the shared checkpoint kept changing while it was written".into(),
        fix: "run the command again".into(),
    }))
}

/// The checkpoint after a plan run: the local `audit.checkpoint`, or the
/// one kept beside a shared log.
pub fn write_for(
    log: &super::AuditLog,
    home: &Home,
) -> Result<(Checkpoint, String), CheckpointError> {
    if log.is_remote() {
        write_shared(log, home)
    } else {
        write_latest(home)
    }
}

/// How the log compares with a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consistency {
    /// The log's first `size` records are exactly the checkpointed tree.
    Contains,
    /// The log has fewer records than the checkpoint covers.
    Truncated { have: u64 },
    /// The first `size` records hash to another root.
    Rewritten { root: [u8; 32] },
}

impl Consistency {
    pub fn describe(&self, cp: &Checkpoint) -> Option<String> {
        match self {
            Consistency::Contains => None,
            Consistency::Truncated { have } => Some(format!(
                "the log no longer contains the checkpointed tree: the checkpoint covers {} records, the log has {have} (records were removed)",
                cp.size
            )),
            Consistency::Rewritten { root } => Some(format!(
                "the log no longer contains the checkpointed tree: its first {} records hash to {}, the checkpoint says {} (records were rewritten)",
                cp.size,
                B64.encode(root),
                cp.root_b64()
            )),
        }
    }
}

/// Compare a log scan (made with `snapshot_at = Some(cp.size)`) with a
/// checkpoint.
pub fn consistency(scan: &LogScan, cp: &Checkpoint) -> Consistency {
    match scan.prefix_root {
        None => Consistency::Truncated { have: scan.size },
        Some(r) if r == cp.root => Consistency::Contains,
        Some(r) => Consistency::Rewritten { root: r },
    }
}

/// Where the latest checkpoint is kept.
pub fn latest_path(home: &Home) -> PathBuf {
    home.root().join(CHECKPOINT_FILE)
}

#[cfg(test)]
#[path = "checkpoint_tests.rs"]
mod tests;
