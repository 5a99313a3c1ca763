//! Unsafe, full and read-only state: a clear error and no side effect.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::support::Env;

#[test]
fn group_writable_state_is_refused_with_the_fix() {
    let env = Env::new();
    let id = env.plan_test(&["x"], &[]);
    std::fs::set_permissions(&env.home, std::fs::Permissions::from_mode(0o775)).unwrap();
    let o = env.run(&["apply", &id]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("writable by group or others") && err.contains("chmod 700"),
        "{err}"
    );
    assert!(env.items().get("x").is_none());
}

/// A tmpfs of `size` mounted on a fresh directory (the tests run as root, as
/// CI does; mounting is the honest way to get a full or read-only filesystem).
struct Mount(std::path::PathBuf);

impl Mount {
    fn new(dir: &std::path::Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        Mount(dir.to_owned())
    }
    fn remount_ro(&self) {
        let st = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_and_read_only_state_fail_before_any_side_effect() {
    let outer = tempfile::tempdir().unwrap();
    let mnt = outer.path().join("state");
    let m = Mount::new(&mnt, "1m");
    let env = Env {
        home: mnt.join("home"),
        dir: tempfile::tempdir().unwrap(),
    };
    env.ok(&["init"]);
    let id = env.plan_test(&["full-disk-item"], &[]);
    // tmpfs hands out whole pages: bring the audit log's end close to a page
    // boundary (more plan records), so that the next record needs a new page
    // that the full filesystem cannot give. Then the very first append of the
    // apply (its decision record) fails, before any side effect.
    let log = env.home.join("audit.log");
    for _ in 0..40 {
        let len = std::fs::metadata(&log).unwrap().len() % 4096;
        if len > 3600 {
            break;
        }
        env.plan_test(&["padding"], &[]);
    }
    assert!(std::fs::metadata(&log).unwrap().len() % 4096 > 3600);
    let records_before = env.records().len();
    // Fill the filesystem to the last byte.
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k"])
        .arg(format!("of={}", mnt.join("filler").display()))
        .output()
        .unwrap();
    let o = env.run(&["apply", &id]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("disk is full"), "{err}");
    assert!(
        err.contains("audit log"),
        "the audit append must be what failed: {err}"
    );
    assert!(env
        .items()
        .get("full-disk-item")
        .is_none_or(|i| i["calls"] == 0));
    assert_eq!(
        env.records().len(),
        records_before,
        "no half record may remain"
    );
    assert!(env.run(&["log", "verify"]).status.success());

    std::fs::remove_file(mnt.join("filler")).unwrap();
    m.remount_ro();
    let o = env.run(&["apply", &id]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("read-only"), "{err}");
    assert!(env
        .items()
        .get("full-disk-item")
        .is_none_or(|i| i["calls"] == 0));
}

/// State that belongs to another user (the state directory, its audit log,
/// its checkpoint key or one policy file) is refused before anything is read
/// or done, with the owner and the fix named: a foreign-owned log could have
/// been forged, a foreign-owned policy could grant its owner any authority.
/// `chown` needs root, as CI runs.
#[test]
fn state_owned_by_someone_else_is_refused_before_any_side_effect() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let id = env.plan_test(&["foreign-item"], &[]);
    let me = std::fs::metadata(&env.home).unwrap().uid();
    let chown = |path: &std::path::Path, uid: u32| {
        std::os::unix::fs::chown(path, Some(uid), None).unwrap_or_else(|e| {
            panic!("chown {} needs root (CI runs as root): {e}", path.display())
        })
    };
    let log = env.home.join("audit.log");
    env.ok(&["log", "checkpoint"]); // creates audit.key
    let records_before = env.records().len();
    let foreign_paths = [
        env.home.clone(),
        log,
        env.home.join("audit.key"),
        env.home.join("policy"),
        env.home.join("policy/authority.cedar"),
    ];
    for foreign in foreign_paths {
        assert!(foreign.exists(), "{}", foreign.display());
        chown(&foreign, 65534);
        let o = env.run(&["apply", &id]);
        chown(&foreign, me);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}: {}",
            foreign.display(),
            String::from_utf8_lossy(&o.stdout)
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("owned by uid 65534") && err.contains("chown"),
            "{}: {err}",
            foreign.display()
        );
        assert!(
            env.items().get("foreign-item").is_none(),
            "{}: the item was touched",
            foreign.display()
        );
    }
    assert_eq!(env.records().len(), records_before, "nothing was recorded");
    assert!(env.run(&["log", "verify"]).status.success());
    // A policy file others may write is refused the same way.
    let cedar = env.home.join("policy/authority.cedar");
    std::fs::set_permissions(&cedar, std::fs::Permissions::from_mode(0o664)).unwrap();
    let o = env.run(&["apply", &id]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("writable by group or others") && err.contains("authority.cedar"),
        "{err}"
    );
    assert!(env.items().get("foreign-item").is_none());
}
