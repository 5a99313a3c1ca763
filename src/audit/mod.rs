//! The append-only, hash-chained audit log.
//!
//! One JSON object per line. Each record carries `seq` (1, 2, ...), `prev`
//! (the previous record's `hash`, 64 zeros for the first) and `hash`:
//! SHA-256 over the record's canonical bytes (sorted keys, no whitespace)
//! without the `hash` field. A line must also *be* canonical, so that no byte
//! of the file can change without the chain breaking at that record.
//!
//! Every append is written and fsynced before the call returns: the engine
//! writes an `intent` record before every side effect, so a side effect never
//! happens without a durable record of it. If the write fails (disk full,
//! permissions), the caller gets the error and acts on nothing.
//!
//! Appends from concurrent threads are *group committed*: while one thread
//! (the leader) writes and fsyncs, the others queue their drafts; the next
//! leader seals everything queued in arrival order, chains it, and writes the
//! whole group with one `write` and one `fdatasync`. Each caller still returns
//! only once its own record is durable (or with the group's error), and the
//! chain, `seq` order and torn-tail recovery are exactly those of one append
//! at a time: a crash inside a group write leaves a torn tail like any other.
//!
//! A crash in the middle of a write leaves a *torn tail*: a last line without
//! its newline. `verify` tells it apart from tampering; the next append moves
//! the torn bytes to `audit.torn/` (nothing is thrown away), cuts them off and
//! records a `note` saying so.

mod canonical;
pub mod checkpoint;
pub mod payload;
mod record;
mod verify;

pub use record::{Approver, Imported, Kind, Record, RecordDraft};
pub use verify::{verify_file, verify_reader, verify_reader_from, VerifyReport, VerifyStatus};

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use fs4::fs_std::FileExt;

use crate::state::{io_err, sync_dir, StateError};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Position of the chain's head, cached between appends.
#[derive(Debug, Clone)]
struct Head {
    seq: u64,
    hash: String,
    len: u64,
}

/// An audit log kept elsewhere than in a local file (the shared S3 state,
/// `crate::state::s3`): the same records, chain and guarantees, with its own
/// way of making each append durable and of ordering concurrent writers.
pub trait RemoteLog: Send + Sync {
    /// Where the log is (for messages).
    fn describe(&self) -> String;
    /// Append the drafts, in order, once durable (see [`AuditLog::append`]):
    /// the group commit's batch, written in as few conditional writes as the
    /// log allows. One result per draft, in order.
    fn append_group(&self, drafts: Vec<RecordDraft>) -> Vec<Result<Record, AuditError>>;
    /// Build from what the log holds and append, atomically with respect to
    /// other writers (see [`AuditLog::append_with`]): the build may run more
    /// than once if another writer appends in between. `Err` from the build
    /// is returned inside `Ok` and nothing is written.
    fn append_with(
        &self,
        build: &mut dyn FnMut(&[Record]) -> Result<RecordDraft, String>,
    ) -> Result<Result<Record, String>, AuditError>;
    /// Every record's canonical line, newline-terminated, in order.
    fn read_bytes(&self) -> Result<Vec<u8>, AuditError>;
    /// The sequence number of the newest record (0 when empty).
    fn head_seq(&self) -> Result<u64, AuditError>;
    /// The log's signed checkpoint kept beside it, and the version to
    /// replace it with (see [`checkpoint::write_shared`]); None if none yet.
    fn read_checkpoint(&self) -> Result<Option<Versioned>, AuditError>;
    /// Replace the checkpoint of `version` (None: create the first one).
    /// False when another writer replaced it first (nothing was written).
    fn write_checkpoint(&self, note: &[u8], version: Option<&str>) -> Result<bool, AuditError>;
    /// Publish a checkpoint verifier key under its name (write-once).
    fn publish_verifier(&self, name: &str, verifier: &str) -> Result<(), AuditError>;
    /// A published verifier key, by name.
    fn read_verifier(&self, name: &str) -> Result<Option<String>, AuditError>;
}

/// An object's bytes and the version (ETag) to replace it with.
pub type Versioned = (Vec<u8>, Option<String>);

pub struct AuditLog {
    /// Set when the log is not the local file below.
    remote: Option<Box<dyn RemoteLog>>,
    path: PathBuf,
    torn_dir: PathBuf,
    head: Mutex<Option<Head>>,
    group: Mutex<Group>,
    committed: Condvar,
}

/// Drafts waiting for the next group commit, and the results of the last ones.
#[derive(Default)]
struct Group {
    next_ticket: u64,
    queue: Vec<(u64, RecordDraft)>,
    done: HashMap<u64, Result<Record, AuditError>>,
    /// A thread is writing a group now.
    leader: bool,
    /// Group writes so far (each one `write` + one `fdatasync`).
    commits: u64,
}

/// The lock, even if a thread panicked while holding it (the data it guards
/// stays consistent: every update is a single assignment or push).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("audit log `{path}` record {seq} cannot be read ({why}): run `cordon log verify` to see what is wrong")]
    Corrupt {
        path: PathBuf,
        seq: u64,
        why: String,
    },
    #[error("cannot encode audit record: {0}")]
    Encode(String),
}

impl AuditLog {
    pub fn new(path: impl Into<PathBuf>, torn_dir: impl Into<PathBuf>) -> AuditLog {
        AuditLog {
            remote: None,
            path: path.into(),
            torn_dir: torn_dir.into(),
            head: Mutex::new(None),
            group: Mutex::new(Group::default()),
            committed: Condvar::new(),
        }
    }

    /// A log kept by `remote` (the shared S3 state).
    pub fn remote(remote: Box<dyn RemoteLog>) -> AuditLog {
        let path = PathBuf::from(remote.describe());
        AuditLog {
            remote: Some(remote),
            torn_dir: path.clone(),
            path,
            head: Mutex::new(None),
            group: Mutex::new(Group::default()),
            committed: Condvar::new(),
        }
    }

    /// The log file; for a remote log, its location (not a local path).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// The remote log, if this is one.
    pub fn remote_log(&self) -> Option<&dyn RemoteLog> {
        self.remote.as_deref()
    }

    /// Where the log is, for messages.
    pub fn describe(&self) -> String {
        match &self.remote {
            Some(r) => r.describe(),
            None => self.path.display().to_string(),
        }
    }

    /// Every record's bytes as the log holds them (a remote log's records
    /// concatenated in order), for verification.
    pub fn read_bytes(&self) -> Result<Vec<u8>, AuditError> {
        if let Some(r) = &self.remote {
            return r.read_bytes();
        }
        match std::fs::read(&self.path) {
            Ok(d) => Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
            Err(e) => Err(io_err("read audit log", &self.path)(e).into()),
        }
    }

    /// Verify the chain (`log verify`): streamed from the file, or read
    /// back from the remote log.
    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        match &self.remote {
            Some(r) => verify_reader(std::io::Cursor::new(r.read_bytes()?))
                .map_err(|e| AuditError::Encode(e.to_string())),
            None => verify_file(&self.path)
                .map_err(|e| AuditError::from(io_err("read audit log", &self.path)(e))),
        }
    }

    /// A number that grows with every append (to notice changes).
    pub fn version(&self) -> Result<u64, AuditError> {
        match &self.remote {
            Some(r) => r.head_seq(),
            None => Ok(std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)),
        }
    }

    fn open_file(&self) -> Result<File, StateError> {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(io_err("open audit log", &self.path))
    }

    /// Append one record and return it as written, once it is durable.
    ///
    /// The caller's draft joins the queue; if no other thread is writing, this
    /// one becomes the leader and commits the queue (its own draft and any
    /// that arrive meanwhile) as one group; otherwise it waits for the leader
    /// that takes its draft.
    /// A remote log takes the same queue: its group is one conditional
    /// write for the records of every step in flight, not one each.
    pub fn append(&self, draft: RecordDraft) -> Result<Record, AuditError> {
        let mut g = lock(&self.group);
        let ticket = g.next_ticket;
        g.next_ticket += 1;
        g.queue.push((ticket, draft));
        loop {
            if let Some(result) = g.done.remove(&ticket) {
                return result;
            }
            if !g.leader {
                g.leader = true;
                let batch = std::mem::take(&mut g.queue);
                drop(g);
                let results = self.commit_group(batch);
                g = lock(&self.group);
                g.leader = false;
                g.commits += 1;
                g.done.extend(results);
                self.committed.notify_all();
                continue;
            }
            g = self.committed.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Group writes so far (one `write` and one `fdatasync` each).
    pub fn group_commits(&self) -> u64 {
        lock(&self.group).commits
    }

    /// Drafts queued behind the group being written (tests).
    #[cfg(test)]
    fn queued(&self) -> usize {
        lock(&self.group).queue.len()
    }

    /// Lock the file (other processes append too), recover a torn tail if
    /// there is one, chain the drafts in order, write them at once, fsync.
    fn commit_group(
        &self,
        batch: Vec<(u64, RecordDraft)>,
    ) -> Vec<(u64, Result<Record, AuditError>)> {
        if let Some(r) = &self.remote {
            let (tickets, drafts): (Vec<u64>, Vec<RecordDraft>) = batch.into_iter().unzip();
            let mut results = r.append_group(drafts).into_iter();
            return tickets
                .into_iter()
                .map(|t| {
                    let r = results.next().unwrap_or_else(|| {
                        Err(AuditError::Encode("the record was not written".into()))
                    });
                    (t, r)
                })
                .collect();
        }
        let mut cache = lock(&self.head);
        let file = self.open_file().and_then(|f| {
            f.lock_exclusive()
                .map_err(io_err("lock audit log", &self.path))?;
            Ok(f)
        });
        let mut file = match file {
            Ok(f) => f,
            Err(e) => return fail_all(batch, &AuditError::State(e)),
        };
        let result = self.commit_locked(&mut file, &mut cache, batch);
        let _ = FileExt::unlock(&file);
        result
    }

    /// Append one record built from the records already in the log, under
    /// the log's lock: the check (does the incident exist, is the task done?)
    /// and the append are one step, so two terminals cannot both close the
    /// same incident or take the same id. When `build` refuses, nothing is
    /// written and its error is returned inside `Ok`.
    pub fn append_with<E>(
        &self,
        mut build: impl FnMut(&[Record]) -> Result<RecordDraft, E>,
    ) -> Result<Result<Record, E>, AuditError> {
        if let Some(r) = &self.remote {
            let mut refused: Option<E> = None;
            let res = r.append_with(&mut |recs| {
                build(recs).map_err(|e| {
                    refused = Some(e);
                    String::new()
                })
            })?;
            return match (res, refused) {
                (Ok(rec), _) => Ok(Ok(rec)),
                (Err(_), Some(e)) => Ok(Err(e)),
                (Err(m), None) => Err(AuditError::Encode(m)),
            };
        }
        let mut guard = self.head.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = self.open_file()?;
        file.lock_exclusive()
            .map_err(io_err("lock audit log", &self.path))?;
        let result = match self.read_all() {
            Ok(records) => match build(&records) {
                // Not through the group queue: this append depends on what the
                // log holds, so it is sealed alone, under the same locks (head
                // cache, then file) a group commit takes, in the same order.
                Ok(draft) => match self
                    .commit_locked(&mut file, &mut guard, vec![(0, draft)])
                    .pop()
                {
                    Some((_, r)) => r.map(Ok),
                    None => Err(AuditError::Encode("the record was not written".into())),
                },
                Err(e) => Ok(Err(e)),
            },
            Err(e) => Err(e),
        };
        let _ = FileExt::unlock(&file);
        result
    }

    fn commit_locked(
        &self,
        file: &mut File,
        cache: &mut Option<Head>,
        batch: Vec<(u64, RecordDraft)>,
    ) -> Vec<(u64, Result<Record, AuditError>)> {
        let head = file
            .metadata()
            .map_err(|e| AuditError::from(io_err("read metadata of", &self.path)(e)))
            .and_then(|md| match cache.as_ref() {
                Some(h) if h.len == md.len() => Ok(h.clone()),
                _ => self.read_head(file, md.len()),
            });
        let head = match head {
            Ok(h) => h,
            Err(e) => {
                *cache = None;
                return fail_all(batch, &e);
            }
        };
        let mut bytes = Vec::new();
        let (mut seq, mut hash) = (head.seq, head.hash.clone());
        let mut out = Vec::with_capacity(batch.len());
        let mut sealed = Vec::with_capacity(batch.len());
        for (ticket, draft) in batch {
            let rec = draft.seal(seq + 1, &hash);
            match rec.canonical_line() {
                Ok(mut line) => {
                    line.push(b'\n');
                    bytes.extend_from_slice(&line);
                    seq = rec.seq;
                    hash = rec.hash.clone();
                    sealed.push((ticket, rec));
                }
                // Only this draft fails; the chain goes on without it.
                Err(e) => out.push((ticket, Err(AuditError::Encode(e)))),
            }
        }
        if sealed.is_empty() {
            return out;
        }
        if let Err(e) = file.write_all(&bytes).and_then(|_| file.sync_data()) {
            // Leave no half record behind if we can help it.
            let _ = file.set_len(head.len);
            let _ = file.sync_data();
            *cache = None;
            let err = AuditError::from(io_err("append to audit log", &self.path)(e));
            out.extend(fail_all(sealed, &err));
            return out;
        }
        if head.seq == 0 {
            if let Some(dir) = self.path.parent() {
                if let Err(e) = sync_dir(dir) {
                    *cache = None;
                    out.extend(fail_all(sealed, &AuditError::State(e)));
                    return out;
                }
            }
        }
        *cache = Some(Head {
            seq,
            hash,
            len: head.len + bytes.len() as u64,
        });
        out.extend(sealed.into_iter().map(|(t, r)| (t, Ok(r))));
        out
    }

    /// Read the last complete record; cut off (and keep) a torn tail.
    fn read_head(&self, file: &mut File, len: u64) -> Result<Head, AuditError> {
        if len == 0 {
            return Ok(Head {
                seq: 0,
                hash: GENESIS.to_owned(),
                len: 0,
            });
        }
        let (last_nl, tail_bytes) = find_last_newline(file, len, &self.path)?;
        let good_len = last_nl.map_or(0, |p| p + 1);
        if good_len < len {
            let head = self.read_head(file, good_len)?;
            // A crash tears only a record being appended, after everything the
            // signed checkpoint covers. If the checkpoint covers more records
            // than remain whole, the log was cut, not torn: refuse, and keep
            // every byte (issue 21: such a cut was silently discarded).
            if let Some(covered) = self.checkpoint_size() {
                if covered > head.seq {
                    return Err(AuditError::Corrupt {
                        path: self.path.clone(),
                        seq: head.seq + 1,
                        why: format!(
                            "the last record is cut short, but the signed checkpoint covers {covered} records and only {} are whole: records the checkpoint covers were cut (tampering, not a crash), so nothing was discarded",
                            head.seq
                        ),
                    });
                }
            }
            self.recover_torn_tail(file, good_len, len, tail_bytes)?;
            // Record the recovery so the cut is visible in the chain itself.
            let note = RecordDraft::note(
                "cordon",
                format!(
                    "recovered a torn tail of {} bytes after an interrupted write; the bytes are kept in `{}`",
                    len - good_len,
                    self.torn_dir.display()
                ),
            );
            let rec = note.seal(head.seq + 1, &head.hash);
            let mut line = rec.canonical_line().map_err(AuditError::Encode)?;
            line.push(b'\n');
            file.write_all(&line)
                .and_then(|_| file.sync_data())
                .map_err(io_err("append to audit log", &self.path))?;
            return Ok(Head {
                seq: rec.seq,
                hash: rec.hash,
                len: head.len + line.len() as u64,
            });
        }
        // The last line is [start, len-1).
        let start = {
            let (prev_nl, _) = find_last_newline(file, len - 1, &self.path)?;
            prev_nl.map_or(0, |p| p + 1)
        };
        let mut buf = vec![0u8; (len - 1 - start) as usize];
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(io_err("read audit log", &self.path))?;
        let v: serde_json::Value =
            serde_json::from_slice(&buf).map_err(|e| AuditError::Corrupt {
                path: self.path.clone(),
                seq: 0,
                why: format!("last record is not JSON: {e}"),
            })?;
        let seq = v.get("seq").and_then(|s| s.as_u64());
        let hash = v.get("hash").and_then(|s| s.as_str());
        match (seq, hash) {
            (Some(seq), Some(hash)) => Ok(Head {
                seq,
                hash: hash.to_owned(),
                len,
            }),
            _ => Err(AuditError::Corrupt {
                path: self.path.clone(),
                seq: 0,
                why: "last record has no seq or hash".into(),
            }),
        }
    }

    /// Records covered by the state's latest checkpoint (`audit.checkpoint`
    /// beside the log), read without its signature: it is used only to
    /// refuse a recovery, never to allow anything (`log verify` checks the
    /// signature).
    fn checkpoint_size(&self) -> Option<u64> {
        let note = std::fs::read(self.path.with_file_name(checkpoint::CHECKPOINT_FILE)).ok()?;
        let text = std::str::from_utf8(&note).ok()?;
        let (body, _) = text.split_once("\n\n")?;
        checkpoint::Checkpoint::parse(&format!("{body}\n"), "audit.checkpoint")
            .ok()
            .map(|cp| cp.size)
    }

    fn recover_torn_tail(
        &self,
        file: &mut File,
        good_len: u64,
        len: u64,
        tail: Vec<u8>,
    ) -> Result<(), AuditError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.torn_dir)
            .map_err(io_err("create directory", &self.torn_dir))?;
        let name = format!(
            "torn-{}-{}.bin",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
            good_len
        );
        let keep = self.torn_dir.join(name);
        debug_assert_eq!(tail.len() as u64, len - good_len);
        crate::state::write_atomic(&keep, &tail)?;
        file.set_len(good_len)
            .and_then(|_| file.sync_data())
            .map_err(io_err("truncate torn tail of", &self.path))?;
        Ok(())
    }

    /// Read every record (for `log show`, status and journals). Fails on a
    /// record that does not parse; a torn tail is skipped (it is not a record).
    pub fn read_all(&self) -> Result<Vec<Record>, AuditError> {
        if let Some(r) = &self.remote {
            return parse_lines(&r.read_bytes()?, &r.describe());
        }
        match std::fs::metadata(&self.path) {
            Ok(md) if !md.is_file() => {
                return Err(StateError::Io {
                    op: "read audit log",
                    path: self.path.clone(),
                    source: std::io::Error::other("not a regular file"),
                }
                .into())
            }
            _ => {}
        }
        let data = match std::fs::read(&self.path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(io_err("read audit log", &self.path)(e).into()),
        };
        let mut out = Vec::new();
        let complete = match data.iter().rposition(|b| *b == b'\n') {
            Some(p) => &data[..=p],
            None => &data[..0],
        };
        for (i, line) in complete.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let rec: Record = serde_json::from_slice(line).map_err(|e| AuditError::Corrupt {
                path: self.path.clone(),
                seq: i as u64 + 1,
                why: e.to_string(),
            })?;
            out.push(rec);
        }
        Ok(out)
    }
}

/// The shared state an emergency local log was started for (`cordon init
/// --emergency`): named by its first record.
pub fn emergency_for(records: &[Record]) -> Option<String> {
    let first = records.first()?;
    (first.kind == Kind::Note)
        .then(|| {
            first
                .data
                .as_ref()?
                .get("emergency_for")?
                .as_str()
                .map(str::to_owned)
        })
        .flatten()
}

/// Parse concatenated canonical lines (a remote log's records) into records.
pub fn parse_lines(data: &[u8], origin: &str) -> Result<Vec<Record>, AuditError> {
    let mut out = Vec::new();
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let rec: Record = serde_json::from_slice(line).map_err(|e| AuditError::Corrupt {
            path: PathBuf::from(origin),
            seq: i as u64 + 1,
            why: e.to_string(),
        })?;
        out.push(rec);
    }
    Ok(out)
}

/// The same error for every caller of a failed group.
fn fail_all<T>(batch: Vec<(u64, T)>, e: &AuditError) -> Vec<(u64, Result<Record, AuditError>)> {
    batch
        .into_iter()
        .map(|(t, _)| (t, Err(e.duplicate())))
        .collect()
}

impl AuditError {
    /// A copy for another caller of the same failed group (`io::Error` is
    /// not `Clone`; the OS error code is kept, so are the hints built on it).
    pub(crate) fn duplicate(&self) -> AuditError {
        match self {
            AuditError::State(s) => AuditError::State(match s {
                StateError::Io { op, path, source } => StateError::Io {
                    op,
                    path: path.clone(),
                    source: match source.raw_os_error() {
                        Some(code) => std::io::Error::from_raw_os_error(code),
                        None => std::io::Error::new(source.kind(), source.to_string()),
                    },
                },
                StateError::Unsafe { path, what, fix } => StateError::Unsafe {
                    path: path.clone(),
                    what: what.clone(),
                    fix: fix.clone(),
                },
                StateError::Conflict { kind, name } => StateError::Conflict {
                    kind,
                    name: name.clone(),
                },
                StateError::NoHome => StateError::NoHome,
                StateError::Remote { op, url, what, fix } => StateError::Remote {
                    op,
                    url: url.clone(),
                    what: what.clone(),
                    fix: fix.clone(),
                },
                StateError::Config { what, fix } => StateError::Config {
                    what: what.clone(),
                    fix: fix.clone(),
                },
            }),
            AuditError::Corrupt { path, seq, why } => AuditError::Corrupt {
                path: path.clone(),
                seq: *seq,
                why: why.clone(),
            },
            AuditError::Encode(m) => AuditError::Encode(m.clone()),
        }
    }
}

/// Position of the last `\n` strictly before `end`, and the bytes after it.
fn find_last_newline(
    file: &mut File,
    end: u64,
    path: &Path,
) -> Result<(Option<u64>, Vec<u8>), AuditError> {
    const CHUNK: u64 = 64 * 1024;
    let mut tail: Vec<u8> = Vec::new();
    let mut pos = end;
    while pos > 0 {
        let start = pos.saturating_sub(CHUNK);
        let mut buf = vec![0u8; (pos - start) as usize];
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(io_err("read audit log", path))?;
        if let Some(i) = buf.iter().rposition(|b| *b == b'\n') {
            let nl = start + i as u64;
            let mut t = buf[i + 1..].to_vec();
            t.extend_from_slice(&tail);
            return Ok((Some(nl), t));
        }
        let mut t = buf;
        t.extend_from_slice(&tail);
        tail = t;
        pos = start;
    }
    Ok((None, tail))
}

#[cfg(test)]
mod tests;
