//! Who a leaked access key belongs to, and the plan steps that contain it.

use std::collections::BTreeMap;

use cordon_connector::{Action, ConnectorError, ErrorClass, PlanStep, Provider, Secret, Target};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::actions::{
    CONTROL_LOGIN_PROFILE, CONTROL_MANAGED_V3, CONTROL_QUARANTINE, CONTROL_REVOKE_SESSIONS,
};
use crate::config::QuarantineMode;
use crate::error::classify;
use crate::snapshot::{access_key_metadata, key_owner};
use crate::AwsConnector;

// The key-id shape check lives in the shared model, so that code that only
// parses (webhooks, reports, the fuzz targets) needs no AWS SDK.
pub use cordon_connector::aws_key::{key_kind, KeyKind};

/// What IAM says about the key's last use: kept as evidence of what the key reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLastUsed {
    /// RFC 3339; `None` when the key was never used.
    pub date: Option<String>,
    pub service: Option<String>,
    pub region: Option<String>,
}

/// The result of identifying an access key id. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyIdentity {
    pub key_id: String,
    pub kind: KeyKind,
    /// The account that owns the key (`sts:GetAccessKeyInfo`).
    pub account: String,
    /// The IAM user of a long-term key.
    pub user: Option<String>,
    /// The role of a session credential, when known (see
    /// [`AwsConnector::identify_session`]).
    pub role: Option<String>,
    pub last_used: Option<KeyLastUsed>,
    /// A session credential's own name for its principal, when the session token named it
    /// (`sts:GetCallerIdentity` signed with the session): the role session name, or
    /// the federated user's name for a `GetFederationToken` session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
    /// What minted a session credential, when the session token told: `assumed-role`,
    /// `user` (`GetSessionToken`: the session belongs to IAM user `user`) or
    /// `federated-user` (`GetFederationToken`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_kind: Option<String>,
}

/// IAM Identity Center (SSO) creates these roles and forbids editing them: a deny put on
/// one is refused (`UnmodifiableEntity`). ContainIAMPrincipal contains the Identity
/// Center user instead.
pub fn is_identity_center_role(role: &str) -> bool {
    role.starts_with("AWSReservedSSO_")
}

impl KeyIdentity {
    /// `user `alice` in 123456789012`, `session credentials of role `x` in ...`.
    pub fn summary(&self) -> String {
        match (self.kind, &self.user, &self.role) {
            (KeyKind::LongTerm, Some(u), _) => format!("user `{u}` in account {}", self.account),
            (KeyKind::LongTerm, None, _) => format!("an unknown user in account {}", self.account),
            (KeyKind::Session, Some(u), _) if self.session_kind.as_deref() == Some("user") => {
                format!(
                    "session credentials of IAM user `{u}` (GetSessionToken) in account {}",
                    self.account
                )
            }
            (KeyKind::Session, _, _) if self.session_kind.as_deref() == Some("federated-user") => {
                format!(
                    "federation token of federated user `{}` (GetFederationToken, minted by an \
                     IAM user of account {})",
                    self.session_name.as_deref().unwrap_or("?"),
                    self.account
                )
            }
            (KeyKind::Session, _, Some(r)) => {
                format!("session credentials of role `{r}` in account {}", self.account)
            }
            (KeyKind::Session, _, None) => format!(
                "session credentials in account {} (role unknown: find it in CloudTrail by the key id)",
                self.account
            ),
        }
    }
}

impl AwsConnector {
    /// Access key id → account, and for an `AKIA` key the user and its last use.
    ///
    /// Identification runs before there is a plan (so outside the engine's
    /// retries) and only reads: a throttled or unavailable answer is retried
    /// here, up to 6 attempts, waiting 200 ms doubling to at most 20 s, and never
    /// less than the provider's Retry-After.
    pub async fn identify_access_key(&self, key_id: &str) -> Result<KeyIdentity, ConnectorError> {
        retry_read(|| async {
            let r = self.identify_access_key_once(key_id).await;
            // The IAM read was made with the own account's clients.
            if let Some(own) = self.own_account.get() {
                self.early_answers.note(own, &r);
            }
            r
        })
        .await
    }

    /// Identify many access key ids at once, as many requests in flight as
    /// `concurrency`; one result per key, in order.
    ///
    /// One key costs two requests on its own (`sts:GetAccessKeyInfo`, then
    /// `iam:GetAccessKeyLastUsed`). When a leak names many keys of cordon's own account,
    /// listing that account's users and their keys costs fewer (issue 19: 1,000 keys of
    /// 500 users are 2,000 requests one by one, 501 by the list): with at least
    /// [`SCAN_MIN_KEYS`] long-term keys, cordon lists the users (`iam:ListUsers`, 1,000 a
    /// page, stopping once the list is longer than the keys' own cost could justify),
    /// then each user's keys (`iam:ListAccessKeys`) until every key is found. A key found
    /// there is in the account (key ids are unique across AWS) and its user is the one
    /// listing it, exactly what the one-by-one calls would say, without the key's last use
    /// (`last_used` stays `None`; nothing in a plan uses it). Every key the list does not
    /// find (another account's, a session key, one created after the list) and every key
    /// when the list fails or is denied (`iam:ListUsers` is in
    /// `policies/cordon-responder-iam.json`; a role without it still works) is identified
    /// one by one, as [`AwsConnector::identify_access_key`] does.
    pub async fn identify_access_keys(
        &self,
        key_ids: &[String],
        concurrency: usize,
    ) -> Vec<Result<KeyIdentity, ConnectorError>> {
        let concurrency = concurrency.max(1);
        let long_term: Vec<&str> = key_ids
            .iter()
            .map(String::as_str)
            .filter(|k| matches!(key_kind(k), Ok(KeyKind::LongTerm)))
            .collect();
        let (account, found) = if long_term.len() >= SCAN_MIN_KEYS {
            self.scan_own_account(&long_term, concurrency)
                .await
                .unwrap_or_default()
        } else {
            Default::default()
        };
        let sem = tokio::sync::Semaphore::new(concurrency);
        let sem = &sem;
        let (account, found) = (&account, &found);
        futures::future::join_all(key_ids.iter().map(|k| async move {
            if let Some(user) = found.get(k.as_str()) {
                return Ok(KeyIdentity {
                    key_id: k.clone(),
                    kind: KeyKind::LongTerm,
                    account: account.clone(),
                    user: Some(user.clone()),
                    role: None,
                    last_used: None,
                    session_name: None,
                    session_kind: None,
                });
            }
            let _p = sem.acquire().await;
            self.identify_access_key(k).await
        }))
        .await
    }

    /// The users of cordon's own account holding `keys`, by listing the account (see
    /// [`AwsConnector::identify_access_keys`]). `None` when listing costs more than the
    /// keys one by one would or the users cannot be listed; a user whose keys cannot be
    /// read ends the scan with what it found (the caller asks for the rest key by key).
    async fn scan_own_account(
        &self,
        keys: &[&str],
        concurrency: usize,
    ) -> Option<(String, ScanFound)> {
        use futures::StreamExt;
        let c = self.clients_for(None).await.ok()?;
        // One by one, the keys cost two requests each; the scan one per user (and a page
        // of users per 1,000).
        let budget = keys.len().saturating_mul(2);
        let mut users: Vec<String> = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = retry_read(|| {
                self.early_answers.noted(&c.account, async {
                    c.iam
                        .list_users()
                        .max_items(1000)
                        .set_marker(marker.clone())
                        .send()
                        .await
                        .map_err(|e| classify("iam:ListUsers", &e))
                })
            })
            .await
            .ok()?;
            users.extend(page.users().iter().map(|u| u.user_name().to_owned()));
            if users.len() > budget {
                return None;
            }
            match (page.is_truncated(), page.marker()) {
                (true, Some(m)) => marker = Some(m.to_owned()),
                _ => break,
            }
        }
        let mut wanted: std::collections::HashSet<&str> = keys.iter().copied().collect();
        let mut found = ScanFound::new();
        let account = c.account.clone();
        let c = &c;
        let mut lists = futures::stream::iter(users.into_iter().map(|user| async move {
            let keys = retry_read(|| {
                self.early_answers
                    .noted(&c.account, access_key_metadata(c, &user))
            })
            .await;
            (user, keys)
        }))
        .buffer_unordered(concurrency);
        while let Some((user, keys)) = lists.next().await {
            let Ok(keys) = keys else { break };
            for k in keys {
                if let Some(id) = k.access_key_id() {
                    if wanted.remove(id) {
                        found.insert(id.to_owned(), user.clone());
                    }
                }
            }
            if wanted.is_empty() {
                break;
            }
        }
        Some((account, found))
    }

    async fn identify_access_key_once(&self, key_id: &str) -> Result<KeyIdentity, ConnectorError> {
        let kind = key_kind(key_id)?;
        let base = self.clients_for(None).await?;
        let info = base
            .sts
            .get_access_key_info()
            .access_key_id(key_id)
            .send()
            .await
            .map_err(|e| classify("sts:GetAccessKeyInfo", &e))?;
        let account = info.account().map(str::to_owned).ok_or_else(|| {
            ConnectorError::permanent(format!(
                "`sts:GetAccessKeyInfo` named no account for `{key_id}`"
            ))
        })?;
        let mut identity = KeyIdentity {
            key_id: key_id.to_owned(),
            kind,
            account: account.clone(),
            user: None,
            role: None,
            last_used: None,
            session_name: None,
            session_kind: None,
        };
        if kind == KeyKind::Session {
            // IAM keeps no last-use record of session credentials and GetAccessKeyLastUsed
            // rejects them: the role is found from CloudTrail, or with the session token.
            return Ok(identity);
        }
        let clients = self.clients_for(Some(&account)).await?;
        let owner = key_owner(&clients, key_id).await?;
        identity.user = owner.user;
        if let Value::Object(m) = owner.last_used {
            let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
            identity.last_used = Some(KeyLastUsed {
                date: s("date"),
                service: s("service"),
                region: s("region"),
            });
        }
        Ok(identity)
    }

    /// Identify session credentials whose token leaked too: `sts:GetCallerIdentity`
    /// signed with them names the role (this call is allowed even under an explicit deny
    /// and changes nothing). It is a call made with the leaked credential: it shows in
    /// CloudTrail as such.
    pub async fn identify_session(
        &self,
        key_id: &str,
        secret: &Secret,
        session_token: &Secret,
    ) -> Result<KeyIdentity, ConnectorError> {
        let mut identity = self.identify_access_key(key_id).await?;
        let leaked = self.leaked_key_client(key_id, secret, Some(session_token));
        let me = leaked
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| classify("sts:GetCallerIdentity (with the leaked session)", &e))?;
        // Not every ASIA key is a role session: GetSessionToken sessions belong to an IAM
        // user, GetFederationToken sessions to a federated user (minted by an IAM user).
        //   arn:aws:sts::123456789012:assumed-role/ROLE/SESSION
        //   arn:aws:iam::123456789012:user/PATH/NAME
        //   arn:aws:sts::123456789012:federated-user/NAME
        let arn = me.arn().unwrap_or_default();
        let resource = arn.splitn(6, ':').nth(5).unwrap_or_default();
        if let Some(rest) = resource.strip_prefix("assumed-role/") {
            let mut parts = rest.splitn(2, '/');
            identity.role = parts.next().map(str::to_owned);
            identity.session_name = parts.next().map(str::to_owned);
            identity.session_kind = Some("assumed-role".into());
        } else if let Some(rest) = resource.strip_prefix("user/") {
            identity.user = rest.rsplit('/').next().map(str::to_owned);
            identity.session_kind = Some("user".into());
        } else if let Some(rest) = resource.strip_prefix("federated-user/") {
            identity.session_name = Some(rest.to_owned());
            identity.session_kind = Some("federated-user".into());
        } else {
            return Err(ConnectorError::permanent(format!(
                "the session `{key_id}` names a principal cordon does not know how to contain \
                 (`{arn}`): contain it by hand"
            )));
        }
        if let Some(acct) = me.account() {
            identity.account = acct.to_owned();
        }
        Ok(identity)
    }
}

/// With this many long-term keys or more, [`AwsConnector::identify_access_keys`] tries
/// listing cordon's own account before asking key by key.
pub const SCAN_MIN_KEYS: usize = 16;

/// Keys found by listing cordon's own account: key id → user.
type ScanFound = std::collections::HashMap<String, String>;

/// How IAM answered the reads identification made, per account, until the engine takes
/// them ([`cordon_connector::Connector::take_answers`]): the run that follows starts its
/// adaptive rate from what IAM has just shown it accepts (issue 19: 1,000 keys identified
/// by listing the account are 501 answers in about two seconds; from nothing, the rate
/// takes two more seconds of the kills to climb back to that pace). Answers older than
/// [`ANSWERS_FRESH`] are not handed over: a plan applied later (after approvals) starts
/// from the safe default again.
#[derive(Default)]
pub(crate) struct EarlyAnswers(
    std::sync::Mutex<BTreeMap<String, (cordon_connector::Answers, std::time::Instant)>>,
);

/// How long identification's answers say something about the provider's pace now.
pub const ANSWERS_FRESH: std::time::Duration = std::time::Duration::from_secs(60);

impl EarlyAnswers {
    fn table(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<String, (cordon_connector::Answers, std::time::Instant)>>
    {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One answer of IAM in `account`: throttled as the engine counts it (anything but a
    /// success or a refusal for good).
    pub(crate) fn note<T>(&self, account: &str, r: &Result<T, ConnectorError>) {
        let throttled = matches!(r, Err(e) if e.class != ErrorClass::Permanent);
        let mut t = self.table();
        let (a, at) = t
            .entry(account.to_owned())
            .or_insert_with(|| (Default::default(), std::time::Instant::now()));
        a.answered = a.answered.saturating_add(1);
        if throttled {
            a.throttled = a.throttled.saturating_add(1);
        }
        *at = std::time::Instant::now();
    }

    /// `read`'s result, noted as one answer of IAM in `account`.
    pub(crate) async fn noted<T>(
        &self,
        account: &str,
        read: impl std::future::Future<Output = Result<T, ConnectorError>>,
    ) -> Result<T, ConnectorError> {
        let r = read.await;
        self.note(account, &r);
        r
    }

    /// The answers noted for `account` within [`ANSWERS_FRESH`] of the last one, once.
    pub(crate) fn take(&self, account: &str) -> cordon_connector::Answers {
        match self.table().remove(account) {
            Some((a, at)) if at.elapsed() <= ANSWERS_FRESH => a,
            _ => Default::default(),
        }
    }
}

/// A read made before there is a plan (so outside the engine's retries): a throttled or
/// unavailable answer is retried, up to 6 attempts, waiting 200 ms doubling to at most
/// 20 s, and never less than the provider's Retry-After.
async fn retry_read<T, F, Fut>(mut read: F) -> Result<T, ConnectorError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ConnectorError>>,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match read().await {
            Err(e) if e.class == ErrorClass::Retryable && attempt < 6 => {
                let backoff = std::time::Duration::from_millis(200 << (attempt - 1).min(7))
                    .min(std::time::Duration::from_secs(20));
                tokio::time::sleep(e.retry_after.map_or(backoff, |ra| ra.max(backoff))).await;
            }
            r => return r,
        }
    }
}

/// Choices for [`contain_steps_for_key`].
#[derive(Debug, Clone, Default)]
pub struct ContainOptions {
    /// Also quarantine the key's user (deny-all, console password deleted). Default off
    /// here; the CLI decides (`--quarantine-user`).
    pub quarantine_user: bool,
    /// `None`: the connector's configured default.
    pub quarantine_mode: Option<QuarantineMode>,
    /// The role of a session credential when identification could not name it.
    pub role: Option<String>,
    /// Fingerprint of the leaked secret access key, so verify can prove it dead.
    pub secret_fingerprint: Option<String>,
}

/// The steps that contain a leaked key, numbered `s1`, `s2`, ...:
/// * `AKIA`: disable the key; with `quarantine_user`, quarantine its user too; then end
///   the sessions the key minted (`aws:revoke-user-sessions`);
/// * `ASIA`: revoke the role's sessions (a session credential cannot be disabled).
pub fn contain_steps_for_key(
    identity: &KeyIdentity,
    options: &ContainOptions,
) -> Result<Vec<PlanStep>, ConnectorError> {
    let mut steps = Vec::new();
    let target = |kind: &str, id: &str| {
        let mut t = Target::new(Provider::Aws, kind, id);
        t.account = Some(identity.account.clone());
        t
    };
    let mut push = |action: Action, target: Target, params: BTreeMap<String, Value>| {
        steps.push(PlanStep {
            id: format!("s{}", steps.len() + 1),
            action,
            target,
            secret: options.secret_fingerprint.clone(),
            params,
        });
    };
    match identity.kind {
        KeyKind::LongTerm => {
            let user = identity.user.clone().ok_or_else(|| {
                ConnectorError::permanent(format!(
                    "access key `{}` has no known user: identify it first",
                    identity.key_id
                ))
            })?;
            let mut p = BTreeMap::new();
            p.insert("user".to_owned(), Value::String(user.clone()));
            if options.quarantine_user {
                // The key's kill waits for the key's own state only: the user's other
                // credentials are the evidence of its quarantine, planned below.
                p.insert(
                    "credentials".to_owned(),
                    Value::String("access-keys".to_owned()),
                );
            }
            push(
                Action::AwsDisableAccessKey,
                target("access-key", &identity.key_id),
                p,
            );
            if options.quarantine_user {
                let mut p = BTreeMap::new();
                p.insert(
                    "access_key_id".to_owned(),
                    Value::String(identity.key_id.clone()),
                );
                if let Some(mode) = options.quarantine_mode {
                    p.insert(
                        "quarantine".to_owned(),
                        Value::String(mode.as_str().to_owned()),
                    );
                }
                push(Action::AwsQuarantineUser, target("user", &user), p);
            }
            // A disabled key does not end the sessions it minted (GetSessionToken,
            // GetFederationToken: up to 36 hours): deny the user's sessions issued before
            // now. It needs no secret: verify reads the cut-off back.
            push(
                Action::AwsRevokeUserSessions,
                target("user", &user),
                BTreeMap::new(),
            );
            if let Some(last) = steps.last_mut() {
                last.secret = None;
            }
        }
        KeyKind::Session if identity.session_kind.as_deref() == Some("user") => {
            // A GetSessionToken session: end the user's sessions issued before now. The
            // user's long-term key that minted it is still alive: it is named below.
            let user = identity.user.clone().ok_or_else(|| {
                ConnectorError::permanent(format!(
                    "`{}` is a user session but its user is unknown",
                    identity.key_id
                ))
            })?;
            push(
                Action::AwsRevokeUserSessions,
                target("user", &user),
                BTreeMap::new(),
            );
            if let Some(last) = steps.last_mut() {
                last.secret = None;
            }
        }
        KeyKind::Session if identity.session_kind.as_deref() == Some("federated-user") => {
            return Err(ConnectorError::permanent(format!(
                "`{}` is a federation token (federated user `{}`): it acts with the \
                 permissions of the IAM user that called GetFederationToken, which the token \
                 does not name. Find that user in CloudTrail (`GetFederationToken` events in \
                 account {}), then run `cordon revoke aws-key` on the user's key: that ends \
                 the sessions it minted",
                identity.key_id,
                identity.session_name.as_deref().unwrap_or("?"),
                identity.account
            )));
        }
        KeyKind::Session => {
            let role = options
                .role
                .clone()
                .or_else(|| identity.role.clone())
                .ok_or_else(|| {
                    ConnectorError::permanent(format!(
                        "`{}` is a session credential of account {} and cordon cannot tell \
                         whose: a role's (AssumeRole), a user's (GetSessionToken) or a \
                         federated user's. Supply its session token (`--session-token-env \
                         VAR` with `--secret-env`) so the session names itself, or name the \
                         role (`--role NAME`, found in CloudTrail by the key id)",
                        identity.key_id, identity.account
                    ))
                })?;
            if is_identity_center_role(&role) {
                return Err(ConnectorError::permanent(identity_center_advice(
                    &role,
                    identity.session_name.as_deref(),
                )));
            }
            push(
                Action::AwsRevokeRoleSessions,
                target("role", &role),
                BTreeMap::new(),
            );
        }
    }
    Ok(steps)
}

/// What to do about a session of an Identity Center role, which cordon cannot edit.
pub fn identity_center_advice(role: &str, session_name: Option<&str>) -> String {
    let who = session_name
        .map(|u| format!("Identity Center user `{u}`"))
        .unwrap_or_else(|| "the Identity Center user (the session name in CloudTrail)".into());
    format!(
        "role `{role}` is managed by IAM Identity Center and cannot be edited (AWS refuses a \
         deny put on it): contain {who} instead: in the IAM Identity Center console disable the \
         user and revoke its active sessions, or `aws identitystore` / `aws sso-admin` to \
         remove its permission-set assignments; sessions already issued end when they expire \
         (the permission set's session duration)"
    )
}

/// The step that undoes `step` from its evidence snapshot (`evidence_hash` names the
/// snapshot in the evidence store). `None` for a step that is not an AWS containment.
/// A restored access key stays disabled until the caller adds `reactivate_key: true`.
pub fn restore_step_for(step: &PlanStep, evidence_hash: &str) -> Option<PlanStep> {
    let (action, controls): (Action, &[&str]) = match step.action {
        Action::AwsDisableAccessKey => (Action::AwsRestoreAccessKey, &[]),
        Action::AwsQuarantineUser => (
            Action::AwsRestoreUser,
            &[
                CONTROL_QUARANTINE,
                CONTROL_MANAGED_V3,
                CONTROL_LOGIN_PROFILE,
            ],
        ),
        Action::AwsQuarantineRole => (
            Action::AwsRestoreRole,
            &[
                CONTROL_QUARANTINE,
                CONTROL_MANAGED_V3,
                CONTROL_REVOKE_SESSIONS,
            ],
        ),
        Action::AwsRevokeRoleSessions => (Action::AwsRestoreRole, &[CONTROL_REVOKE_SESSIONS]),
        Action::AwsRevokeUserSessions => (Action::AwsRestoreUser, &[CONTROL_REVOKE_SESSIONS]),
        _ => return None,
    };
    let mut params = step.params.clone();
    params.remove("access_key_id");
    params.insert(
        "evidence_hash".to_owned(),
        Value::String(evidence_hash.to_owned()),
    );
    if !controls.is_empty() {
        params.insert(
            "controls".to_owned(),
            Value::Array(
                controls
                    .iter()
                    .map(|c| Value::String((*c).to_owned()))
                    .collect(),
            ),
        );
    }
    Some(PlanStep {
        id: step.id.clone(),
        action,
        target: step.target.clone(),
        secret: None,
        params,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn key_kinds() {
        assert_eq!(key_kind("AKIAIOSFODNN7EXAMPLE").unwrap(), KeyKind::LongTerm);
        assert_eq!(key_kind("ASIAIOSFODNN7EXAMPLE").unwrap(), KeyKind::Session);
        let e = key_kind("akiaiosfodnn7example").unwrap_err();
        assert!(e.message.contains("`akiaiosfodnn7example`"));
        assert!(key_kind("AIDAIOSFODNN7EXAMPLE").is_err());
    }

    fn identity(kind: KeyKind) -> KeyIdentity {
        KeyIdentity {
            key_id: if kind == KeyKind::LongTerm {
                "AKIAIOSFODNN7EXAMPLE"
            } else {
                "ASIAIOSFODNN7EXAMPLE"
            }
            .into(),
            kind,
            account: "123456789012".into(),
            user: (kind == KeyKind::LongTerm).then(|| "alice".to_owned()),
            role: None,
            last_used: None,
            session_name: None,
            session_kind: None,
        }
    }

    #[test]
    fn steps_for_user_key_and_session() {
        let opts = ContainOptions {
            quarantine_user: true,
            ..Default::default()
        };
        let steps = contain_steps_for_key(&identity(KeyKind::LongTerm), &opts).unwrap();
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[2].action, Action::AwsRevokeUserSessions);
        assert_eq!(steps[2].target.id, "alice");
        assert_eq!(steps[2].secret, None);
        assert_eq!(steps[0].action, Action::AwsDisableAccessKey);
        assert_eq!(steps[0].target.account.as_deref(), Some("123456789012"));
        assert_eq!(steps[1].action, Action::AwsQuarantineUser);
        assert_eq!(steps[1].target.id, "alice");
        assert_eq!(steps[1].id, "s2");

        let err = contain_steps_for_key(&identity(KeyKind::Session), &ContainOptions::default())
            .unwrap_err();
        assert!(err.message.contains("session credential"));
        let opts = ContainOptions {
            role: Some("deployer".into()),
            ..Default::default()
        };
        let steps = contain_steps_for_key(&identity(KeyKind::Session), &opts).unwrap();
        assert_eq!(steps[0].action, Action::AwsRevokeRoleSessions);
        assert_eq!(steps[0].target.id, "deployer");
    }

    #[test]
    fn restore_steps_mirror_contain_steps() {
        let opts = ContainOptions {
            quarantine_user: true,
            ..Default::default()
        };
        let steps = contain_steps_for_key(&identity(KeyKind::LongTerm), &opts).unwrap();
        let r = restore_step_for(&steps[0], "sha256:abc").unwrap();
        assert_eq!(r.action, Action::AwsRestoreAccessKey);
        assert_eq!(r.param_str("evidence_hash"), Some("sha256:abc"));
        assert!(!r.params.contains_key("reactivate_key"));
        let r = restore_step_for(&steps[1], "sha256:def").unwrap();
        assert_eq!(r.action, Action::AwsRestoreUser);
        assert!(!r.params.contains_key("access_key_id"));
        assert!(restore_step_for(&r, "x").is_none());
    }
}
