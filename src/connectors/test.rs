//! The engine's own test connector: provider `test`, targets are named items
//! in a JSON file in the state dir. It exists to exercise the spine end to end
//! (resume after a crash, retries, the CLI) without touching any real system,
//! and it is labelled as such everywhere it appears. It is never proof that a
//! real connector works.
//!
//! Fault injection by target name, for engine tests:
//! * `fail-permanent-*`: every call fails permanently;
//! * `flaky-N-*`: the first N executes fail with a retryable error;
//! * `ambiguous-*`: the first execute applies the change, then reports an
//!   ambiguous error (a response lost after the change was made);
//! * `unreadable-*`: `describe` (the evidence snapshot) is refused as a
//!   missing read permission would be; the change and its verification work.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use async_trait::async_trait;
use cordon_connector::{
    Action, Connector, ConnectorError, Outcome, Provider, StepContext, TargetState, Verification,
};
use fs4::fs_std::FileExt;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Item {
    pub contained: bool,
    /// How many times the state actually changed (tests assert "at most once").
    pub changes: u64,
    /// How many execute calls arrived.
    pub calls: u64,
}

pub struct TestConnector {
    path: PathBuf,
}

impl TestConnector {
    pub fn new(path: impl Into<PathBuf>) -> TestConnector {
        TestConnector { path: path.into() }
    }

    /// Read-modify-write under an exclusive lock, so several processes agree.
    /// The lock is on a file of its own: the state file is replaced by a
    /// rename on every write, and a lock on the replaced inode would let a
    /// second process lock the new one and lose an update (issue 21).
    fn with_items<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, Item>) -> T,
    ) -> Result<T, ConnectorError> {
        let lock_path = self.path.with_extension("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| ConnectorError::permanent(format!("test connector state: {e}")))?;
        file.lock_exclusive()
            .map_err(|e| ConnectorError::permanent(format!("test connector lock: {e}")))?;
        let data = match std::fs::read(&self.path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(ConnectorError::permanent(format!(
                    "test connector read: {e}"
                )))
            }
        };
        let mut items: BTreeMap<String, Item> = if data.is_empty() {
            BTreeMap::new()
        } else {
            serde_json::from_slice(&data)
                .map_err(|e| ConnectorError::permanent(format!("test connector state: {e}")))?
        };
        let out = f(&mut items);
        let bytes = serde_json::to_vec(&items)
            .map_err(|e| ConnectorError::permanent(format!("test connector encode: {e}")))?;
        crate::state::write_atomic(&self.path, &bytes)
            .map_err(|e| ConnectorError::permanent(e.to_string()))?;
        let _ = FileExt::unlock(&file);
        Ok(out)
    }

    pub fn items(&self) -> Result<BTreeMap<String, Item>, ConnectorError> {
        self.with_items(|i| i.clone())
    }
}

fn want_contained(action: Action) -> bool {
    action != Action::TestRestore
}

#[async_trait]
impl Connector for TestConnector {
    fn provider(&self) -> Provider {
        Provider::Test
    }

    async fn describe(&self, ctx: &StepContext<'_>) -> Result<TargetState, ConnectorError> {
        let id = &ctx.step.target.id;
        if id.starts_with("unreadable-") {
            return Err(ConnectorError::permanent(format!(
                "test item `{id}` refuses reads (as a missing read permission would)"
            )));
        }
        self.read_state(ctx)
    }

    async fn execute(&self, ctx: &StepContext<'_>) -> Result<Outcome, ConnectorError> {
        self.change(ctx)
    }

    async fn verify(&self, ctx: &StepContext<'_>) -> Result<Verification, ConnectorError> {
        let st = self.read_state(ctx)?;
        Ok(if st.contained {
            Verification::Dead {
                detail: "test item reads back as contained".into(),
            }
        } else {
            Verification::Alive {
                detail: "test item reads back as not contained".into(),
            }
        })
    }
}

impl TestConnector {
    /// The item's state, as `describe` and `verify` read it.
    fn read_state(&self, ctx: &StepContext<'_>) -> Result<TargetState, ConnectorError> {
        let id = &ctx.step.target.id;
        if id.starts_with("fail-permanent") {
            return Err(ConnectorError::permanent(format!(
                "test item `{id}` refuses every call"
            )));
        }
        let item = self.with_items(|items| items.get(id).cloned().unwrap_or_default())?;
        Ok(TargetState {
            contained: item.contained == want_contained(ctx.step.action),
            evidence: serde_json::json!({
                "connector": "test (built-in, touches nothing outside the state dir)",
                "item": id,
                "contained": item.contained,
            }),
        })
    }

    fn change(&self, ctx: &StepContext<'_>) -> Result<Outcome, ConnectorError> {
        let id = ctx.step.target.id.clone();
        if id.starts_with("fail-permanent") {
            return Err(ConnectorError::permanent(format!(
                "test item `{id}` refuses every call"
            )));
        }
        let want = want_contained(ctx.step.action);
        let flaky: u64 = id
            .strip_prefix("flaky-")
            .and_then(|r| r.split('-').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let ambiguous = id.starts_with("ambiguous-");
        let r = self.with_items(|items| {
            let item = items.entry(id.clone()).or_default();
            item.calls += 1;
            if item.calls <= flaky {
                return Err(ConnectorError::retryable(format!(
                    "test item `{id}`: simulated throttling (call {})",
                    item.calls
                ))
                .with_retry_after(Some(std::time::Duration::from_millis(20))));
            }
            if item.contained == want {
                return Ok(Outcome::AlreadyContained {
                    detail: format!("test item `{id}` was already in place"),
                });
            }
            item.contained = want;
            item.changes += 1;
            if ambiguous && item.calls == 1 {
                return Err(ConnectorError::ambiguous(format!(
                    "test item `{id}`: response lost after the change was made"
                )));
            }
            Ok(Outcome::Done {
                detail: format!(
                    "test item `{id}` {}",
                    if want { "contained" } else { "restored" }
                ),
            })
        })?;
        r
    }
}
