//! Configuration of the AWS connector, from explicit values or the environment.

use std::time::Duration;

use cordon_connector::ConnectorError;
use serde::{Deserialize, Serialize};

/// How a user or role is quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuarantineMode {
    /// An inline policy named [`crate::QUARANTINE_POLICY_NAME`] that denies every action.
    /// Complete and reversible by cordon alone; the default.
    InlineDeny,
    /// Attach AWS's managed `AWSCompromisedKeyQuarantineV3` (what AWS itself attaches to a
    /// user whose key it found in public). It denies a list of high-risk actions, not all.
    ManagedV3,
}

impl QuarantineMode {
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineMode::InlineDeny => "inline-deny",
            QuarantineMode::ManagedV3 => "managed-v3",
        }
    }

    pub fn parse(value: &str) -> Result<QuarantineMode, ConnectorError> {
        match value {
            "inline-deny" => Ok(QuarantineMode::InlineDeny),
            "managed-v3" => Ok(QuarantineMode::ManagedV3),
            other => Err(ConnectorError::permanent(format!(
                "unknown quarantine mode `{other}`: use `inline-deny` or `managed-v3`"
            ))),
        }
    }
}

/// Where and how the connector talks to AWS. Credentials come from the SDK's default
/// chain (environment, profiles, SSO, container and instance roles) unless the
/// connector is built with [`crate::AwsConnector::with_static_credentials`].
#[derive(Debug, Clone, PartialEq)]
pub struct AwsConfig {
    /// Send IAM and STS calls here instead of AWS (a test peer, a VPC endpoint).
    pub endpoint_url: Option<String>,
    pub region: String,
    /// Role to assume in an account other than the credentials' own, with `{account}`
    /// standing for the account id: `arn:aws:iam::{account}:role/cordon-responder`.
    pub role_arn_template: Option<String>,
    /// Default quarantine mode; a step's `quarantine` param overrides it.
    pub quarantine_mode: QuarantineMode,
    /// Bound on one call, from sending to the parsed response. A call that runs past it
    /// is reported `Ambiguous`: it may have been applied.
    pub operation_timeout: Duration,
    /// Bound on opening the connection (nothing was sent yet: `Retryable`).
    pub connect_timeout: Duration,
    /// `RoleSessionName` of cross-account sessions: shows in the target account's
    /// CloudTrail.
    pub session_name: String,
    /// Added to AWS's time (the `Date` of a response) to make a session cut-off: sessions
    /// issued up to this long after cordon read the time are refused too. It covers the
    /// `Date` header's whole-second truncation and the seconds until IAM applies the new
    /// policy everywhere (IAM is eventually consistent); a legitimate session minted in
    /// that window is refused once and simply minted again.
    pub cutoff_margin: Duration,
    /// How long verification keeps probing a credential that still works after its
    /// containment (IAM changes take time to propagate) before it reports "not yet dead".
    pub verify_deadline: Duration,
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            endpoint_url: None,
            region: "us-east-1".to_owned(),
            role_arn_template: None,
            quarantine_mode: QuarantineMode::InlineDeny,
            operation_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            session_name: "cordon".to_owned(),
            cutoff_margin: Duration::from_secs(30),
            verify_deadline: Duration::from_secs(60),
        }
    }
}

impl AwsConfig {
    /// Reads `CORDON_AWS_ENDPOINT_URL`, `AWS_REGION` / `AWS_DEFAULT_REGION` (default
    /// `us-east-1`), `CORDON_AWS_ROLE_ARN_TEMPLATE`, `CORDON_AWS_QUARANTINE`
    /// (`inline-deny` | `managed-v3`), `CORDON_AWS_TIMEOUT_SECS`,
    /// `CORDON_AWS_CUTOFF_MARGIN_SECS` and `CORDON_AWS_VERIFY_DEADLINE_SECS`.
    pub fn from_env() -> Result<AwsConfig, ConnectorError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`AwsConfig::from_env`] over any source of variables (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<AwsConfig, ConnectorError> {
        let non_empty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mut config = AwsConfig {
            endpoint_url: non_empty("CORDON_AWS_ENDPOINT_URL"),
            ..AwsConfig::default()
        };
        if let Some(region) = non_empty("AWS_REGION").or_else(|| non_empty("AWS_DEFAULT_REGION")) {
            config.region = region;
        }
        if let Some(template) = non_empty("CORDON_AWS_ROLE_ARN_TEMPLATE") {
            if !template.contains("{account}") {
                return Err(ConnectorError::permanent(format!(
                    "CORDON_AWS_ROLE_ARN_TEMPLATE `{template}` has no `{{account}}` placeholder: \
                     write it like `arn:aws:iam::{{account}}:role/cordon-responder`"
                )));
            }
            config.role_arn_template = Some(template);
        }
        if let Some(mode) = non_empty("CORDON_AWS_QUARANTINE") {
            config.quarantine_mode = QuarantineMode::parse(mode.trim())?;
        }
        if let Some(secs) = non_empty("CORDON_AWS_TIMEOUT_SECS") {
            let secs: u64 = secs.trim().parse().map_err(|_| {
                ConnectorError::permanent(format!(
                    "CORDON_AWS_TIMEOUT_SECS `{secs}` is not a whole number of seconds"
                ))
            })?;
            config.operation_timeout = Duration::from_secs(secs.max(1));
        }
        if let Some(secs) = non_empty("CORDON_AWS_VERIFY_DEADLINE_SECS") {
            let secs: u64 = secs.trim().parse().map_err(|_| {
                ConnectorError::permanent(format!(
                    "CORDON_AWS_VERIFY_DEADLINE_SECS `{secs}` is not a whole number of seconds"
                ))
            })?;
            config.verify_deadline = Duration::from_secs(secs);
        }
        if let Some(secs) = non_empty("CORDON_AWS_CUTOFF_MARGIN_SECS") {
            let secs: u64 = secs.trim().parse().map_err(|_| {
                ConnectorError::permanent(format!(
                    "CORDON_AWS_CUTOFF_MARGIN_SECS `{secs}` is not a whole number of seconds"
                ))
            })?;
            config.cutoff_margin = Duration::from_secs(secs);
        }
        Ok(config)
    }

    /// The role ARN to assume in `account`, when a template is configured.
    pub fn role_arn_for(&self, account: &str) -> Option<String> {
        self.role_arn_template
            .as_ref()
            .map(|t| t.replace("{account}", account))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_and_overrides() {
        let c = AwsConfig::from_lookup(lookup(&[])).unwrap();
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.endpoint_url, None);
        let c = AwsConfig::from_lookup(lookup(&[
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("CORDON_AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            (
                "CORDON_AWS_ROLE_ARN_TEMPLATE",
                "arn:aws:iam::{account}:role/r",
            ),
            ("CORDON_AWS_QUARANTINE", "managed-v3"),
        ]))
        .unwrap();
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.quarantine_mode, QuarantineMode::ManagedV3);
        assert_eq!(
            c.role_arn_for("111122223333").as_deref(),
            Some("arn:aws:iam::111122223333:role/r")
        );
        let c = AwsConfig::from_lookup(lookup(&[
            ("AWS_REGION", "eu-central-1"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ]))
        .unwrap();
        assert_eq!(c.region, "eu-central-1");
    }

    #[test]
    fn bad_values_say_what_to_do() {
        let e = AwsConfig::from_lookup(lookup(&[("CORDON_AWS_ROLE_ARN_TEMPLATE", "arn:x")]))
            .unwrap_err();
        assert!(e.message.contains("{account}"), "{e}");
        let e = AwsConfig::from_lookup(lookup(&[("CORDON_AWS_QUARANTINE", "nuke")])).unwrap_err();
        assert!(e.message.contains("`nuke`"), "{e}");
    }
}
