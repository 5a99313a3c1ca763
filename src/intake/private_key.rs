//! Private keys in leaked text: an OpenSSH or PEM block, recognised so that
//! cordon can act on what the key opens (issue 17 items 4 and 5).
//!
//! * Its public half's SSH fingerprint (`SHA256:...`, what `ssh-keygen -lf`
//!   prints and what GitHub lists for a repository's deploy keys) is taken
//!   for every key whose public half can be read: an OpenSSH key (its public
//!   key is stored in the clear, even when the private part is encrypted) and
//!   an unencrypted RSA key in PEM (PKCS#1 `RSA PRIVATE KEY` or PKCS#8
//!   `PRIVATE KEY`).
//! * An RSA key in PEM is also what GitHub hands out as a GitHub App's private
//!   key ("GitHub Apps use RSA private keys in PEM format",
//!   https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/managing-private-keys-for-github-apps).
//!
//! The block itself stays in a [`Secret`]; what is returned beside it is safe
//! to print.

use cordon_connector::Secret;

/// What a private key block is, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateKeyInfo {
    /// `openssh`, `pkcs1` or `pkcs8`.
    pub format: &'static str,
    /// `rsa`, `ssh-ed25519`, ... as far as it could be read.
    pub algorithm: String,
    /// `SHA256:...` of the public half as an SSH key, when it can be read.
    pub ssh_fingerprint: Option<String>,
    /// An unencrypted RSA key in PEM: the format of a GitHub App's private key.
    pub app_key_candidate: bool,
}

/// A private key block found in a text.
pub struct FoundKey {
    /// Byte range of the block in the text.
    pub start: usize,
    pub end: usize,
    pub secret: Secret,
    pub info: Result<PrivateKeyInfo, String>,
}

const BEGIN: &str = "-----BEGIN ";
const TAIL: &str = "PRIVATE KEY-----";

/// Every `-----BEGIN ... PRIVATE KEY-----` ... `-----END ... PRIVATE KEY-----`
/// block in `text`, parsed. A block that does not parse is returned with
/// why (a truncated copy, an encrypted PEM, a key type cordon cannot read).
pub fn find_private_keys(text: &str) -> Vec<FoundKey> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(rel) = text.get(from..).and_then(|t| t.find(BEGIN)) {
        let start = from + rel;
        let Some(label_end) = text[start..]
            .find("-----\n")
            .or_else(|| text[start..].find("-----\r\n"))
            .or_else(|| {
                // A header alone on the last line, or followed by a space.
                text[start + BEGIN.len()..]
                    .find("-----")
                    .map(|i| i + BEGIN.len())
            })
        else {
            break;
        };
        let header = &text[start..start + label_end + 5];
        if !header.ends_with(TAIL) || header.contains('\n') {
            from = start + BEGIN.len();
            continue;
        }
        let label = &header[BEGIN.len()..header.len() - 5];
        let footer = format!("-----END {label}-----");
        let Some(frel) = text[start..].find(&footer) else {
            out.push(FoundKey {
                start,
                end: text.len(),
                secret: Secret::new(&text[start..]),
                info: Err(format!(
                    "a `{label}` block without its END line: a truncated copy"
                )),
            });
            break;
        };
        let end = start + frel + footer.len();
        let block = &text[start..end];
        out.push(FoundKey {
            start,
            end,
            secret: Secret::new(block),
            info: parse(label, block),
        });
        from = end;
    }
    out
}

fn parse(label: &str, block: &str) -> Result<PrivateKeyInfo, String> {
    match label {
        "OPENSSH PRIVATE KEY" => {
            let key = ssh_key::PrivateKey::from_openssh(block)
                .map_err(|_| "an OpenSSH private key block that does not parse".to_owned())?;
            Ok(PrivateKeyInfo {
                format: "openssh",
                algorithm: key.algorithm().as_str().to_owned(),
                ssh_fingerprint: Some(
                    key.public_key()
                        .fingerprint(ssh_key::HashAlg::Sha256)
                        .to_string(),
                ),
                app_key_candidate: false,
            })
        }
        "RSA PRIVATE KEY" | "PRIVATE KEY" => {
            use rsa::pkcs1::DecodeRsaPrivateKey as _;
            use rsa::pkcs8::DecodePrivateKey as _;
            if block.contains("Proc-Type: 4,ENCRYPTED") {
                return Err("an encrypted PEM RSA key: its public half cannot be read without the passphrase".into());
            }
            let (format, key) = if label == "RSA PRIVATE KEY" {
                ("pkcs1", rsa::RsaPrivateKey::from_pkcs1_pem(block).ok())
            } else {
                ("pkcs8", rsa::RsaPrivateKey::from_pkcs8_pem(block).ok())
            };
            let key = key.ok_or_else(|| {
                if format == "pkcs8" {
                    "a PKCS#8 private key that is not an RSA key cordon can read".to_owned()
                } else {
                    "an RSA private key block that does not parse".to_owned()
                }
            })?;
            let public = ssh_key::public::RsaPublicKey::try_from(key.to_public_key())
                .map_err(|_| "an RSA key whose public half is not a valid SSH key".to_owned())?;
            let fingerprint = ssh_key::public::KeyData::Rsa(public)
                .fingerprint(ssh_key::HashAlg::Sha256)
                .to_string();
            Ok(PrivateKeyInfo {
                format,
                algorithm: "rsa".into(),
                ssh_fingerprint: Some(fingerprint),
                app_key_candidate: true,
            })
        }
        "ENCRYPTED PRIVATE KEY" => Err(
            "an encrypted PKCS#8 key: its public half cannot be read without the passphrase".into(),
        ),
        other => Err(format!(
            "a `{other}` block: not a key type cordon can act on"
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn rsa_pem() -> String {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        let mut rng = rand::thread_rng();
        let key = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap();
        key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
            .unwrap()
            .to_string()
    }

    #[test]
    fn an_openssh_key_gives_the_fingerprint_ssh_keygen_prints() {
        let mut rng = rand::thread_rng();
        let key = ssh_key::PrivateKey::random(&mut rng, ssh_key::Algorithm::Ed25519).unwrap();
        let pem = key.to_openssh(ssh_key::LineEnding::LF).unwrap().to_string();
        let want = key
            .public_key()
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string();
        let text = format!("deploy:\n{pem}\nAKIA after\n");
        let found = find_private_keys(&text);
        assert_eq!(found.len(), 1);
        let info = found[0].info.as_ref().unwrap();
        assert_eq!(info.ssh_fingerprint.as_deref(), Some(want.as_str()));
        assert_eq!(info.format, "openssh");
        assert!(!info.app_key_candidate);
        assert_eq!(found[0].secret.expose(), pem.trim_end());
    }

    #[test]
    fn an_rsa_pem_key_is_an_app_key_candidate_with_its_ssh_fingerprint() {
        let pem = rsa_pem();
        let found = find_private_keys(&pem);
        assert_eq!(found.len(), 1);
        let info = found[0].info.as_ref().unwrap();
        assert!(info.app_key_candidate);
        assert_eq!(info.format, "pkcs1");
        assert!(info
            .ssh_fingerprint
            .as_deref()
            .unwrap()
            .starts_with("SHA256:"));
    }

    #[test]
    fn broken_blocks_say_why_and_never_hold_back_what_follows() {
        let pem = rsa_pem();
        let cut = &pem[..pem.len() / 2];
        let found = find_private_keys(cut);
        assert_eq!(found.len(), 1);
        assert!(found[0].info.as_ref().unwrap_err().contains("truncated"));
        let bad = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let found = find_private_keys(&format!("{bad}{pem}"));
        assert_eq!(found.len(), 2);
        assert!(found[0].info.is_err());
        assert!(found[1].info.is_ok());
        // Not a private key: ignored.
        assert!(
            find_private_keys("-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----")
                .is_empty()
        );
        assert!(find_private_keys("-----BEGIN ").is_empty());
    }
}
