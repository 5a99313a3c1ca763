use std::path::{Path, PathBuf};
use std::time::Duration;

use cordon_connector::ConnectorError;

/// GitHub's REST API on github.com.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// The revocation API's published limits.
pub const REVOKE_BATCH_LIMIT: usize = 1000;
pub const REVOKE_REQUESTS_PER_HOUR: u32 = 60;

/// How the GitHub connector reaches GitHub and how patient it is.
#[derive(Debug, Clone, PartialEq)]
pub struct GithubConfig {
    /// `https://api.github.com`, or `https://HOST/api/v3` for GitHub Enterprise Server.
    pub api_url: String,
    /// Where the hourly budget of the credential revocation API is kept
    /// (a small JSON file, mode 0600; no secret in it).
    pub budget_file: PathBuf,
    /// Requests an hour the revocation API accepts (GitHub: 60).
    pub revoke_requests_per_hour: u32,
    /// How many times `verify` asks GitHub before it reports `not-verified`.
    pub verify_attempts: u32,
    /// Pause before the second verification attempt; doubled after each
    /// further one (revocation is asynchronous at GitHub).
    pub verify_backoff: Duration,
    /// Whether the leaked token itself may be used to read its owner and scopes
    /// (`GET /user`). The lead passes this from the authority policy: using a
    /// leaked credential is itself an act someone must allow.
    pub allow_probe: bool,
    /// Time limit for one HTTP request.
    pub request_timeout: Duration,
}

impl GithubConfig {
    pub fn new(budget_file: impl Into<PathBuf>) -> Self {
        GithubConfig {
            api_url: DEFAULT_API_URL.to_owned(),
            budget_file: budget_file.into(),
            revoke_requests_per_hour: REVOKE_REQUESTS_PER_HOUR,
            verify_attempts: 6,
            verify_backoff: Duration::from_secs(2),
            allow_probe: false,
            request_timeout: Duration::from_secs(30),
        }
    }

    /// The defaults, with the budget kept in `state_dir` and the API URL from
    /// `CORDON_GITHUB_API_URL` when set.
    pub fn from_env(state_dir: &Path) -> Result<Self, ConnectorError> {
        let mut config = GithubConfig::new(state_dir.join("github-revoke-budget.json"));
        if let Ok(url) = std::env::var("CORDON_GITHUB_API_URL") {
            if !url.trim().is_empty() {
                config.api_url = url.trim().to_owned();
            }
        }
        config.validate()?;
        Ok(config)
    }

    pub fn with_api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = url.into();
        self
    }

    pub fn with_probe(mut self, allow: bool) -> Self {
        self.allow_probe = allow;
        self
    }

    pub fn with_verify(mut self, attempts: u32, backoff: Duration) -> Self {
        self.verify_attempts = attempts;
        self.verify_backoff = backoff;
        self
    }

    pub fn validate(&self) -> Result<(), ConnectorError> {
        let url = self.api_url.as_str();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ConnectorError::permanent(format!(
                "github api url `{url}` is not an http(s) url; set CORDON_GITHUB_API_URL to \
                 e.g. `https://github.example.com/api/v3`"
            )));
        }
        if self.verify_attempts == 0 {
            return Err(ConnectorError::permanent(
                "verify_attempts must be at least 1",
            ));
        }
        Ok(())
    }
}
