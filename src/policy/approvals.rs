//! Proof of who asked and who approved: OpenSSH signatures (SSHSIG) over the
//! plan file's bytes, and automation secrets.
//!
//! A signature is what `ssh-keygen -Y sign -n cordon-plan -f KEY PLANFILE`
//! writes; cordon makes the same ones with [`sign`]. Verification follows
//! `ssh-keygen -Y verify`: the signature's namespace must be `cordon-plan`,
//! its key must be listed in `allowed_signers` for the signer's name, with
//! `cordon-plan` among the line's namespaces, and inside the line's validity
//! window. cordon checks the window twice: at the time the approval was
//! recorded and at the time it is used, so a key whose validity ended (a
//! person who left) stops counting even for approvals recorded earlier.
//!
//! The requester's own signature is the first on the plan and proves the
//! requester; it never counts as an approval. Each person counts once.

use std::path::Path;

use chrono::{DateTime, Utc};
use cordon_connector::Secret;
use serde::Serialize;
use sha2::{Digest, Sha256};
use ssh_key::{HashAlg, LineEnding, PrivateKey, SshSig};
use subtle::ConstantTimeEq;

use super::roster::Member;
use super::signers::{AllowedSigners, SignerEntry};
use super::Policy;
use crate::gate::{Principal, VerifiedApproval};
use crate::plan::{Plan, PrincipalKind};

/// The SSHSIG namespace of plan approvals (`ssh-keygen -Y sign -n cordon-plan`).
pub const NAMESPACE: &str = "cordon-plan";

/// Why a signature or secret does not count. Each variant is one reason, so
/// callers (and tests) can tell them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("not an OpenSSH signature (expected `-----BEGIN SSH SIGNATURE-----`): {0}")]
    Malformed(String),
    #[error("the signature is for namespace `{found}`, not `cordon-plan`: sign with `ssh-keygen -Y sign -n cordon-plan -f KEY PLANFILE`")]
    WrongNamespace { found: String },
    #[error("the signing key {fingerprint} is not in allowed_signers: add the signer's public key to allowed_signers, or sign with a listed key")]
    UnknownSigner { fingerprint: String },
    #[error("the signing key {fingerprint} is not listed in allowed_signers for `{claimed}`")]
    NotListedFor {
        claimed: String,
        fingerprint: String,
    },
    #[error("the key {fingerprint} is listed for several principals ({candidates}): record the approval with the signer's name")]
    AmbiguousSigner {
        fingerprint: String,
        candidates: String,
    },
    #[error("allowed_signers line {line} restricts `{signer}`'s key to other namespaces: add `cordon-plan` to its namespaces=\"...\"")]
    NamespaceNotAllowed { signer: String, line: usize },
    #[error("the signature by `{signer}` does not match this plan's bytes: it was made over a different plan, or the plan changed after signing; sign this plan file")]
    NotThisPlan { signer: String },
    #[error("`{signer}`'s key is not valid yet at {at} (allowed_signers line {line}: {window})")]
    KeyNotYetValid {
        signer: String,
        at: String,
        line: usize,
        window: String,
    },
    #[error("`{signer}`'s key has expired at {at} (allowed_signers line {line}: {window}): the signer needs a current key")]
    KeyExpired {
        signer: String,
        at: String,
        line: usize,
        window: String,
    },
    #[error("the approval by `{signer}` was recorded at {recorded_at}, after now: the clock or the record is wrong")]
    RecordedInFuture { signer: String, recorded_at: String },
    #[error("`{signer}` already approved this plan: each person counts once")]
    DuplicateApproval { signer: String },
    #[error("`{signer}` requested this plan and cannot approve it: a second person must sign")]
    SelfApproval { signer: String },
    #[error("`{signer}` is an automation principal: approvals are a human decision")]
    AutomationApproval { signer: String },
    #[error("the signature is by `{signer}`, but the plan's requester is `{requester}`: the requester proves a plan by signing it first")]
    RequesterMismatch { signer: String, requester: String },
    #[error("the secret presented for `{name}` does not match roster.toml's secret_sha256: check the `{env}` variable")]
    SecretMismatch { name: String, env: String },
    #[error("`{name}` has no secret_sha256 in roster.toml, so a secret proves nothing for it")]
    SecretNotConfigured { name: String },
}

impl ApprovalError {
    /// A stable kebab-case code for JSON output and tests.
    pub fn code(&self) -> &'static str {
        match self {
            ApprovalError::Malformed(_) => "malformed",
            ApprovalError::WrongNamespace { .. } => "wrong-namespace",
            ApprovalError::UnknownSigner { .. } => "unknown-signer",
            ApprovalError::NotListedFor { .. } => "not-listed-for-name",
            ApprovalError::AmbiguousSigner { .. } => "ambiguous-signer",
            ApprovalError::NamespaceNotAllowed { .. } => "namespace-not-allowed",
            ApprovalError::NotThisPlan { .. } => "not-this-plan",
            ApprovalError::KeyNotYetValid { .. } => "key-not-yet-valid",
            ApprovalError::KeyExpired { .. } => "key-expired",
            ApprovalError::RecordedInFuture { .. } => "recorded-in-future",
            ApprovalError::DuplicateApproval { .. } => "duplicate-approval",
            ApprovalError::SelfApproval { .. } => "self-approval",
            ApprovalError::AutomationApproval { .. } => "automation-approval",
            ApprovalError::RequesterMismatch { .. } => "requester-mismatch",
            ApprovalError::SecretMismatch { .. } => "secret-mismatch",
            ApprovalError::SecretNotConfigured { .. } => "secret-not-configured",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot read the private key `{path}`: {reason}")]
    Read { path: String, reason: String },
    #[error("permissions {mode:04o} on `{path}` are too open: a private key must be readable by its owner only (chmod 600 `{path}`)")]
    Permissions { path: String, mode: u32 },
    #[error("the private key `{path}` is encrypted: cordon signs only with unencrypted keys. Sign with `ssh-keygen -Y sign -n cordon-plan -f {path} PLANFILE` (it asks for the passphrase) and record the signature with `cordon approve --import PLANFILE.sig`")]
    Encrypted { path: String },
    #[error("cannot sign with `{path}`: {reason}")]
    Sign { path: String, reason: String },
}

/// Sign plan bytes with an unencrypted OpenSSH private key: an armored SSHSIG
/// (`-----BEGIN SSH SIGNATURE-----`) in namespace `cordon-plan`, hash sha512,
/// byte-compatible with `ssh-keygen -Y sign`.
pub fn sign(plan_bytes: &[u8], key_path: &Path) -> Result<String, SignError> {
    let path = key_path.display().to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(key_path).map_err(|e| SignError::Read {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SignError::Permissions { path, mode });
        }
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(key_path).map_err(|e| {
        SignError::Read {
            path: path.clone(),
            reason: e.to_string(),
        }
    })?);
    let key = PrivateKey::from_openssh(text.as_bytes()).map_err(|e| SignError::Read {
        path: path.clone(),
        reason: format!("not an OpenSSH private key ({e})"),
    })?;
    if key.is_encrypted() {
        return Err(SignError::Encrypted { path });
    }
    let sig = match key.key_data() {
        // ssh-key 0.6's RSA signer builds the private key from (p, p)
        // instead of (p, q) and always fails; sign RSA with the rsa crate.
        ssh_key::private::KeypairData::Rsa(rsa) => sign_rsa(rsa, key.public_key(), plan_bytes),
        _ => key.sign(NAMESPACE, HashAlg::Sha512, plan_bytes),
    }
    .map_err(|e| SignError::Sign {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    sig.to_pem(LineEnding::LF).map_err(|e| SignError::Sign {
        path,
        reason: e.to_string(),
    })
}

/// SSHSIG with an RSA key: rsa-sha2-512 (PKCS#1 v1.5 over SHA-512), as
/// `ssh-keygen -Y sign` makes for RSA keys.
fn sign_rsa(
    k: &ssh_key::private::RsaKeypair,
    public: &ssh_key::PublicKey,
    msg: &[u8],
) -> ssh_key::Result<SshSig> {
    use rsa::signature::{SignatureEncoding, Signer};
    let big = |m: &ssh_key::Mpint| -> ssh_key::Result<rsa::BigUint> {
        m.as_positive_bytes()
            .map(rsa::BigUint::from_bytes_be)
            .ok_or(ssh_key::Error::Crypto)
    };
    let private = rsa::RsaPrivateKey::from_components(
        big(&k.public.n)?,
        big(&k.public.e)?,
        big(&k.private.d)?,
        vec![big(&k.private.p)?, big(&k.private.q)?],
    )
    .map_err(|_| ssh_key::Error::Crypto)?;
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(private);
    let data = SshSig::signed_data(NAMESPACE, HashAlg::Sha512, msg)?;
    let raw = signer.try_sign(&data).map_err(|_| ssh_key::Error::Crypto)?;
    let signature = ssh_key::Signature::new(
        ssh_key::Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        raw.to_vec(),
    )?;
    SshSig::new(
        public.key_data().clone(),
        NAMESPACE,
        HashAlg::Sha512,
        signature,
    )
}

/// A signature as stored next to a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSignature {
    /// The armored SSHSIG.
    pub armored: String,
    /// When cordon recorded it.
    pub recorded_at: DateTime<Utc>,
    /// The name the signer gave (`cordon approve --as NAME`), when the key
    /// alone does not name one principal (wildcard or multi-name lines).
    pub claimed_signer: Option<String>,
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureCheck {
    /// The principal it speaks for.
    pub signer: String,
    /// `SHA256:...` of the key.
    pub fingerprint: String,
    /// The allowed_signers line that matched.
    pub line: usize,
}

/// Verify one armored signature over `plan_bytes` against `signers`. The key
/// must be valid at every instant in `at` (the recording time and now).
pub fn verify_signature(
    signers: &AllowedSigners,
    plan_bytes: &[u8],
    armored: &str,
    claimed: Option<&str>,
    at: &[DateTime<Utc>],
) -> Result<SignatureCheck, ApprovalError> {
    let sig = SshSig::from_pem(armored.trim().as_bytes())
        .map_err(|e| ApprovalError::Malformed(e.to_string()))?;
    if sig.namespace() != NAMESPACE {
        return Err(ApprovalError::WrongNamespace {
            found: sig.namespace().to_owned(),
        });
    }
    let fingerprint = ssh_key::PublicKey::from(sig.public_key().clone())
        .fingerprint(HashAlg::Sha256)
        .to_string();
    let lines: Vec<&SignerEntry> = signers.entries_for_key(sig.public_key()).collect();
    if lines.is_empty() {
        return Err(ApprovalError::UnknownSigner { fingerprint });
    }
    // Who does the key speak for?
    let (signer, candidates): (String, Vec<&SignerEntry>) = match claimed {
        Some(name) => {
            let m: Vec<_> = lines
                .iter()
                .copied()
                .filter(|e| e.matches_principal(name))
                .collect();
            if m.is_empty() {
                return Err(ApprovalError::NotListedFor {
                    claimed: name.to_owned(),
                    fingerprint,
                });
            }
            (name.to_owned(), m)
        }
        None => {
            let mut names: Vec<&str> = lines.iter().flat_map(|e| e.literal_principals()).collect();
            names.sort_unstable();
            names.dedup();
            match names.as_slice() {
                [one] => {
                    let name = (*one).to_owned();
                    let m = lines
                        .iter()
                        .copied()
                        .filter(|e| e.matches_principal(&name))
                        .collect();
                    (name, m)
                }
                _ => {
                    let candidates = if names.is_empty() {
                        "only wildcard patterns".to_owned()
                    } else {
                        names
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    return Err(ApprovalError::AmbiguousSigner {
                        fingerprint,
                        candidates,
                    });
                }
            }
        }
    };
    if candidates.is_empty() {
        return Err(ApprovalError::NotListedFor {
            claimed: signer,
            fingerprint,
        });
    }
    let in_ns: Vec<&SignerEntry> = candidates
        .iter()
        .copied()
        .filter(|e| e.allows_namespace(NAMESPACE))
        .collect();
    let Some(first) = in_ns.first() else {
        return Err(ApprovalError::NamespaceNotAllowed {
            signer,
            line: candidates[0].line,
        });
    };
    // Any line valid at every instant will do; otherwise report the first
    // line's problem.
    let valid = in_ns
        .iter()
        .copied()
        .find(|e| at.iter().all(|t| window_error(e, &signer, t).is_none()));
    let entry = match valid {
        Some(e) => e,
        None => {
            for t in at {
                if let Some(err) = window_error(first, &signer, t) {
                    return Err(err);
                }
            }
            first
        }
    };
    entry
        .key
        .verify(NAMESPACE, plan_bytes, &sig)
        .map_err(|_| ApprovalError::NotThisPlan {
            signer: signer.clone(),
        })?;
    Ok(SignatureCheck {
        signer,
        fingerprint,
        line: entry.line,
    })
}

fn window_error(e: &SignerEntry, signer: &str, t: &DateTime<Utc>) -> Option<ApprovalError> {
    let at = crate::timefmt::format(t);
    if let Some(a) = e.valid_after {
        if *t < a {
            return Some(ApprovalError::KeyNotYetValid {
                signer: signer.to_owned(),
                at,
                line: e.line,
                window: e.window(),
            });
        }
    }
    if let Some(b) = e.valid_before {
        if *t > b {
            return Some(ApprovalError::KeyExpired {
                signer: signer.to_owned(),
                at,
                line: e.line,
                window: e.window(),
            });
        }
    }
    None
}

/// What [`Policy::authenticate`] is given.
pub struct AuthRequest<'a> {
    pub plan: &'a Plan,
    /// The plan file's bytes, exactly as signed.
    pub plan_bytes: &'a [u8],
    /// The requester's name as claimed: `--as NAME`, or the plan's requester.
    pub claimed_requester: &'a str,
    /// The stored signatures, the requester's first.
    pub signatures: &'a [StoredSignature],
    /// An automation principal's secret (e.g. from `CORDON_CI_SECRET`).
    pub automation_secret: Option<&'a Secret>,
    pub now: DateTime<Utc>,
}

/// What a signature or secret was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "index")]
pub enum RejectedItem {
    /// The signature at this index of `AuthRequest.signatures`.
    Signature(usize),
    AutomationSecret,
}

/// A signature or secret that does not count, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub item: RejectedItem,
    /// Who it claims to be from, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// [`ApprovalError::code`].
    pub code: &'static str,
    pub message: String,
    #[serde(skip)]
    pub error: ApprovalError,
}

impl Rejection {
    fn new(item: RejectedItem, signer: Option<String>, error: ApprovalError) -> Self {
        Rejection {
            item,
            signer,
            code: error.code(),
            message: error.to_string(),
            error,
        }
    }
}

/// The requester as proven, the approvals that count and the ones that do not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Authentication {
    pub principal: Principal,
    /// Verified approvals, one per person, the requester excluded, in order.
    pub approvals: Vec<VerifiedApproval>,
    pub rejected: Vec<Rejection>,
}

impl Policy {
    /// Prove an automation principal by the secret configured for it in the
    /// roster (`secret_sha256`, compared in constant time); the proof as
    /// records state it (`automation-secret:ENV`). The one place a secret
    /// proves a name: plan runs ([`Policy::authenticate`]) and incident and
    /// task records ([`Policy::actor`]) both ask here.
    pub fn prove_automation(&self, name: &str, secret: &Secret) -> Result<String, ApprovalError> {
        let Some(Member::Automation(a)) = self.roster.member(name) else {
            return Err(ApprovalError::SecretNotConfigured {
                name: name.to_owned(),
            });
        };
        let Some(expected) = &a.secret_sha256 else {
            return Err(ApprovalError::SecretNotConfigured {
                name: name.to_owned(),
            });
        };
        let got: [u8; 32] = Sha256::digest(secret.expose().as_bytes()).into();
        if !bool::from(got.ct_eq(expected)) {
            return Err(ApprovalError::SecretMismatch {
                name: name.to_owned(),
                env: a.secret_env.clone().unwrap_or_else(|| "secret".into()),
            });
        }
        Ok(match &a.secret_env {
            Some(env) => format!("automation-secret:{env}"),
            None => "automation-secret".into(),
        })
    }

    /// The secret an automation principal presents: the value of the
    /// environment variable the roster names for it (`secret_env`), if set.
    pub fn automation_secret(&self, name: &str) -> Option<Secret> {
        match self.roster.member(name) {
            Some(Member::Automation(a)) => a
                .secret_env
                .as_ref()
                .and_then(|var| std::env::var(var).ok())
                .map(Secret::new),
            _ => None,
        }
    }

    /// Who is acting outside a plan (incident, task and role events): an
    /// automation principal proven by its secret, or a claim.
    pub fn actor(&self, name: &str) -> Principal {
        match self.roster.member(name) {
            Some(Member::Automation(_)) => {
                let proof = self
                    .automation_secret(name)
                    .and_then(|s| self.prove_automation(name, &s).ok());
                match proof {
                    Some(proof) => Principal {
                        name: name.to_owned(),
                        kind: PrincipalKind::Automation,
                        verified: true,
                        proof: Some(proof),
                    },
                    None => Principal::claim(name, PrincipalKind::Automation),
                }
            }
            _ => Principal::claim(name, PrincipalKind::Person),
        }
    }

    /// Verify one signature for `cordon approve` before storing it.
    pub fn verify_signature(
        &self,
        plan_bytes: &[u8],
        armored: &str,
        claimed: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<SignatureCheck, ApprovalError> {
        verify_signature(&self.signers, plan_bytes, armored, claimed, &[at])
    }

    /// Decide who the requester is (proven or merely claimed) and which
    /// approvals count.
    pub fn authenticate(&self, req: &AuthRequest<'_>) -> Authentication {
        let name = req.claimed_requester;
        let member = self.roster.member(name);
        let kind = match member {
            Some(Member::Automation(_)) => PrincipalKind::Automation,
            Some(Member::Person(_)) => PrincipalKind::Person,
            None => req.plan.requester.kind,
        };
        let mut principal = Principal {
            name: name.to_owned(),
            kind,
            verified: false,
            proof: None,
        };
        let mut rejected = Vec::new();
        let mismatch = name != req.plan.requester.name;

        // Automation secret. A secret proves the name it was configured for,
        // and only when that name is the plan's requester.
        if let Some(secret) = req.automation_secret {
            match self.prove_automation(name, secret) {
                Err(e @ ApprovalError::SecretNotConfigured { .. }) => rejected.push(
                    Rejection::new(RejectedItem::AutomationSecret, Some(name.to_owned()), e),
                ),
                _ if mismatch => rejected.push(Rejection::new(
                    RejectedItem::AutomationSecret,
                    Some(name.to_owned()),
                    ApprovalError::RequesterMismatch {
                        signer: name.to_owned(),
                        requester: req.plan.requester.name.clone(),
                    },
                )),
                Ok(proof) => {
                    principal.verified = true;
                    principal.proof = Some(proof);
                }
                Err(e) => rejected.push(Rejection::new(
                    RejectedItem::AutomationSecret,
                    Some(name.to_owned()),
                    e,
                )),
            }
        }

        let mut approvals: Vec<VerifiedApproval> = Vec::new();
        for (i, s) in req.signatures.iter().enumerate() {
            let item = RejectedItem::Signature(i);
            if s.recorded_at > req.now {
                rejected.push(Rejection::new(
                    item,
                    s.claimed_signer.clone(),
                    ApprovalError::RecordedInFuture {
                        signer: s.claimed_signer.clone().unwrap_or_else(|| "?".into()),
                        recorded_at: crate::timefmt::format(&s.recorded_at),
                    },
                ));
                continue;
            }
            let checked = match verify_signature(
                &self.signers,
                req.plan_bytes,
                &s.armored,
                s.claimed_signer.as_deref(),
                &[s.recorded_at, req.now],
            ) {
                Ok(c) => c,
                Err(e) => {
                    rejected.push(Rejection::new(item, s.claimed_signer.clone(), e));
                    continue;
                }
            };
            let signer = checked.signer.clone();
            if signer == name {
                if principal.verified {
                    rejected.push(Rejection::new(
                        item,
                        Some(signer.clone()),
                        ApprovalError::SelfApproval { signer },
                    ));
                } else if mismatch {
                    rejected.push(Rejection::new(
                        item,
                        Some(signer.clone()),
                        ApprovalError::RequesterMismatch {
                            signer,
                            requester: req.plan.requester.name.clone(),
                        },
                    ));
                } else {
                    principal.verified = true;
                    principal.proof = Some(format!("ssh:{}", checked.fingerprint));
                }
                continue;
            }
            if matches!(self.roster.member(&signer), Some(Member::Automation(_))) {
                rejected.push(Rejection::new(
                    item,
                    Some(signer.clone()),
                    ApprovalError::AutomationApproval { signer },
                ));
                continue;
            }
            if approvals.iter().any(|a| a.signer == signer) {
                rejected.push(Rejection::new(
                    item,
                    Some(signer.clone()),
                    ApprovalError::DuplicateApproval { signer },
                ));
                continue;
            }
            approvals.push(VerifiedApproval {
                signer,
                key_fingerprint: checked.fingerprint,
                signed_at: s.recorded_at,
            });
        }
        Authentication {
            principal,
            approvals,
            rejected,
        }
    }
}
