//! Interoperability with the real OpenSSH `ssh-keygen`, both ways.

use std::io::Write;
use std::process::Stdio;

use chrono::Duration;

use super::*;
use crate::policy::{sign, signers, verify_signature, SignError};

/// `ssh-keygen -Y verify -f allowed_signers -I NAME -n cordon-plan -s SIG < DATA`.
fn keygen_verify(allowed: &Path, name: &str, sig: &str, data: &[u8], dir: &Path) -> (bool, String) {
    let sig_path = dir.join(format!(
        "verify-{name}-{}.sig",
        crate::plan::sha256_hex(sig.as_bytes())
    ));
    std::fs::write(&sig_path, sig).unwrap();
    let mut child = ssh_keygen()
        .args(["-Y", "verify", "-f"])
        .arg(allowed)
        .args(["-I", name, "-n", "cordon-plan", "-s"])
        .arg(&sig_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn plan_bytes(id: &str) -> Vec<u8> {
    let p = plan(
        "bruno",
        PrincipalKind::Person,
        Source::Manual,
        Severity::High,
        cordon_connector::Action::AwsQuarantineRole,
        target(
            cordon_connector::Provider::Aws,
            "role",
            id,
            Some("production"),
        ),
    );
    p.to_canonical_bytes().unwrap()
}

fn setup(kind: &str) -> (tempfile::TempDir, PathBuf, PathBuf, signers::AllowedSigners) {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "bruno", kind, "");
    let allowed = dir.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("bruno namespaces=\"cordon-plan\" {public}\n"),
    )
    .unwrap();
    let parsed = signers::parse(
        &std::fs::read_to_string(&allowed).unwrap(),
        "allowed_signers",
    )
    .unwrap();
    (dir, key, allowed, parsed)
}

fn both_ways(kind: &str) {
    let (dir, key, allowed, parsed) = setup(kind);
    let bytes = plan_bytes("deploy-prod");
    let now = [t0()];

    // ssh-keygen signs, cordon verifies.
    let theirs = keygen_sign(&key, "cordon-plan", &bytes, dir.path());
    let ok = verify_signature(&parsed, &bytes, &theirs, None, &now)
        .unwrap_or_else(|e| panic!("{kind}: cordon must accept ssh-keygen's signature: {e}"));
    assert_eq!(ok.signer, "bruno");
    assert_eq!(ok.line, 1);
    // ...and refuses it over another plan.
    let other = plan_bytes("deploy-staging");
    assert!(verify_signature(&parsed, &other, &theirs, None, &now).is_err());

    // cordon signs, ssh-keygen verifies.
    let ours = sign(&bytes, &key).unwrap();
    assert!(
        ours.starts_with("-----BEGIN SSH SIGNATURE-----\n"),
        "{ours}"
    );
    let (good, out) = keygen_verify(&allowed, "bruno", &ours, &bytes, dir.path());
    assert!(
        good,
        "{kind}: ssh-keygen must accept cordon's signature: {out}"
    );
    assert!(
        out.contains("Good \"cordon-plan\" signature for bruno"),
        "{out}"
    );
    // ...and ssh-keygen refuses it over another plan, or for another name.
    let (good, _) = keygen_verify(&allowed, "bruno", &ours, &other, dir.path());
    assert!(
        !good,
        "{kind}: ssh-keygen accepted a signature over different bytes"
    );
    let (good, _) = keygen_verify(&allowed, "amara", &ours, &bytes, dir.path());
    assert!(
        !good,
        "{kind}: ssh-keygen accepted the signature for another principal"
    );
    // cordon verifies its own.
    verify_signature(&parsed, &bytes, &ours, None, &now).unwrap();
}

#[test]
fn ed25519_signatures_interoperate_with_ssh_keygen_both_ways() {
    both_ways("ed25519");
}

#[test]
fn ecdsa_p256_signatures_interoperate_with_ssh_keygen_both_ways() {
    both_ways("ecdsa");
}

#[test]
fn rsa_signatures_interoperate_with_ssh_keygen_both_ways() {
    both_ways("rsa");
}

#[test]
fn ssh_keygen_signature_in_another_namespace_is_refused_by_both() {
    let (dir, key, allowed, parsed) = setup("ed25519");
    let bytes = plan_bytes("deploy-prod");
    let git = keygen_sign(&key, "git", &bytes, dir.path());
    assert!(matches!(
        verify_signature(&parsed, &bytes, &git, None, &[t0()]),
        Err(crate::policy::ApprovalError::WrongNamespace { .. })
    ));
    let (good, _) = keygen_verify(&allowed, "bruno", &git, &bytes, dir.path());
    assert!(!good);
}

#[test]
fn ssh_keygen_agrees_on_validity_windows() {
    // A window that ended in the past: both refuse.
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "hiro", "ed25519", "");
    let allowed = dir.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("hiro valid-before=\"20250101Z\" {public}\n"),
    )
    .unwrap();
    let parsed = signers::parse(
        &std::fs::read_to_string(&allowed).unwrap(),
        "allowed_signers",
    )
    .unwrap();
    let bytes = plan_bytes("deploy-prod");
    let sig = sign(&bytes, &key).unwrap();
    let (good, out) = keygen_verify(&allowed, "hiro", &sig, &bytes, dir.path());
    assert!(!good, "ssh-keygen accepted an expired key: {out}");
    let now = chrono::Utc::now();
    assert!(matches!(
        verify_signature(&parsed, &bytes, &sig, None, &[now]),
        Err(crate::policy::ApprovalError::KeyExpired { .. })
    ));
    // ...and before the end of the window, cordon accepts.
    let before = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2024, 6, 1, 0, 0, 0).unwrap();
    verify_signature(
        &parsed,
        &bytes,
        &sig,
        None,
        &[before, before + Duration::days(1)],
    )
    .unwrap();
}

#[test]
fn encrypted_keys_are_refused_with_the_ssh_keygen_route() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(
        dir.path(),
        "amara",
        "ed25519",
        "correct horse battery staple",
    );
    let err = sign(b"plan", &key).unwrap_err();
    assert!(matches!(err, SignError::Encrypted { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("ssh-keygen -Y sign -n cordon-plan"), "{msg}");
    assert!(msg.contains("cordon approve --import"), "{msg}");
}

#[test]
fn keys_readable_by_others_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "amara", "ed25519", "");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = sign(b"plan", &key).unwrap_err();
    assert!(
        matches!(err, SignError::Permissions { mode: 0o644, .. }),
        "{err}"
    );
    let missing = sign(b"plan", &dir.path().join("nope")).unwrap_err();
    assert!(matches!(missing, SignError::Read { .. }));
}

#[test]
fn the_shipped_allowed_signers_is_accepted_by_ssh_keygen() {
    // ssh-keygen -Y find-principals parses the whole file; a parse error
    // in any line would fail it.
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "x", "ed25519", "");
    let sig = sign(b"plan", &key).unwrap();
    let sig_path = dir.path().join("x.sig");
    std::fs::write(&sig_path, sig).unwrap();
    let out = ssh_keygen()
        .args(["-Y", "find-principals", "-f"])
        .arg(shipped_dir().join("allowed_signers"))
        .arg("-s")
        .arg(&sig_path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // The key is not listed: "No principal matched", never a parse error.
    assert!(!out.status.success());
    assert!(!err.contains("invalid") && !err.contains("bad"), "{err}");
    let parsed = signers::parse(
        &std::fs::read_to_string(shipped_dir().join("allowed_signers")).unwrap(),
        "allowed_signers",
    )
    .unwrap();
    assert_eq!(parsed.entries.len(), 9);
}
