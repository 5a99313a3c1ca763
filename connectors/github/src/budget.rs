//! The hourly budget of GitHub's credential revocation API (60 requests an
//! hour), kept on disk so that it survives between cordon runs.
//!
//! The file holds only the times of the requests made in the last hour. A
//! request is recorded *before* it is sent: a request whose answer was lost
//! still counted at GitHub.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cordon_connector::ConnectorError;
use serde::{Deserialize, Serialize};

const HOUR: u64 = 3600;

#[derive(Debug, Default, Serialize, Deserialize)]
struct BudgetFile {
    /// Unix seconds of each revocation request sent in the last hour.
    requests: Vec<u64>,
    /// GitHub said the budget of the originating IP is spent until then (unix
    /// seconds, its `x-ratelimit-reset`). The budget is per IP at GitHub, so
    /// other machines behind the same NAT (shared CI runners) spend it too,
    /// which this file cannot count: GitHub's word overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spent_until: Option<u64>,
}

/// What is left of the revocation budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetStatus {
    pub limit: u32,
    pub used: u32,
    /// When the oldest counted request leaves the window (unix seconds), if any.
    pub next_free_at: Option<u64>,
}

impl BudgetStatus {
    pub fn remaining(&self) -> u32 {
        self.limit.saturating_sub(self.used)
    }
}

pub struct RevocationBudget {
    path: PathBuf,
    limit: u32,
    lock: Mutex<()>,
}

impl RevocationBudget {
    pub fn new(path: impl Into<PathBuf>, limit: u32) -> Self {
        RevocationBudget {
            path: path.into(),
            limit,
            lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn status(&self) -> Result<BudgetStatus, ConnectorError> {
        let now = now();
        let file = self.read(now)?;
        Ok(self.status_of(&file))
    }

    /// Take up to `wanted` requests from the budget; returns how many were
    /// granted (possibly 0) and the status after taking them.
    pub fn take(&self, wanted: u32) -> Result<(u32, BudgetStatus), ConnectorError> {
        self.locked(|file, now| {
            let used = u32::try_from(file.requests.len()).unwrap_or(u32::MAX);
            let blocked = file.spent_until.is_some_and(|t| t > now);
            let granted = if blocked {
                0
            } else {
                wanted.min(self.limit.saturating_sub(used))
            };
            if granted > 0 {
                file.requests
                    .extend(std::iter::repeat_n(now, granted as usize));
            }
            (granted > 0, granted)
        })
    }

    /// GitHub answered that the revocation budget is spent (403 or 429 with
    /// `x-ratelimit-remaining: 0`) until `reset`: no request is granted before.
    pub fn spent_until(&self, reset: u64) -> Result<BudgetStatus, ConnectorError> {
        self.locked(|file, _| {
            file.spent_until = Some(file.spent_until.unwrap_or(0).max(reset));
            (true, ())
        })
        .map(|(_, status)| status)
    }

    /// Run `f` on the file under the in-process and the cross-process lock;
    /// `f` says whether to write the file back.
    fn locked<R>(
        &self,
        f: impl FnOnce(&mut BudgetFile, u64) -> (bool, R),
    ) -> Result<(R, BudgetStatus), ConnectorError> {
        let _guard = self.lock.lock().map_err(|_| {
            ConnectorError::permanent("the revocation budget lock is poisoned; restart cordon")
        })?;
        // Another cordon process (a second terminal, the agent) may spend the
        // same budget: hold an exclusive lock on a sibling file for the
        // read-modify-write (the budget file itself is replaced by rename).
        let lock_path = self.path.with_extension("lock");
        if let Some(dir) = lock_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                ConnectorError::permanent(format!("cannot create `{}`: {e}", dir.display()))
            })?;
        }
        let lock_file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&lock_path)
                .map_err(|e| {
                    ConnectorError::permanent(format!("cannot open `{}`: {e}", lock_path.display()))
                })?
        };
        fs4::fs_std::FileExt::lock_exclusive(&lock_file).map_err(|e| {
            ConnectorError::permanent(format!("cannot lock `{}`: {e}", lock_path.display()))
        })?;
        let now = now();
        let mut file = self.read(now)?;
        let (write, r) = f(&mut file, now);
        if write {
            self.write(&file)?;
        }
        Ok((r, self.status_of(&file)))
    }

    fn status_of(&self, file: &BudgetFile) -> BudgetStatus {
        let oldest = file.requests.iter().min().map(|t| t + HOUR);
        match file.spent_until {
            // GitHub's word: nothing left until its reset.
            Some(reset) => BudgetStatus {
                limit: self.limit,
                used: self.limit,
                next_free_at: Some(reset),
            },
            None => BudgetStatus {
                limit: self.limit,
                used: u32::try_from(file.requests.len()).unwrap_or(u32::MAX),
                next_free_at: oldest,
            },
        }
    }

    fn read(&self, now: u64) -> Result<BudgetFile, ConnectorError> {
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(&self.path) {
            use std::os::unix::fs::PermissionsExt as _;
            if meta.permissions().mode() & 0o022 != 0 {
                return Err(ConnectorError::permanent(format!(
                    "the revocation budget `{}` is writable by group or others, so it cannot be                      trusted; run `chmod 600` on it (and 700 on its directory)",
                    self.path.display()
                )));
            }
        }
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BudgetFile::default()),
            Err(e) => {
                return Err(ConnectorError::permanent(format!(
                    "cannot read the revocation budget `{}`: {}; check the state directory's \
                     permissions",
                    self.path.display(),
                    e.kind()
                )))
            }
        };
        let mut file: BudgetFile = serde_json::from_str(&text).map_err(|_| {
            ConnectorError::permanent(format!(
                "the revocation budget `{}` is not valid; delete it only if no revocation \
                 request was sent in the last hour",
                self.path.display()
            ))
        })?;
        file.requests.retain(|t| t + HOUR > now);
        if file.spent_until.is_some_and(|t| t <= now) {
            file.spent_until = None;
        }
        Ok(file)
    }

    /// Write atomically (temporary file in the same directory, then rename)
    /// with mode 0600.
    fn write(&self, file: &BudgetFile) -> Result<(), ConnectorError> {
        let io_err = |what: &str, e: std::io::Error| {
            ConnectorError::permanent(format!(
                "cannot {what} the revocation budget `{}`: {}; check the state directory",
                self.path.display(),
                e.kind()
            ))
        };
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder
                .create(dir)
                .map_err(|e| io_err("create the directory of", e))?;
        }
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "budget".into());
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let result = (|| {
            let mut f = opts.open(&tmp)?;
            let bytes = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err("write", e));
        }
        Ok(())
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `HH:MM UTC` of a unix time.
pub fn hhmm_utc(unix: u64) -> String {
    let day = unix % 86_400;
    format!("{:02}:{:02} UTC", day / 3600, (day % 3600) / 60)
}

/// Time from now until `unix`.
pub fn until(unix: u64) -> Duration {
    Duration::from_secs(unix.saturating_sub(now()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn two_budgets_on_one_file_never_overspend() {
        // Two instances stand for two cordon processes: only the file lock
        // keeps them apart (their in-process mutexes are distinct).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("budget.json");
        let granted: u32 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let b = RevocationBudget::new(&path, 60);
                    s.spawn(move || (0..60).map(|_| b.take(1).unwrap().0).sum::<u32>())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 60);
    }

    #[test]
    fn budget_is_kept_in_the_file_and_spent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("budget.json");
        let b = RevocationBudget::new(&path, 3);
        assert_eq!(b.take(2).unwrap().0, 2);
        // A second instance (another cordon run) sees the same budget.
        let b2 = RevocationBudget::new(&path, 3);
        let (granted, status) = b2.take(5).unwrap();
        assert_eq!(granted, 1);
        assert_eq!(status.remaining(), 0);
        assert!(status.next_free_at.is_some());
        assert_eq!(b2.take(1).unwrap().0, 0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn requests_older_than_an_hour_leave_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("budget.json");
        let old = now() - HOUR - 5;
        std::fs::write(&path, format!("{{\"requests\":[{old},{old}]}}")).unwrap();
        let b = RevocationBudget::new(&path, 2);
        assert_eq!(b.status().unwrap().used, 0);
        assert_eq!(b.take(2).unwrap().0, 2);
    }

    #[cfg(unix)]
    #[test]
    fn an_open_budget_file_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("budget.json");
        std::fs::write(&path, "{\"requests\":[]}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = RevocationBudget::new(&path, 60).take(1).unwrap_err();
        assert!(e.message.contains("chmod 600"), "{}", e.message);
    }

    // issue 17: GitHub's budget is per originating IP; when GitHub says it is
    // spent, the local file must not grant requests before GitHub's reset.
    #[test]
    fn github_saying_spent_blocks_until_its_reset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("budget.json");
        let b = RevocationBudget::new(&path, 60);
        let status = b.spent_until(now() + 120).unwrap();
        assert_eq!(status.remaining(), 0);
        let (granted, status) = b.take(1).unwrap();
        assert_eq!(granted, 0);
        assert!(status.next_free_at.unwrap() >= now() + 100);
        // A reset in the past no longer blocks.
        std::fs::write(
            &path,
            format!("{{\"requests\":[],\"spent_until\":{}}}", now() - 1),
        )
        .unwrap();
        assert_eq!(b.take(1).unwrap().0, 1);
    }

    #[test]
    fn hhmm_formats_utc() {
        assert_eq!(hhmm_utc(0), "00:00 UTC");
        assert_eq!(hhmm_utc(13 * 3600 + 7 * 60 + 59), "13:07 UTC");
    }
}
