//! The append-only, hash-chained audit log.
//!
//! One JSON object per line. Each record carries `seq` (1, 2, ...), `prev`
//! (the previous record's `hash`, 64 zeros for the first) and `hash`:
//! SHA-256 over the record's canonical bytes (sorted keys, no whitespace)
//! without the `hash` field. A line must also *be* canonical, so that no byte
//! of the file can change without the chain breaking at that record.
//!
//! Every append is written with one `write` and fsynced before the call
//! returns: the engine writes an `intent` record before every side effect, so
//! a side effect never happens without a durable record of it. If the write
//! fails (disk full, permissions), the caller gets the error and acts on
//! nothing.
//!
//! A crash in the middle of a write leaves a *torn tail*: a last line without
//! its newline. `verify` tells it apart from tampering; the next append moves
//! the torn bytes to `audit.torn/` (nothing is thrown away), cuts them off and
//! records a `note` saying so.

pub mod checkpoint;
mod record;
mod verify;

pub use record::{Approver, Kind, Record, RecordDraft};
pub use verify::{verify_file, verify_reader, verify_reader_from, VerifyReport, VerifyStatus};

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

pub struct AuditLog {
    path: PathBuf,
    torn_dir: PathBuf,
    head: Mutex<Option<Head>>,
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
            path: path.into(),
            torn_dir: torn_dir.into(),
            head: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
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

    /// Append one record: lock, recover a torn tail if there is one, chain,
    /// write, fsync. Returns the record as written.
    pub fn append(&self, draft: RecordDraft) -> Result<Record, AuditError> {
        let mut guard = self.head.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = self.open_file()?;
        // Other processes (the agent, a second terminal) append too.
        file.lock_exclusive()
            .map_err(io_err("lock audit log", &self.path))?;
        let result = self.append_locked(&mut file, &mut guard, draft);
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
        build: impl FnOnce(&[Record]) -> Result<RecordDraft, E>,
    ) -> Result<Result<Record, E>, AuditError> {
        let mut guard = self.head.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = self.open_file()?;
        file.lock_exclusive()
            .map_err(io_err("lock audit log", &self.path))?;
        let result = match self.read_all() {
            Ok(records) => match build(&records) {
                Ok(draft) => self.append_locked(&mut file, &mut guard, draft).map(Ok),
                Err(e) => Ok(Err(e)),
            },
            Err(e) => Err(e),
        };
        let _ = FileExt::unlock(&file);
        result
    }

    fn append_locked(
        &self,
        file: &mut File,
        cache: &mut Option<Head>,
        draft: RecordDraft,
    ) -> Result<Record, AuditError> {
        let len = file
            .metadata()
            .map_err(io_err("read metadata of", &self.path))?
            .len();
        let head = match cache.as_ref() {
            Some(h) if h.len == len => h.clone(),
            _ => self.read_head(file, len)?,
        };
        let rec = draft.seal(head.seq + 1, &head.hash);
        let mut line = rec.canonical_line().map_err(AuditError::Encode)?;
        line.push(b'\n');
        if let Err(e) = file.write_all(&line).and_then(|_| file.sync_data()) {
            // Leave no half record behind if we can help it.
            let _ = file.set_len(head.len);
            let _ = file.sync_data();
            *cache = None;
            return Err(io_err("append to audit log", &self.path)(e).into());
        }
        if head.seq == 0 {
            if let Some(dir) = self.path.parent() {
                sync_dir(dir)?;
            }
        }
        *cache = Some(Head {
            seq: rec.seq,
            hash: rec.hash.clone(),
            len: head.len + line.len() as u64,
        });
        Ok(rec)
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
            self.recover_torn_tail(file, good_len, len, tail_bytes)?;
            let head = self.read_head(file, good_len)?;
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
