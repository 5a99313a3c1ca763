//! Building SDK clients: cordon's own (default credential chain or explicit), one per
//! target account (assuming the configured responder role), and a client signed with a
//! leaked key for verification.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use cordon_connector::{ConnectorError, Secret};
use tokio::sync::Mutex;

use crate::config::AwsConfig;
use crate::error::classify;

/// The IAM and STS clients for one account.
#[derive(Clone, Debug)]
pub struct AccountClients {
    pub account: String,
    pub iam: aws_sdk_iam::Client,
    pub sts: aws_sdk_sts::Client,
    /// The account's configuration (credentials, endpoint), for clients made on demand.
    sdk: SdkConfig,
}

impl AccountClients {
    fn from_sdk(account: String, sdk: &SdkConfig) -> Self {
        AccountClients {
            account,
            iam: aws_sdk_iam::Client::new(sdk),
            sts: aws_sdk_sts::Client::new(sdk),
            sdk: sdk.clone(),
        }
    }

    /// A CloudTrail client of this account in `region` (event history is regional).
    pub(crate) fn cloudtrail_in(&self, region: &str) -> aws_sdk_cloudtrail::Client {
        let sdk = self
            .sdk
            .to_builder()
            .region(Region::new(region.to_owned()))
            .build();
        aws_sdk_cloudtrail::Client::new(&sdk)
    }
}

/// Clients signed with a leaked credential, for verification only. `Debug` shows the key
/// id, never the secret (the SDK's `Credentials` redacts it too).
pub struct LeakedKeyClient {
    pub key_id: String,
    pub iam: aws_sdk_iam::Client,
    pub sts: aws_sdk_sts::Client,
}

impl std::fmt::Debug for LeakedKeyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeakedKeyClient")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The SDK configuration shared by every client: region, endpoint, bounded timeouts, and
/// one attempt per call (the engine owns retries; SDK retries would multiply them).
pub(crate) async fn base_sdk_config(
    config: &AwsConfig,
    credentials: Option<Credentials>,
) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(config.operation_timeout)
                .operation_attempt_timeout(config.operation_timeout)
                .connect_timeout(config.connect_timeout)
                .build(),
        );
    if let Some(url) = &config.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    if let Some(creds) = credentials {
        loader = loader.credentials_provider(creds);
    }
    loader.load().await
}

pub(crate) fn static_credentials(
    key_id: &str,
    secret: &Secret,
    session_token: Option<&Secret>,
    provider_name: &'static str,
) -> Credentials {
    Credentials::new(
        key_id,
        secret.expose(),
        session_token.map(|t| t.expose().to_owned()),
        None,
        provider_name,
    )
}

pub(crate) fn leaked_key_client(
    base: &SdkConfig,
    key_id: &str,
    secret: &Secret,
    session_token: Option<&Secret>,
) -> LeakedKeyClient {
    let creds = static_credentials(key_id, secret, session_token, "cordon-leaked-key");
    let sdk = base
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(creds))
        .build();
    LeakedKeyClient {
        key_id: key_id.to_owned(),
        iam: aws_sdk_iam::Client::new(&sdk),
        sts: aws_sdk_sts::Client::new(&sdk),
    }
}

/// Cached clients per account; cross-account sessions are refreshed before they expire.
pub(crate) struct AccountCache {
    entries: Mutex<HashMap<String, (AccountClients, Option<SystemTime>)>>,
}

impl AccountCache {
    pub(crate) fn new() -> Self {
        AccountCache {
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Clients for `account`, assuming `role_arn` with the base clients when needed.
    pub(crate) async fn get_or_assume(
        &self,
        base: &SdkConfig,
        base_sts: &aws_sdk_sts::Client,
        account: &str,
        role_arn: &str,
        session_name: &str,
    ) -> Result<AccountClients, ConnectorError> {
        let mut entries = self.entries.lock().await;
        if let Some((clients, expiry)) = entries.get(account) {
            let fresh = expiry.is_none_or(|e| {
                e.duration_since(SystemTime::now())
                    .is_ok_and(|left| left > Duration::from_secs(300))
            });
            if fresh {
                return Ok(clients.clone());
            }
        }
        let out = base_sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session_name)
            .send()
            .await
            .map_err(|e| {
                let mut err = classify("sts:AssumeRole", &e);
                err.message = format!(
                    "{} (assuming `{role_arn}` to act in account `{account}`)",
                    err.message
                );
                err
            })?;
        let c = out.credentials().ok_or_else(|| {
            ConnectorError::permanent(format!(
                "`sts:AssumeRole` of `{role_arn}` returned no credentials"
            ))
        })?;
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        let creds = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            expiry,
            "cordon-assume-role",
        );
        let sdk = base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(creds))
            .build();
        let clients = AccountClients::from_sdk(account.to_owned(), &sdk);
        entries.insert(account.to_owned(), (clients.clone(), expiry));
        Ok(clients)
    }
}

pub(crate) fn base_clients(account: String, sdk: &SdkConfig) -> AccountClients {
    AccountClients::from_sdk(account, sdk)
}
