use base64::Engine as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// A raw credential.
///
/// The only way to read the value is [`Secret::expose`], so every place that
/// handles the raw bytes is one `grep expose` away. `Debug` is redacted, there
/// is no `Display`, no `Serialize` and no `Clone` (a copy is one more place to
/// zero), and the buffer is zeroed on drop.
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The raw value. Call sites must not log, format or persist it.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// base64(SHA-256(secret)): the value GitHub shows as `hashed_token` in its
    /// audit log, and the only form of a secret that cordon writes anywhere.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.expose().as_bytes())
    }

    /// An explicit duplicate, for the rare place that must hand a secret to two
    /// owners (each copy is zeroed on its own drop).
    pub fn duplicate(&self) -> Secret {
        Secret::new(self.expose().to_owned())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<redacted sha256:{}>)", &self.fingerprint()[..8])
    }
}

/// base64(SHA-256(bytes)), standard alphabet with padding (GitHub's `hashed_token`).
pub fn fingerprint(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("ghp_canaryCANARYcanaryCANARYcanary000000");
        let shown = format!("{s:?}");
        assert!(!shown.contains("canary"), "{shown}");
        assert!(shown.starts_with("Secret(<redacted"));
    }

    #[test]
    fn fingerprint_matches_github_hashed_token_format() {
        // echo -n abc | sha256sum | xxd -r -p | base64
        assert_eq!(
            fingerprint(b"abc"),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }
}
