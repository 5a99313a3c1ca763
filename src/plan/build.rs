//! Building plans: who asks and why ([`PlanMeta`]), and the steps that
//! contain a credential. Shared by the one-shot commands, `respond` and the
//! agent, so that a GitHub token or an AWS key is planned the same way
//! whichever front end found it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use cordon_connector::{Action, PlanStep, Provider, Target};

use super::{Severity, Source};

/// Who asks, how bad, and why: shared by every command that writes a plan.
#[derive(Args, Debug, Clone)]
pub struct PlanMeta {
    /// The requester. Unverified unless you also sign (`--key`) or are an
    /// automation principal presenting its secret.
    #[arg(long = "as", value_name = "NAME", env = "CORDON_AS", value_parser = crate::text::free_text)]
    pub requester: Option<String>,
    #[arg(long, value_enum, default_value = "high")]
    pub severity: Severity,
    #[arg(long, value_enum, default_value = "manual")]
    pub source: Source,
    /// Attach to an incident (it must exist and be open; default: CORDON_INCIDENT).
    #[arg(long, env = "CORDON_INCIDENT")]
    pub incident: Option<String>,
    #[arg(long, value_parser = crate::text::free_text)]
    pub reason: Option<String>,
    /// Sign the plan as its requester with this SSH private key.
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
}

impl PlanMeta {
    pub fn requester_name(&self) -> String {
        self.requester
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".into())
    }
}

/// The step that revokes a leaked GitHub token, named by its fingerprint.
/// `installation`: a `ghs_` installation token (revoked with its own call);
/// `token_type`: its prefix without the underscore (`ghp`, `github_pat`, ...).
pub fn github_token_step(
    id: String,
    installation: bool,
    token_type: &str,
    fingerprint: String,
) -> PlanStep {
    let (action, tkind) = if installation {
        (Action::GithubRevokeInstallationToken, "installation-token")
    } else {
        (Action::GithubRevokeToken, "token")
    };
    let mut target = Target::new(Provider::Github, tkind, fingerprint.clone());
    target
        .tags
        .insert("token_type".into(), token_type.to_owned());
    PlanStep {
        id,
        action,
        target,
        secret: Some(fingerprint),
        params: BTreeMap::new(),
    }
}

/// Append `new` to `steps`, numbering them on; a step already planned (one
/// quarantine per user, however many of its keys leaked) is not planned twice.
/// Returns the ids of the steps that cover `new`, existing ones included.
pub fn add_steps(steps: &mut Vec<PlanStep>, new: Vec<PlanStep>) -> Vec<String> {
    let mut ids = Vec::new();
    for mut s in new {
        if let Some(x) = steps
            .iter()
            .find(|x| x.action == s.action && x.target == s.target)
        {
            ids.push(x.id.clone());
            continue;
        }
        s.id = format!("s{}", steps.len() + 1);
        ids.push(s.id.clone());
        steps.push(s);
    }
    ids
}

/// Identify AWS keys, as many requests at once as `concurrency` (many keys of cordon's
/// own account by listing it, `AwsConnector::identify_access_keys`); one result per key,
/// in order.
#[cfg(feature = "cli")]
pub async fn identify_keys(
    aws: &cordon_aws::AwsConnector,
    key_ids: &[String],
    concurrency: usize,
) -> Vec<Result<cordon_aws::KeyIdentity, String>> {
    aws.identify_access_keys(key_ids, concurrency)
        .await
        .into_iter()
        .zip(key_ids)
        .map(|(r, k)| r.map_err(|e| format!("cannot identify `{k}`: {}", e.message)))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_step_planned_twice_is_planned_once_and_both_name_it() {
        let mut steps = Vec::new();
        let a = github_token_step(String::new(), false, "ghp", "fp-a".into());
        let b = github_token_step(String::new(), true, "ghs", "fp-b".into());
        assert_eq!(add_steps(&mut steps, vec![a.clone()]), vec!["s1"]);
        assert_eq!(add_steps(&mut steps, vec![b, a]), vec!["s2", "s1"]);
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[1].action, Action::GithubRevokeInstallationToken);
        assert_eq!(steps[1].target.tags["token_type"], "ghs");
    }
}
