//! What every operation that touches state needs: the home, the audit log,
//! the authority policy and the connectors. The command line opens one per
//! command (`cli::context`), the agent one per event.

mod approvals;
mod incidents;
mod plans;
mod run;

pub use approvals::{sign_and_store, store_signature, stored_signatures};
pub use incidents::{attachable, ensure_open, ledger_of, load_ledger, resolve, StateObjects};
pub use run::{authenticate_plan, Authenticated, Executed, RunOptions};

use std::path::PathBuf;
use std::sync::Arc;

#[cfg(feature = "cli")]
use cordon_connector::Provider;

use crate::audit::AuditLog;
#[cfg(any(test, feature = "test-connector"))]
use crate::connectors::test::TestConnector;
#[cfg(feature = "cli")]
use crate::connectors::Registry;
use crate::error::Error;
use crate::plan::Plan;
use crate::policy::PolicyGate;
use crate::state::{Home, ObjectKind, Store};

/// The demo switch (`CORDON_DEMO=1`): lets the published example secrets of
/// the shipped roster through, for `scripts/try` and the tests.
pub fn demo_switch() -> bool {
    std::env::var_os(crate::policy::DEMO_ENV).is_some_and(|v| v == "1")
}

pub struct Workspace {
    pub home: Arc<Home>,
    pub log: Arc<AuditLog>,
    pub policy_dir: PathBuf,
    /// One AWS connector per command: identification and execution share its
    /// clients and its cached own account (one `sts:GetCallerIdentity`, not two).
    #[cfg(feature = "cli")]
    aws: tokio::sync::OnceCell<Arc<cordon_aws::AwsConnector>>,
}

impl Workspace {
    pub fn open(home: Option<PathBuf>, policy: Option<PathBuf>) -> Result<Workspace, Error> {
        let root = match home {
            Some(h) => h,
            None => Home::default_path()?,
        };
        let home = Home::open(root)?;
        let policy_dir = policy.unwrap_or_else(|| home.policy_dir());
        let log = Arc::new(AuditLog::new(home.audit_path(), home.torn_dir()));
        Ok(Workspace {
            home: Arc::new(home),
            log,
            policy_dir,
            #[cfg(feature = "cli")]
            aws: tokio::sync::OnceCell::new(),
        })
    }

    /// The authority gate. A policy that fails to load denies everything
    /// (fail closed); the error is in every decision and in the hint here.
    pub fn gate(&self) -> PolicyGate {
        let demo = demo_switch();
        let g = PolicyGate::load(&self.policy_dir, demo);
        match g.policy() {
            Err(e) => tracing::warn!(
                "authority policy failed to load, every step will be denied: {}",
                e.summary()
            ),
            Ok(p) if demo && crate::policy::example_secrets(p, true).is_empty() => {
                tracing::warn!(
                    "{} is set, but the roster in `{}` uses no published example secret: the demo switch does nothing here; unset it outside demos and tests",
                    crate::policy::DEMO_ENV,
                    self.policy_dir.display()
                )
            }
            Ok(_) => {}
        }
        g
    }

    /// Exit code of a run whose steps were all refused: 9 (policy invalid)
    /// when the refusal is the policy failing to load, as the README says,
    /// not 3 (denied) or 5 (awaiting approval), which blame the requester.
    pub fn refusal_exit(&self, exit: crate::error::Exit) -> crate::error::Exit {
        use crate::error::Exit;
        match exit {
            Exit::Denied | Exit::AwaitingApproval
                if crate::policy::load_for_use(&self.policy_dir, demo_switch()).is_err() =>
            {
                Exit::PolicyInvalid
            }
            e => e,
        }
    }

    #[cfg(feature = "cli")]
    /// The halt switch and the usage the automation principals' limits count
    /// against, for one run. For a run by an automation principal this takes
    /// the state's automation lock first (waiting for another such run to
    /// end), then counts from the audit log, so two runs sharing the state
    /// cannot both spend the same remainder.
    pub async fn bounds(&self, automation: bool) -> Result<crate::policy::Bounds, Error> {
        use crate::policy::bounds::AUTOMATION_LOCK;
        use crate::policy::Bounds;
        let root = self.home.root().to_path_buf();
        if !automation {
            return Ok(Bounds::new(&root, &[], None));
        }
        let path = root.join(AUTOMATION_LOCK);
        let lock = tokio::task::spawn_blocking(move || -> Result<std::fs::File, String> {
            use fs4::fs_std::FileExt;
            use std::os::unix::fs::OpenOptionsExt;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
            f.lock_exclusive()
                .map_err(|e| format!("cannot lock `{}`: {e}", path.display()))?;
            Ok(f)
        })
        .await
        .map_err(|e| Error::failed(format!("the automation lock task failed: {e}")))?
        .map_err(Error::failed)?;
        let records = self.log.read_all()?;
        Ok(Bounds::new(&root, &records, Some(lock)))
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.home.clone()
    }

    #[cfg(any(test, feature = "test-connector"))]
    pub fn test_connector(&self) -> Result<TestConnector, Error> {
        let dir = self.home.ensure_dir("connectors")?;
        Ok(TestConnector::new(dir.join("test-items.json")))
    }

    #[cfg(feature = "cli")]
    /// Register the connectors a plan needs (explicit list, one place).
    pub async fn registry_for(&self, plan: &Plan, github_probe: bool) -> Result<Registry, Error> {
        let mut reg = Registry::new();
        let needs = |p: Provider| plan.steps.iter().any(|s| s.action.provider() == p);
        // Without the `test-connector` feature a `test` step finds no
        // connector and fails as such (a plan written by a test build).
        #[cfg(any(test, feature = "test-connector"))]
        if needs(Provider::Test) {
            reg.register(Arc::new(self.test_connector()?));
        }
        if needs(Provider::Aws) {
            reg.register(self.aws().await?);
        }
        if needs(Provider::Github) {
            reg.register(Arc::new(self.github(github_probe)?));
        }
        Ok(reg)
    }

    #[cfg(feature = "cli")]
    pub async fn aws(&self) -> Result<Arc<cordon_aws::AwsConnector>, Error> {
        self.aws
            .get_or_try_init(|| async {
                let cfg = cordon_aws::AwsConfig::from_env().map_err(|e| {
                    Error::failed(format!("aws configuration: {}", e.message))
                        .hint("see `CORDON_AWS_*` and `AWS_*` in the README")
                })?;
                cordon_aws::AwsConnector::new(cfg)
                    .await
                    .map(Arc::new)
                    .map_err(|e| Error::failed(format!("aws: {}", e.message)))
            })
            .await
            .cloned()
    }

    #[cfg(feature = "cli")]
    /// `probe`: whether the policy lets cordon call `GET /user` with a leaked
    /// token to identify its owner (see `github:probe-token`).
    pub fn github(&self, probe: bool) -> Result<cordon_github::GithubConnector, Error> {
        let dir = self.home.ensure_dir("connectors")?;
        let config = cordon_github::GithubConfig::from_env(&dir)
            .map_err(|e| Error::failed(format!("github: {}", e.message)))?
            .with_probe(probe);
        let creds = cordon_github::CordonCredentials::load()
            .map_err(|e| Error::failed(format!("github credentials: {}", e.message)))?;
        cordon_github::GithubConnector::new(config, creds)
            .map_err(|e| Error::failed(format!("github: {}", e.message)))
    }

    /// Load a plan by id (or unique id prefix), checking its digest.
    pub fn load_plan(&self, id: &str) -> Result<(String, Vec<u8>, Plan), Error> {
        let names = self.home.list(ObjectKind::Plan, "")?;
        let want = id.trim_end_matches(".json");
        let matches: Vec<&String> = names
            .iter()
            .filter(|n| n.trim_end_matches(".json").starts_with(want))
            .collect();
        let name = match matches.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(Error::failed(format!(
                    "no plan `{id}` in `{}`",
                    self.home.root().display()
                ))
                .hint("list plans with `cordon plan list`"))
            }
            _ => {
                return Err(Error::usage(format!(
                    "plan id `{id}` is ambiguous ({} plans match)",
                    matches.len()
                ))
                .hint("give more characters of the id"))
            }
        };
        let full = name.trim_end_matches(".json").to_owned();
        let bytes = self
            .home
            .get(ObjectKind::Plan, &name)?
            .ok_or_else(|| Error::failed(format!("plan `{full}` vanished while reading")))?;
        let plan = Plan::from_bytes(&bytes, Some(&full)).map_err(|e| {
            Error::failed(format!("plan `{full}` cannot be used: {e}"))
                .hint("plans are immutable: write a new one with `cordon plan ...`")
        })?;
        Ok((full, bytes, plan))
    }
}
