//! Local state: plans, approvals, evidence and the audit log under one home.
//!
//! Layout of the home (`--home`, `CORDON_HOME`, default `$XDG_STATE_HOME/cordon`
//! or `~/.local/state/cordon`):
//!
//! ```text
//! audit.log              hash-chained JSON lines (see crate::audit)
//! audit.torn/            bytes of torn tails cut off after a crash, kept for review
//! audit.key              Ed25519 key that signs audit checkpoints (0600, never printed)
//! audit.checkpoint       the latest signed checkpoint (see crate::audit::checkpoint)
//! plans/<id>.json        immutable canonical plans
//! approvals/<plan>/      SSH signatures over plan bytes
//! evidence/<sha256>.json snapshots taken before any change
//! connectors/            connector state (GitHub revocation budget, test connector)
//! claims/<plan>.lock     held (flock) by the one process applying that plan
//! policy/                the authority policy, unless --policy points elsewhere
//! ```
//!
//! Directories are 0700 and files 0600; cordon refuses to run on state that is
//! group- or world-writable or owned by another user, as OpenSSH refuses a key
//! with open permissions. Objects go through [`Store`], a small interface so
//! that a shared team backend (S3 with conditional writes) can follow.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{} `{path}` is {what}: {fix}", if path.is_dir() { "state directory" } else { "state file" })]
    Unsafe {
        path: PathBuf,
        what: String,
        fix: String,
    },
    #[error("cannot {op} `{path}`: {source}{}", hint_for(.source))]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{kind} `{name}` already exists with different content; objects are immutable")]
    Conflict { kind: &'static str, name: String },
    #[error("no home directory to put state in: set CORDON_HOME or pass --home")]
    NoHome,
}

fn hint_for(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
            " (the disk is full: free space, or move state with --home)"
        }
        Some(libc::EROFS) => " (the filesystem is read-only: use a writable --home)",
        Some(libc::EACCES) | Some(libc::EPERM) => {
            " (permission denied: run as the state's owner, or use another --home)"
        }
        _ => "",
    }
}

pub fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Kinds of immutable or replaceable objects kept in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Plan,
    Approval,
    Evidence,
    Connector,
}

impl ObjectKind {
    fn dir(self) -> &'static str {
        match self {
            ObjectKind::Plan => "plans",
            ObjectKind::Approval => "approvals",
            ObjectKind::Evidence => "evidence",
            ObjectKind::Connector => "connectors",
        }
    }

    fn label(self) -> &'static str {
        match self {
            ObjectKind::Plan => "plan",
            ObjectKind::Approval => "approval",
            ObjectKind::Evidence => "evidence",
            ObjectKind::Connector => "connector state",
        }
    }
}

/// The storage interface. Names may contain `/` (one level: `plan/sig`).
pub trait Store: Send + Sync {
    /// Create an object that must never change. Writing the same bytes again
    /// is a no-op; different bytes are a conflict (S3: `If-None-Match: *`).
    fn put_new(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<(), StateError>;
    /// Replace an object atomically (connector state).
    fn put(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<(), StateError>;
    fn get(&self, kind: ObjectKind, name: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// Names under `prefix` (a plan id for approvals, or "" for all).
    fn list(&self, kind: ObjectKind, prefix: &str) -> Result<Vec<String>, StateError>;
    /// Filesystem path of an object, where the backend has one (for tools
    /// such as `ssh-keygen -Y verify` and for messages).
    fn path_of(&self, kind: ObjectKind, name: &str) -> Option<PathBuf>;
    /// Claim a plan for this process until the claim is dropped, waiting
    /// while another process holds it: two applies of one plan never run
    /// side by side, so a step gets one intent and one change. (Local: a
    /// shared backend needs leases instead.)
    fn claim_plan(&self, plan_id: &str) -> Result<PlanClaim, StateError>;
}

/// A held plan claim (an exclusive `flock` on `claims/<plan>.lock`, released
/// when dropped or when the process dies, so a crash never leaves it held).
#[derive(Debug)]
pub struct PlanClaim {
    _file: File,
}

/// The local home directory.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `--home`, else `CORDON_HOME` (handled by clap), else the XDG state dir.
    pub fn default_path() -> Result<PathBuf, StateError> {
        if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(x).join("cordon"));
        }
        let home = std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .ok_or(StateError::NoHome)?;
        Ok(PathBuf::from(home).join(".local/state/cordon"))
    }

    /// Open (creating with 0700 if missing) and check permissions.
    pub fn open(root: impl Into<PathBuf>) -> Result<Home, StateError> {
        let root = root.into();
        if !root.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&root)
                .map_err(io_err("create state directory", &root))?;
        }
        let home = Home { root };
        home.check_safe(&home.root.clone())?;
        // Everything whose content decides what cordon does or proves: a file
        // here that another user owns or can write could have been put there
        // by them (a forged log, a policy granting them authority).
        let policy_files = crate::policy::FILES.map(|f| format!("policy/{f}"));
        let entries = [
            "plans",
            "approvals",
            "evidence",
            "connectors",
            "claims",
            "agent",
            "audit.torn",
            "audit.log",
            "audit.key",
            "audit.checkpoint",
            "policy",
        ]
        .into_iter()
        .chain(policy_files.iter().map(String::as_str));
        for rel in entries {
            let p = home.root.join(rel);
            if fs::symlink_metadata(&p).is_ok() {
                home.check_safe(&p)?;
            }
        }
        Ok(home)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn audit_path(&self) -> PathBuf {
        self.root.join("audit.log")
    }

    pub fn torn_dir(&self) -> PathBuf {
        self.root.join("audit.torn")
    }

    pub fn policy_dir(&self) -> PathBuf {
        self.root.join("policy")
    }

    /// Refuse group/world-writable or foreign-owned state, with the fix.
    pub fn check_safe(&self, path: &Path) -> Result<(), StateError> {
        let md = fs::symlink_metadata(path).map_err(io_err("read metadata of", path))?;
        if md.file_type().is_symlink() {
            return Err(StateError::Unsafe {
                path: path.to_owned(),
                what: "a symbolic link".into(),
                fix: "point --home at the real directory".into(),
            });
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if md.uid() != me {
            return Err(StateError::Unsafe {
                path: path.to_owned(),
                what: format!("owned by uid {} (you are uid {me})", md.uid()),
                fix: format!(
                    "run cordon as its owner, or `chown{} {me} {}`",
                    if md.is_dir() { " -R" } else { "" },
                    path.display()
                ),
            });
        }
        let mode = md.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            let want = if md.is_dir() { "700" } else { "600" };
            return Err(StateError::Unsafe {
                path: path.to_owned(),
                what: format!("writable by group or others (mode {mode:03o})"),
                fix: format!("run `chmod {want} {}` and try again", path.display()),
            });
        }
        Ok(())
    }

    pub fn ensure_dir(&self, rel: &str) -> Result<PathBuf, StateError> {
        let p = self.root.join(rel);
        if !p.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&p)
                .map_err(io_err("create directory", &p))?;
        } else {
            self.check_safe(&p)?;
        }
        Ok(p)
    }

    fn object_path(&self, kind: ObjectKind, name: &str) -> Result<PathBuf, StateError> {
        let bad = name.is_empty()
            || name.starts_with('/')
            || name
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
            || name.matches('/').count() > 1;
        if bad {
            return Err(StateError::Io {
                op: "use object name",
                path: PathBuf::from(name),
                source: io::Error::new(io::ErrorKind::InvalidInput, "invalid object name"),
            });
        }
        let dir = self.ensure_dir(kind.dir())?;
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            if parent != dir {
                self.ensure_dir(&format!(
                    "{}/{}",
                    kind.dir(),
                    name.split('/').next().unwrap_or("")
                ))?;
            }
        }
        Ok(path)
    }
}

/// Write `bytes` to `path` atomically: temp file (0600) in the same
/// directory, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("obj"),
        std::process::id()
    ));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
        sync_dir(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

pub fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

impl Store for Home {
    fn put_new(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let path = self.object_path(kind, name)?;
        if let Some(existing) = self.get(kind, name)? {
            if existing == bytes {
                return Ok(());
            }
            return Err(StateError::Conflict {
                kind: kind.label(),
                name: name.to_owned(),
            });
        }
        write_atomic(&path, bytes)
    }

    fn put(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let path = self.object_path(kind, name)?;
        write_atomic(&path, bytes)
    }

    fn get(&self, kind: ObjectKind, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        let path = self.object_path(kind, name)?;
        // A plan, approval or snapshot someone else could have written (or a
        // symlink to one) is refused like the directories holding it.
        if fs::symlink_metadata(&path).is_ok() {
            self.check_safe(&path)?;
        }
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    fn list(&self, kind: ObjectKind, prefix: &str) -> Result<Vec<String>, StateError> {
        let dir = self.root.join(kind.dir()).join(prefix);
        let mut names = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(names),
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        for ent in rd {
            let ent = ent.map_err(io_err("list", &dir))?;
            if let Some(n) = ent.file_name().to_str() {
                if !n.starts_with('.') {
                    names.push(if prefix.is_empty() {
                        n.to_owned()
                    } else {
                        format!("{prefix}/{n}")
                    });
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn path_of(&self, kind: ObjectKind, name: &str) -> Option<PathBuf> {
        Some(self.root.join(kind.dir()).join(name))
    }

    fn claim_plan(&self, plan_id: &str) -> Result<PlanClaim, StateError> {
        use std::os::fd::AsRawFd;
        if plan_id.is_empty()
            || !plan_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(StateError::Io {
                op: "claim plan",
                path: PathBuf::from(plan_id),
                source: io::Error::new(io::ErrorKind::InvalidInput, "invalid plan id"),
            });
        }
        let dir = self.ensure_dir("claims")?;
        let path = dir.join(format!("{plan_id}.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io_err("open claim", &path))?;
        self.check_safe(&path)?;
        let fd = file.as_raw_fd();
        // SAFETY: fd is an open descriptor owned by `file` for this call.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io_err("lock claim", &path)(e));
            }
            tracing::info!(
                plan = plan_id,
                "another cordon process is applying this plan; waiting for it to finish"
            );
            loop {
                // SAFETY: as above.
                if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
                    break;
                }
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(io_err("lock claim", &path)(e));
                }
            }
        }
        Ok(PlanClaim { _file: file })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn creates_private_dirs_and_files() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::open(t.path().join("h")).unwrap();
        home.put_new(ObjectKind::Plan, "abc.json", b"x").unwrap();
        let md = fs::metadata(home.root()).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o700);
        let f = fs::metadata(home.root().join("plans/abc.json")).unwrap();
        assert_eq!(f.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(home.root().join("plans"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
    }

    #[test]
    fn refuses_group_writable_state_with_the_fix() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("h");
        Home::open(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o770)).unwrap();
        let e = Home::open(&p).unwrap_err().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
        assert!(e.contains("chmod 700"), "{e}");
    }

    #[test]
    fn immutable_objects_conflict_on_different_bytes() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::open(t.path().join("h")).unwrap();
        home.put_new(ObjectKind::Evidence, "e1", b"one").unwrap();
        home.put_new(ObjectKind::Evidence, "e1", b"one").unwrap();
        assert!(matches!(
            home.put_new(ObjectKind::Evidence, "e1", b"two"),
            Err(StateError::Conflict { .. })
        ));
        assert!(home.get(ObjectKind::Evidence, "../x").is_err());
    }

    #[test]
    fn group_writable_or_symlinked_objects_are_refused_with_a_file_fix() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::open(t.path().join("h")).unwrap();
        home.put_new(ObjectKind::Plan, "p.json", b"x").unwrap();
        let p = home.root().join("plans/p.json");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o664)).unwrap();
        let e = home
            .get(ObjectKind::Plan, "p.json")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("state file `"), "{e}");
        assert!(e.contains("chmod 600"), "{e}");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&p, home.root().join("evidence-link")).unwrap();
        home.ensure_dir("evidence").unwrap();
        std::os::unix::fs::symlink(&p, home.root().join("evidence/e.json")).unwrap();
        let e = home
            .get(ObjectKind::Evidence, "e.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a symbolic link"), "{e}");
    }
}
