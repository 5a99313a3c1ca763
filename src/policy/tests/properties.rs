//! Property tests over approvals: whatever mix of signatures is stored next
//! to a plan (forged, replayed from another plan, the requester's own,
//! duplicated, expired, not yet valid, wrong namespace, automation, recorded
//! in the future, tampered bytes, garbage), only valid signatures by listed
//! people other than the requester count, each person once.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::Duration;
use cordon_connector::{Action, Provider};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use ssh_key::{HashAlg, LineEnding, PrivateKey};

use super::*;
use crate::policy::approvals::NAMESPACE;
use crate::policy::{AuthRequest, StoredSignature};

const PEOPLE: [&str; 4] = ["amara", "bruno", "chen", "emeka"];

#[derive(Debug, Clone)]
enum Item {
    /// A valid signature over this plan by a listed person.
    Valid(usize),
    /// The same person again, with other bytes (SHA-256 instead of SHA-512).
    ValidAgain(usize),
    /// Person `0`'s valid signature, recorded as if person `1` made it.
    Impersonate(usize, usize),
    /// A key nobody listed.
    Unlisted,
    /// A valid signature with one bit of its binary form flipped.
    Tampered(usize, usize, u8),
    /// A valid signature over another plan.
    Replayed(usize),
    /// hiro's key expired in 2025.
    Expired,
    /// fatima's key is valid from 03:30; recorded at 03:01.
    NotYetValid,
    /// Signed in another namespace.
    WrongNamespace(usize, usize),
    /// gwen's key is listed for `git` only.
    NamespaceNotAllowed,
    /// The `ci` automation principal's key.
    Automation,
    /// Valid, but recorded after now.
    Future(usize),
    /// Not a signature at all.
    Garbage(String),
}

fn item() -> impl Strategy<Value = Item> {
    let p = 0..PEOPLE.len();
    prop_oneof![
        4 => p.clone().prop_map(Item::Valid),
        1 => p.clone().prop_map(Item::ValidAgain),
        1 => (p.clone(), 1..PEOPLE.len()).prop_map(|(a, d)| Item::Impersonate(a, (a + d) % PEOPLE.len())),
        1 => Just(Item::Unlisted),
        2 => (p.clone(), any::<usize>(), 0u8..8).prop_map(|(a, i, b)| Item::Tampered(a, i, b)),
        1 => p.clone().prop_map(Item::Replayed),
        1 => Just(Item::Expired),
        1 => Just(Item::NotYetValid),
        1 => (p.clone(), 0..3usize).prop_map(|(a, n)| Item::WrongNamespace(a, n)),
        1 => Just(Item::NamespaceNotAllowed),
        1 => Just(Item::Automation),
        1 => p.prop_map(Item::Future),
        1 => ".{0,80}".prop_map(Item::Garbage),
    ]
}

struct Keys {
    _dir: tempfile::TempDir,
    _keys: tempfile::TempDir,
    policy: Policy,
    private: std::collections::HashMap<String, PrivateKey>,
}

fn keys() -> Keys {
    let dir = copy_shipped();
    let keys = tempfile::tempdir().unwrap();
    let mut signers = String::new();
    let mut private = std::collections::HashMap::new();
    for name in PEOPLE
        .iter()
        .copied()
        .chain(["fatima", "gwen", "hiro", "ci", "mallory"])
    {
        let (path, public) = keygen(keys.path(), name, "ed25519", "");
        private.insert(
            name.to_owned(),
            PrivateKey::from_openssh(std::fs::read_to_string(path).unwrap()).unwrap(),
        );
        let line = match name {
            "mallory" => continue,
            "hiro" => format!("hiro valid-before=\"20250101Z\" {public}"),
            "gwen" => format!("gwen namespaces=\"git\" {public}"),
            "fatima" => format!("fatima valid-after=\"202611220330Z\" {public}"),
            _ => format!("{name} namespaces=\"git,cordon-plan\" {public}"),
        };
        signers.push_str(&line);
        signers.push('\n');
    }
    std::fs::write(dir.path().join("allowed_signers"), signers).unwrap();
    let policy = crate::policy::load(dir.path()).unwrap();
    Keys {
        _dir: dir,
        _keys: keys,
        policy,
        private,
    }
}

impl Keys {
    fn sign(&self, who: &str, ns: &str, hash: HashAlg, bytes: &[u8]) -> String {
        self.private[who]
            .sign(ns, hash, bytes)
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap()
    }
}

/// Flip one bit of the signature's binary form and armor it again.
fn tamper(armored: &str, at: usize, bit: u8) -> String {
    let body: String = armored
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let width = armored.lines().nth(1).map_or(70, str::len);
    let mut raw = B64.decode(body).unwrap();
    let i = at % raw.len();
    raw[i] ^= 1 << bit;
    let b64 = B64.encode(raw);
    let mut out = String::from("-----BEGIN SSH SIGNATURE-----\n");
    for chunk in b64.as_bytes().chunks(width) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str("-----END SSH SIGNATURE-----\n");
    out
}

fn quarantine(requester: &str, role: &str) -> (Plan, Vec<u8>) {
    let p = plan(
        requester,
        PrincipalKind::Person,
        Source::Manual,
        Severity::High,
        Action::AwsQuarantineRole,
        target(Provider::Aws, "role", role, Some("production")),
    );
    let b = p.to_canonical_bytes().unwrap();
    (p, b)
}

#[test]
fn only_valid_signatures_by_other_listed_people_count_each_once() {
    let k = keys();
    let recorded = t0() + Duration::minutes(1);
    let now = t0() + Duration::minutes(2);
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (0..PEOPLE.len(), prop::collection::vec(item(), 0..10));
    runner
        .run(&strategy, |(req, items)| {
            let requester = PEOPLE[req];
            let (plan, bytes) = quarantine(requester, "deploy-prod");
            let (_, other) = quarantine(requester, "deploy-staging");
            let stored = |armored: String, claimed: Option<&str>| StoredSignature {
                armored,
                recorded_at: recorded,
                claimed_signer: claimed.map(str::to_owned),
            };
            let sigs: Vec<StoredSignature> = items
                .iter()
                .map(|it| match it {
                    Item::Valid(p) => {
                        stored(k.sign(PEOPLE[*p], NAMESPACE, HashAlg::Sha512, &bytes), None)
                    }
                    Item::ValidAgain(p) => {
                        stored(k.sign(PEOPLE[*p], NAMESPACE, HashAlg::Sha256, &bytes), None)
                    }
                    Item::Impersonate(a, b) => stored(
                        k.sign(PEOPLE[*a], NAMESPACE, HashAlg::Sha512, &bytes),
                        Some(PEOPLE[*b]),
                    ),
                    Item::Unlisted => {
                        stored(k.sign("mallory", NAMESPACE, HashAlg::Sha512, &bytes), None)
                    }
                    Item::Tampered(p, at, bit) => stored(
                        tamper(
                            &k.sign(PEOPLE[*p], NAMESPACE, HashAlg::Sha512, &bytes),
                            *at,
                            *bit,
                        ),
                        None,
                    ),
                    Item::Replayed(p) => {
                        stored(k.sign(PEOPLE[*p], NAMESPACE, HashAlg::Sha512, &other), None)
                    }
                    Item::Expired => {
                        stored(k.sign("hiro", NAMESPACE, HashAlg::Sha512, &bytes), None)
                    }
                    Item::NotYetValid => {
                        stored(k.sign("fatima", NAMESPACE, HashAlg::Sha512, &bytes), None)
                    }
                    Item::WrongNamespace(p, n) => stored(
                        k.sign(
                            PEOPLE[*p],
                            ["file", "git", "cordon-plan2"][*n],
                            HashAlg::Sha512,
                            &bytes,
                        ),
                        None,
                    ),
                    Item::NamespaceNotAllowed => {
                        stored(k.sign("gwen", NAMESPACE, HashAlg::Sha512, &bytes), None)
                    }
                    Item::Automation => {
                        stored(k.sign("ci", NAMESPACE, HashAlg::Sha512, &bytes), None)
                    }
                    Item::Future(p) => StoredSignature {
                        armored: k.sign(PEOPLE[*p], NAMESPACE, HashAlg::Sha512, &bytes),
                        recorded_at: now + Duration::seconds(1),
                        claimed_signer: None,
                    },
                    Item::Garbage(s) => stored(s.clone(), None),
                })
                .collect();
            let a = k.policy.authenticate(&AuthRequest {
                plan: &plan,
                plan_bytes: &bytes,
                claimed_requester: requester,
                signatures: &sigs,
                automation_secret: None,
                now,
            });

            // The model: the requester's first valid signature proves them;
            // every other valid one by a listed person counts once, in order.
            // A tampered signature may still verify when the flipped bit is
            // in a field the signature does not cover and parsers accept
            // either way (the SSHSIG version: OpenSSH accepts any version up
            // to 1, so version 0 verifies too). Such a signature is still the
            // original signer's over this plan: it may count as theirs, and
            // only as theirs.
            let mut still_valid = vec![false; items.len()];
            for (i, it) in items.iter().enumerate() {
                if let Item::Tampered(p, ..) = it {
                    if let Ok(c) =
                        k.policy
                            .verify_signature(&bytes, &sigs[i].armored, None, recorded)
                    {
                        prop_assert_eq!(
                            c.signer.as_str(),
                            PEOPLE[*p],
                            "a tampered signature spoke for someone else"
                        );
                        still_valid[i] = true;
                    }
                }
            }
            let mut verified = false;
            let mut want: Vec<&str> = Vec::new();
            for (i, it) in items.iter().enumerate() {
                let person = match it {
                    Item::Valid(p) | Item::ValidAgain(p) => Some(*p),
                    Item::Tampered(p, ..) if still_valid[i] => Some(*p),
                    _ => None,
                };
                if let Some(p) = person {
                    let who = PEOPLE[p];
                    if who == requester {
                        verified = true;
                    } else if !want.contains(&who) {
                        want.push(who);
                    }
                }
            }
            let got: Vec<&str> = a.approvals.iter().map(|x| x.signer.as_str()).collect();
            prop_assert_eq!(&got, &want, "items {:?}", items);
            prop_assert_eq!(a.principal.verified, verified);
            prop_assert!(!got.contains(&requester), "self-approval counted");
            // Every signature is accounted for exactly once: the requester's
            // proof, an approval, or a rejection with its reason.
            prop_assert_eq!(
                usize::from(verified) + a.approvals.len() + a.rejected.len(),
                items.len(),
                "{:#?}",
                a.rejected
            );
            for (i, it) in items.iter().enumerate() {
                let rejected = a
                    .rejected
                    .iter()
                    .find(|r| r.item == crate::policy::RejectedItem::Signature(i));
                let code = rejected.map(|r| r.error.code());
                let ok = match it {
                    Item::Valid(_) | Item::ValidAgain(_) => {
                        matches!(
                            code,
                            None | Some("duplicate-approval") | Some("self-approval")
                        )
                    }
                    Item::Impersonate(..) => code == Some("not-listed-for-name"),
                    Item::Unlisted => code == Some("unknown-signer"),
                    Item::Tampered(..) if still_valid[i] => {
                        matches!(
                            code,
                            None | Some("duplicate-approval") | Some("self-approval")
                        )
                    }
                    Item::Tampered(..) => code.is_some(),
                    Item::Replayed(_) => code == Some("not-this-plan"),
                    Item::Expired => code == Some("key-expired"),
                    Item::NotYetValid => code == Some("key-not-yet-valid"),
                    Item::WrongNamespace(..) => code == Some("wrong-namespace"),
                    Item::NamespaceNotAllowed => code == Some("namespace-not-allowed"),
                    Item::Automation => code == Some("automation-approval"),
                    Item::Future(_) => code == Some("recorded-in-future"),
                    Item::Garbage(_) => code == Some("malformed"),
                };
                if !ok {
                    return Err(TestCaseError::fail(format!(
                        "signature {i} ({it:?}) was {code:?}"
                    )));
                }
            }
            Ok(())
        })
        .unwrap();
}
