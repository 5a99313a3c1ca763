use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The system a target lives in. One connector serves one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Aws,
    Github,
    /// The engine's own in-process test connector: it touches nothing outside
    /// the state dir and exists so the spine can be exercised end to end.
    Test,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Github => "github",
            Provider::Test => "test",
        }
    }
}

/// The thing an action is applied to. Never holds a secret: a token target is
/// named by its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Target {
    pub provider: Provider,
    /// `access-key`, `user`, `role`, `token`, `deploy-key`, `org-pat`, `item` (test), ...
    pub kind: String,
    /// A non-secret identifier: an access key id, a user or role name, a token
    /// fingerprint, a deploy key id.
    pub id: String,
    /// AWS account id, GitHub owner or org; `None` when not yet identified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `production`, `staging`, ... when known (from tags or configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl Target {
    pub fn new(provider: Provider, kind: impl Into<String>, id: impl Into<String>) -> Self {
        Target {
            provider,
            kind: kind.into(),
            id: id.into(),
            account: None,
            environment: None,
            tags: BTreeMap::new(),
        }
    }

    /// `provider:kind/id`, for tables and log lines.
    pub fn display_name(&self) -> String {
        format!("{}:{}/{}", self.provider.as_str(), self.kind, self.id)
    }
}

/// Every side effect cordon knows how to take. The serialized names are the
/// Cedar action ids in `policies/authority.cedar`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Action {
    // AWS
    #[serde(rename = "aws:disable-access-key")]
    AwsDisableAccessKey,
    #[serde(rename = "aws:quarantine-user")]
    AwsQuarantineUser,
    #[serde(rename = "aws:quarantine-role")]
    AwsQuarantineRole,
    #[serde(rename = "aws:revoke-role-sessions")]
    AwsRevokeRoleSessions,
    /// End the sessions a user's key minted (`GetSessionToken`, `GetFederationToken`):
    /// deny every request of the user's sessions issued before a cut-off. Long-term keys
    /// and sessions issued later are untouched.
    #[serde(rename = "aws:revoke-user-sessions")]
    AwsRevokeUserSessions,
    #[serde(rename = "aws:restore-access-key")]
    AwsRestoreAccessKey,
    #[serde(rename = "aws:restore-user")]
    AwsRestoreUser,
    #[serde(rename = "aws:restore-role")]
    AwsRestoreRole,
    // GitHub
    #[serde(rename = "github:revoke-token")]
    GithubRevokeToken,
    #[serde(rename = "github:revoke-installation-token")]
    GithubRevokeInstallationToken,
    #[serde(rename = "github:revoke-oauth-token")]
    GithubRevokeOauthToken,
    #[serde(rename = "github:revoke-oauth-grant")]
    GithubRevokeOauthGrant,
    #[serde(rename = "github:delete-deploy-key")]
    GithubDeleteDeployKey,
    #[serde(rename = "github:revoke-org-pat-access")]
    GithubRevokeOrgPatAccess,
    /// A leaked GitHub App private key: suspend the App's installations (no
    /// API deletes the key itself; its owner must, in the App's settings).
    #[serde(rename = "github:suspend-app-installations")]
    GithubSuspendAppInstallations,
    /// Not a side effect on the target: asking GitHub whose a leaked token is
    /// (`GET /user` with it). It shows up in the token owner's logs, so the
    /// policy decides whether cordon may do it.
    #[serde(rename = "github:probe-token")]
    GithubProbeToken,
    // The engine's own test connector.
    #[serde(rename = "test:contain")]
    TestContain,
    #[serde(rename = "test:restore")]
    TestRestore,
}

/// Decision classes of the authority roster: containment, restoration and
/// probing are decided by different people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionClass {
    Contain,
    Restore,
}

impl Action {
    pub const ALL: &'static [Action] = &[
        Action::AwsDisableAccessKey,
        Action::AwsQuarantineUser,
        Action::AwsQuarantineRole,
        Action::AwsRevokeRoleSessions,
        Action::AwsRevokeUserSessions,
        Action::AwsRestoreAccessKey,
        Action::AwsRestoreUser,
        Action::AwsRestoreRole,
        Action::GithubRevokeToken,
        Action::GithubRevokeInstallationToken,
        Action::GithubRevokeOauthToken,
        Action::GithubRevokeOauthGrant,
        Action::GithubDeleteDeployKey,
        Action::GithubRevokeOrgPatAccess,
        Action::GithubSuspendAppInstallations,
        Action::GithubProbeToken,
        Action::TestContain,
        Action::TestRestore,
    ];

    pub fn provider(self) -> Provider {
        match self {
            Action::AwsDisableAccessKey
            | Action::AwsQuarantineUser
            | Action::AwsQuarantineRole
            | Action::AwsRevokeRoleSessions
            | Action::AwsRevokeUserSessions
            | Action::AwsRestoreAccessKey
            | Action::AwsRestoreUser
            | Action::AwsRestoreRole => Provider::Aws,
            Action::GithubRevokeToken
            | Action::GithubRevokeInstallationToken
            | Action::GithubRevokeOauthToken
            | Action::GithubRevokeOauthGrant
            | Action::GithubDeleteDeployKey
            | Action::GithubRevokeOrgPatAccess
            | Action::GithubSuspendAppInstallations
            | Action::GithubProbeToken => Provider::Github,
            Action::TestContain | Action::TestRestore => Provider::Test,
        }
    }

    pub fn class(self) -> DecisionClass {
        match self {
            Action::AwsRestoreAccessKey
            | Action::AwsRestoreUser
            | Action::AwsRestoreRole
            | Action::TestRestore => DecisionClass::Restore,
            _ => DecisionClass::Contain,
        }
    }

    /// Does this action end a credential (the attacker's use of it), rather
    /// than quarantine an identity or restore one? The engine runs these
    /// first: the time that matters is the time until every leaked credential
    /// is refused (DESIGN.md, "What dead means": kill first, then quarantine
    /// and investigate). A fine-grained token's organisation access is not
    /// here: removing it leaves the token alive elsewhere.
    pub fn ends_credential(self) -> bool {
        matches!(
            self,
            Action::AwsDisableAccessKey
                | Action::AwsRevokeRoleSessions
                | Action::AwsRevokeUserSessions
                | Action::GithubRevokeToken
                | Action::GithubRevokeInstallationToken
                | Action::GithubRevokeOauthToken
                | Action::GithubRevokeOauthGrant
                | Action::GithubDeleteDeployKey
                | Action::TestContain
        )
    }

    /// When the engine starts this action among a plan's steps: 0 for a step
    /// that refuses the leaked credential itself (a key disabled, a token
    /// revoked, a leaked role session's role cut off), 1 for a user's session
    /// cut-off (the sessions a leaked key already minted; once the key is
    /// refused it mints no more), 2 for the rest (quarantine, restore). A key's
    /// kill costs three requests and a cut-off six, so on a peer that bounds
    /// the pace, every leaked key is refused first and the cut-offs follow,
    /// ahead of the quarantine's many reads (issue 19). A halt mid-run then
    /// leaves keys refused with their cut-offs waiting, not keys untouched.
    pub fn kill_order(self) -> u8 {
        match self {
            Action::AwsRevokeUserSessions => 1,
            a if a.ends_credential() => 0,
            _ => 2,
        }
    }

    /// The id used in plans, audit records and Cedar (`aws:disable-access-key`).
    pub fn id(self) -> &'static str {
        match self {
            Action::AwsDisableAccessKey => "aws:disable-access-key",
            Action::AwsQuarantineUser => "aws:quarantine-user",
            Action::AwsQuarantineRole => "aws:quarantine-role",
            Action::AwsRevokeRoleSessions => "aws:revoke-role-sessions",
            Action::AwsRevokeUserSessions => "aws:revoke-user-sessions",
            Action::AwsRestoreAccessKey => "aws:restore-access-key",
            Action::AwsRestoreUser => "aws:restore-user",
            Action::AwsRestoreRole => "aws:restore-role",
            Action::GithubRevokeToken => "github:revoke-token",
            Action::GithubRevokeInstallationToken => "github:revoke-installation-token",
            Action::GithubRevokeOauthToken => "github:revoke-oauth-token",
            Action::GithubRevokeOauthGrant => "github:revoke-oauth-grant",
            Action::GithubDeleteDeployKey => "github:delete-deploy-key",
            Action::GithubRevokeOrgPatAccess => "github:revoke-org-pat-access",
            Action::GithubSuspendAppInstallations => "github:suspend-app-installations",
            Action::GithubProbeToken => "github:probe-token",
            Action::TestContain => "test:contain",
            Action::TestRestore => "test:restore",
        }
    }

    pub fn from_id(id: &str) -> Option<Action> {
        Action::ALL.iter().copied().find(|a| a.id() == id)
    }
}

/// One step of a plan: an action on a target. Immutable once the plan is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    /// `s1`, `s2`, ... unique within the plan.
    pub id: String,
    pub action: Action,
    pub target: Target,
    /// Fingerprint of the secret this step needs at apply time (the secret
    /// itself is supplied then: stdin, an environment variable or the report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Non-secret parameters (quarantine mode, OAuth client id, the evidence
    /// hash a restore step undoes, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
}

impl PlanStep {
    pub fn param_str(&self, key: &str) -> Option<&str> {
        self.params.get(key).and_then(|v| v.as_str())
    }
}

/// What happened to one step. Recorded once per step in the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome {
    /// The connector made the change.
    Done { detail: String },
    /// The target was already in the contained state: nothing was changed.
    AlreadyContained { detail: String },
    /// The change was not made.
    Failed { retryable: bool, error: String },
    /// The request may or may not have taken effect and re-reading the state
    /// did not settle it.
    Unknown { error: String },
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            Outcome::Done { .. } | Outcome::AlreadyContained { .. }
        )
    }

    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Done { .. } => "done",
            Outcome::AlreadyContained { .. } => "already-contained",
            Outcome::Failed { .. } => "failed",
            Outcome::Unknown { .. } => "unknown",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            Outcome::Done { detail } | Outcome::AlreadyContained { detail } => detail,
            Outcome::Failed { error, .. } | Outcome::Unknown { error } => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_ids_round_trip_through_serde_and_from_id() {
        for a in Action::ALL {
            let json = serde_json::to_string(a).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", a.id()));
            assert_eq!(Action::from_id(a.id()), Some(*a));
            assert!(a.id().starts_with(a.provider().as_str()));
        }
    }

    // issue 19: the leaked credentials themselves first, then the sessions they minted,
    // then everything else; every killing step ahead of the rest.
    #[test]
    fn keys_and_tokens_are_killed_before_session_cut_offs_and_the_rest() {
        assert_eq!(Action::AwsDisableAccessKey.kill_order(), 0);
        assert_eq!(Action::GithubRevokeToken.kill_order(), 0);
        assert_eq!(Action::AwsRevokeUserSessions.kill_order(), 1);
        assert_eq!(Action::AwsRevokeRoleSessions.kill_order(), 0);
        assert_eq!(Action::AwsQuarantineUser.kill_order(), 2);
        assert_eq!(Action::AwsRestoreAccessKey.kill_order(), 2);
        for a in Action::ALL {
            assert_eq!(a.kill_order() < 2, a.ends_credential(), "{}", a.id());
        }
    }
}
