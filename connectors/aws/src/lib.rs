// IAM and STS calls this connector makes (for the least-privilege policy in policies/):
//   sts:GetCallerIdentity sts:GetAccessKeyInfo sts:AssumeRole
//   iam:GetAccessKeyLastUsed iam:GetUser iam:GetRole iam:ListAccessKeys
//   iam:ListUsers (many leaked keys identified by listing the account; denied: one by one)
//   iam:ListUserPolicies iam:ListRolePolicies iam:GetUserPolicy iam:GetRolePolicy
//   iam:ListAttachedUserPolicies iam:ListAttachedRolePolicies iam:ListGroupsForUser
//   iam:ListUserTags iam:ListRoleTags iam:GetLoginProfile iam:DeleteLoginProfile
//   iam:UpdateAccessKey iam:PutUserPolicy iam:PutRolePolicy iam:DeleteUserPolicy
//   iam:DeleteRolePolicy iam:AttachUserPolicy iam:AttachRolePolicy iam:DetachUserPolicy
//   iam:DetachRolePolicy iam:ListSSHPublicKeys iam:ListServiceSpecificCredentials
//   iam:ListSigningCertificates iam:CreateGroup iam:PutGroupPolicy iam:AddUserToGroup
//   iam:RemoveUserFromGroup
//   iam:CreatePolicy iam:GetPolicyVersion iam:DeletePolicy (the session cut-off at the
//   inline quota: policy/cordon/cordon-revoke-sessions-*)
//   iam:CreateGroup iam:PutGroupPolicy iam:GetGroupPolicy iam:AddUserToGroup
//   iam:RemoveUserFromGroup iam:GetGroup iam:DeleteGroupPolicy iam:DeleteGroup (a user's
//   session cut-off at both quotas: group/cordon/cordon-revoke-sessions-*)
//   cloudtrail:LookupEvents (what a leaked key did, read after containment)
// (issue 16 added: sts:GetCallerIdentity for AWS's time, the three List calls of other
// credentials, and the group calls of the quota fallback.)

//! cordon's AWS connector: contain a leaked AWS access key in IAM.
//!
//! Built on `aws-sdk-iam`, `aws-sdk-sts` and `aws-config` with the SDK's default
//! credential chain (environment, profiles, SSO, container and instance roles); region
//! and endpoint come from [`AwsConfig`]. The SDK's own retries are off (one attempt per
//! call): the engine owns retries, and failures are classified for it (see `error.rs`):
//! throttling and 5xx `Retryable`, timeouts and connections lost after sending
//! `Ambiguous`, other 4xx `Permanent`.
//!
//! # Actions and targets
//!
//! | action | target kind / id | what it does |
//! |---|---|---|
//! | `aws:disable-access-key` | `access-key` / key id | `UpdateAccessKey` → `Inactive` (never deleted: the id stays traceable in CloudTrail) |
//! | `aws:quarantine-user` | `user` / user name | inline deny-all `cordon-quarantine-deny-all` (or attach `AWSCompromisedKeyQuarantineV3`); delete the console password |
//! | `aws:quarantine-role` | `role` / role name | the same quarantine, plus session revocation |
//! | `aws:revoke-role-sessions` | `role` / role name | inline `cordon-revoke-sessions`: deny everything to sessions with `aws:TokenIssueTime` before now (the console's "revoke active sessions"); for leaked `ASIA` credentials |
//! | `aws:revoke-user-sessions` | `user` / user name | inline `cordon-revoke-sessions` on the user (at the inline-size quota: the same deny in customer-managed `cordon-revoke-sessions-<plan>-u-<user>`, attached; at the attachment quota too: the inline policy of group `/cordon/cordon-revoke-sessions-<plan>-u-<user>`, which the user joins): deny every session issued before a cut-off (`GetSessionToken`, `GetFederationToken` sessions outlive a disabled key, up to 36 h); the user's long-term keys and later sessions keep working. Planned with every `AKIA` key |
//! | `aws:restore-access-key` | `access-key` | the key's status from the snapshot; re-activation only with `reactivate_key: true` |
//! | `aws:restore-user`, `aws:restore-role` | `user`, `role` | cordon's controls back to the snapshot, nothing else |
//!
//! `Target::account` selects the account; when it differs from the credentials' own,
//! the connector assumes [`AwsConfig::role_arn_template`] in it.
//!
//! # Step params
//!
//! * `user` (string, access-key steps): the key's owner; looked up with
//!   `iam:GetAccessKeyLastUsed` when absent.
//! * `credentials` (`"all"` | `"access-keys"`, access-key steps, default `all`): what the
//!   kill reads of its user as evidence: every credential (access keys, console password,
//!   SSH keys, service-specific credentials, signing certificates: five reads, whose
//!   live ones the outcome names), or the access keys alone (one read), planned when the
//!   same plan quarantines the user, whose snapshot reads the others.
//! * `quarantine` (`"inline-deny"` | `"managed-v3"`, user and role steps): overrides
//!   [`AwsConfig::quarantine_mode`].
//! * `delete_login_profile` (bool, default `true`, `aws:quarantine-user`).
//! * `access_key_id` (string, `aws:quarantine-user`): the leaked key of that user, so
//!   verify can sign a probe with the leaked secret.
//! * `evidence_hash` (string, restore steps): names the snapshot the restore undoes to
//!   (the engine loads it and passes it as `StepContext::evidence`).
//! * `controls` (list, restore steps): which of `quarantine`, `managed-v3`,
//!   `revoke-sessions`, `login-profile` to put back; default all.
//! * `reactivate_key` (bool, default `false`, `aws:restore-access-key`): without it,
//!   restoring a key that was active is refused: that would revive a leaked secret.
//!
//! # Idempotency
//!
//! Every action reads its control first and changes only what is missing; a second run
//! returns `AlreadyContained` and changes nothing. Session revocation records the plan
//! id in its statement id, so re-running a plan is a no-op while a later incident's plan
//! moves the cut-off forward.
//!
//! # Evidence
//!
//! `describe` returns a snapshot (`schema: "cordon-aws/1"`): for a user its access keys
//! (status, creation, last use), inline policies with documents, attached policies,
//! groups, login profile (existence and dates: AWS never reveals a password), tags; for
//! a role the same plus its trust policy and last use. Restore puts back cordon's own
//! controls from it; a deleted console password cannot be re-created, and restore says
//! so in its outcome.
//!
//! # Verify
//!
//! With the leaked secret (`StepContext::secret`) and an `AKIA` key id, a read signed with
//! it must be refused: `sts:GetCallerIdentity` with `InvalidClientTokenId` for a disabled
//! key; `iam:GetUser` with `AccessDenied` for a user under the inline deny-all, which
//! counts as dead only when the deny-all is also read back (the user may never have had
//! that permission). A wrong secret (`SignatureDoesNotMatch`) gives `NotVerified`. A
//! `managed-v3` quarantine, role steps and steps without the secret are read back. A
//! probe is a call by the leaked key: it appears in CloudTrail (from cordon's address).
//! For restore steps, verify reports `Alive` once the snapshot's controls are back.
//! A key's kill read back on the access-keys view shares its first read-back with the
//! kills of the user's other keys under way: one `ListAccessKeys` sent after every one
//! of their changes returned, never a read already under way (`snapshot::ReadBacks`).
//!
//! # Session cut-offs use AWS's clock
//!
//! The `aws:TokenIssueTime` cut-off is AWS's time (the `Date` of an
//! `sts:GetCallerIdentity` answer) plus [`AwsConfig::cutoff_margin`], never the host's
//! clock: a host running behind would spare the sessions issued in the gap (`clock.rs`).
//!
//! # Permissions cordon's credentials need
//!
//! `sts:GetCallerIdentity` (cordon's own account, and AWS's time for cut-offs),
//! `sts:GetAccessKeyInfo`, `sts:AssumeRole` (cross-account), `iam:GetAccessKeyLastUsed`,
//! `iam:ListUsers` (optional: many keys are identified by listing the account),
//! `iam:GetUser`, `iam:GetRole`, `iam:List{AccessKeys,UserPolicies,RolePolicies,
//! AttachedUserPolicies,AttachedRolePolicies,GroupsForUser,UserTags,RoleTags}`,
//! `iam:Get{UserPolicy,RolePolicy,LoginProfile}`, `iam:UpdateAccessKey`,
//! `iam:Put{User,Role}Policy`, `iam:Delete{User,Role}Policy`,
//! `iam:{Attach,Detach}{User,Role}Policy` (`AWSCompromisedKeyQuarantineV3`, and
//! `AWSDenyAll` at the inline-size quota), `iam:DeleteLoginProfile`,
//! `iam:ListSSHPublicKeys`, `iam:ListServiceSpecificCredentials`,
//! `iam:ListSigningCertificates` (the user's other credentials: a missing permission is
//! reported as "unverified", never blocks), and for a user at both policy quotas
//! `iam:CreateGroup`, `iam:PutGroupPolicy`, `iam:AddUserToGroup`,
//! `iam:RemoveUserFromGroup` on group `cordon-quarantine`; for a session cut-off at the
//! inline-size quota `iam:CreatePolicy`, `iam:GetPolicyVersion` and `iam:DeletePolicy` on
//! `policy/cordon/cordon-revoke-sessions-*` (a customer-managed policy of the plan, attached
//! instead, removed by restore), and at the attachment quota too (a user)
//! `iam:{Create,Get,Delete}Group`, `iam:{Put,Get,Delete}GroupPolicy`,
//! `iam:AddUserToGroup` and `iam:RemoveUserFromGroup` on
//! `group/cordon/cordon-revoke-sessions-*` (a group of the plan holding the cut-off, which
//! the user joins; restore takes the user out and deletes the emptied group);
//! `cloudtrail:LookupEvents`, after containment, for what the
//! leaked key did (`activity.rs`; a missing permission is reported, never blocks).

mod actions;
mod activity;
mod client;
mod clock;
mod config;
mod error;
mod identify;
mod policy;
mod snapshot;

use async_trait::async_trait;
use aws_config::SdkConfig;
use cordon_connector::{
    Action, Connector, ConnectorError, Outcome, Provider, Secret, StepContext, TargetState,
    Verification,
};
use tokio::sync::OnceCell;

pub use actions::{
    CONTROL_LOGIN_PROFILE, CONTROL_MANAGED_V3, CONTROL_QUARANTINE, CONTROL_REVOKE_SESSIONS,
};
pub use activity::{door_of, ActivityEvent, Door, KeyActivity};
pub use client::{AccountClients, LeakedKeyClient};
pub use config::{AwsConfig, QuarantineMode};
pub use identify::{
    contain_steps_for_key, identity_center_advice, is_identity_center_role, key_kind,
    restore_step_for, ContainOptions, KeyIdentity, KeyKind, KeyLastUsed, SCAN_MIN_KEYS,
};
pub use policy::{
    AWS_DENY_ALL_POLICY_ARN, MANAGED_QUARANTINE_POLICY_ARN, QUARANTINE_GROUP_NAME,
    QUARANTINE_POLICY_NAME, REVOKE_SESSIONS_MANAGED_PREFIX, REVOKE_SESSIONS_POLICY_NAME,
};

/// The AWS connector. Cheap to share (`Arc`) across the engine's concurrent steps.
pub struct AwsConnector {
    config: AwsConfig,
    base: SdkConfig,
    base_sts: aws_sdk_sts::Client,
    /// The account of cordon's own credentials (`sts:GetCallerIdentity`), read once.
    own_account: OnceCell<String>,
    /// Clients of the credentials' own account, built once.
    own_clients: OnceCell<AccountClients>,
    accounts: client::AccountCache,
    /// AWS's clock per account, for session cut-offs (`clock.rs`).
    clock: clock::Offsets,
    /// Reads of a user's access keys in flight, shared by the kills of that user's keys
    /// that start while one is under way (`snapshot::KeyLists`).
    key_lists: snapshot::KeyLists,
    /// Read-backs of a user's access keys after their kills, one read for the keys whose
    /// changes returned before it was sent (`snapshot::ReadBacks`).
    read_backs: snapshot::ReadBacks,
    /// How IAM answered identification, until a run takes it (`identify::EarlyAnswers`).
    early_answers: identify::EarlyAnswers,
}

impl std::fmt::Debug for AwsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsConnector")
            .field("config", &self.config)
            .field("own_account", &self.own_account.get())
            .finish_non_exhaustive()
    }
}

impl AwsConnector {
    /// A connector using the SDK's default credential chain. Makes no call yet.
    pub async fn new(config: AwsConfig) -> Result<AwsConnector, ConnectorError> {
        // The chain is only consulted at the first call: missing credentials surface
        // there as a permanent error that says how to provide them.
        let base = client::base_sdk_config(&config, None).await;
        Ok(Self::from_sdk(config, base))
    }

    /// A connector signing with an explicit key pair (tests, or a runbook that hands
    /// cordon a dedicated responder key). The secret is not logged or formatted.
    pub async fn with_static_credentials(
        config: AwsConfig,
        key_id: &str,
        secret: &Secret,
    ) -> Result<AwsConnector, ConnectorError> {
        let creds = client::static_credentials(key_id, secret, None, "cordon-static");
        let base = client::base_sdk_config(&config, Some(creds)).await;
        Ok(Self::from_sdk(config, base))
    }

    fn from_sdk(config: AwsConfig, base: SdkConfig) -> AwsConnector {
        AwsConnector {
            base_sts: aws_sdk_sts::Client::new(&base),
            config,
            base,
            own_account: OnceCell::new(),
            own_clients: OnceCell::new(),
            accounts: client::AccountCache::new(),
            clock: clock::Offsets::default(),
            key_lists: snapshot::KeyLists::default(),
            read_backs: snapshot::ReadBacks::default(),
            early_answers: identify::EarlyAnswers::default(),
        }
    }

    pub(crate) fn key_lists(&self) -> &snapshot::KeyLists {
        &self.key_lists
    }

    pub(crate) fn read_backs(&self) -> &snapshot::ReadBacks {
        &self.read_backs
    }

    pub fn config(&self) -> &AwsConfig {
        &self.config
    }

    /// The same connector reading the host's time from `time_source` (the SDK signs with
    /// it too). Tests inject a skewed clock this way; session cut-offs must not move with
    /// it (they come from AWS's `Date`, see `clock.rs`).
    pub fn with_time_source(self, time_source: aws_smithy_async::time::SharedTimeSource) -> Self {
        let base = self.base.to_builder().time_source(time_source).build();
        Self::from_sdk(self.config, base)
    }

    /// AWS's time now for the account of `c` (a cached offset from the host's clock, see
    /// `clock::Offsets`).
    pub(crate) async fn aws_now(
        &self,
        c: &AccountClients,
    ) -> Result<(aws_smithy_types::DateTime, clock::TimeSource), ConnectorError> {
        self.clock.aws_now(c, || self.local_now()).await
    }

    /// The host's time as the SDK sees it.
    pub(crate) fn local_now(&self) -> std::time::SystemTime {
        self.base
            .time_source()
            .map_or_else(std::time::SystemTime::now, |t| t.now())
    }

    /// The account of cordon's own credentials.
    pub async fn own_account(&self) -> Result<String, ConnectorError> {
        self.own_account
            .get_or_try_init(|| async {
                let me = self
                    .base_sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| error::classify("sts:GetCallerIdentity", &e))?;
                me.account().map(str::to_owned).ok_or_else(|| {
                    ConnectorError::permanent("`sts:GetCallerIdentity` returned no account")
                })
            })
            .await
            .cloned()
    }

    /// Clients acting in `account` (`None`: the credentials' own account). Another account
    /// is reached by assuming the configured role there.
    pub async fn clients_for(
        &self,
        account: Option<&str>,
    ) -> Result<AccountClients, ConnectorError> {
        let own = self.own_account().await?;
        let account = match account {
            Some(a) if a != own => a,
            _ => {
                let c = self
                    .own_clients
                    .get_or_init(|| async { client::base_clients(own, &self.base) })
                    .await;
                return Ok(c.clone());
            }
        };
        let role_arn = self.config.role_arn_for(account).ok_or_else(|| {
            ConnectorError::permanent(format!(
                "the target is in account `{account}` but cordon's credentials are for `{own}`: \
                 set CORDON_AWS_ROLE_ARN_TEMPLATE (like `arn:aws:iam::{{account}}:role/cordon-responder`) \
                 or run with credentials of that account"
            ))
        })?;
        self.accounts
            .get_or_assume(
                &self.base,
                &self.base_sts,
                account,
                &role_arn,
                &self.config.session_name,
            )
            .await
    }

    /// Clients signed with a leaked credential (for verification). The secret goes only
    /// into the SDK's request signer; `Debug` of the result shows the key id alone.
    pub fn leaked_key_client(
        &self,
        key_id: &str,
        secret: &Secret,
        session_token: Option<&Secret>,
    ) -> LeakedKeyClient {
        client::leaked_key_client(&self.base, key_id, secret, session_token)
    }
}

#[async_trait]
impl Connector for AwsConnector {
    fn provider(&self) -> Provider {
        Provider::Aws
    }

    fn take_answers(&self, account: Option<&str>) -> cordon_connector::Answers {
        match account.or(self.own_account.get().map(String::as_str)) {
            Some(a) => self.early_answers.take(a),
            None => Default::default(),
        }
    }

    async fn describe(&self, ctx: &StepContext<'_>) -> Result<TargetState, ConnectorError> {
        check_action(ctx.step.action)?;
        self.describe_step(ctx, actions::Purpose::Evidence).await
    }

    async fn execute(&self, ctx: &StepContext<'_>) -> Result<Outcome, ConnectorError> {
        check_action(ctx.step.action)?;
        self.execute_step(ctx).await
    }

    async fn verify(&self, ctx: &StepContext<'_>) -> Result<Verification, ConnectorError> {
        check_action(ctx.step.action)?;
        self.verify_step(ctx).await
    }
}

fn check_action(action: Action) -> Result<(), ConnectorError> {
    if action.provider() == Provider::Aws {
        Ok(())
    } else {
        Err(actions::unsupported(action))
    }
}
