//! From "a scanner saw this text at this place" to findings: classify the
//! text, drop the same credential reported twice at one place (scanners run
//! several rules over one line), and pair AWS key ids with secrets that a
//! scanner reported as separate, unlinked findings (gitleaks does).

use cordon_connector::Secret;

use super::{Credential, Finding, NotContainable, Provenance};
use crate::intake::classify::{classify, Found};

/// One thing a scanner reported: where, and the text it matched.
pub(super) struct Hit {
    pub prov: Provenance,
    /// 1-based column, when the scanner gave one (only used for nearness).
    pub column: Option<u64>,
    pub text: Secret,
    /// What the scanner called it (rule or type), for "not containable" reasons.
    pub what: String,
}

/// True when gitleaks ran with `--redact`: the secret is `REDACTED`, or (with
/// `--redact=N`) its first part followed by `...` (gitleaks' `MaskSecret`).
pub(super) fn gitleaks_redacted(secret: &str) -> bool {
    secret == "REDACTED" || secret.ends_with("...")
}

pub(super) fn gitleaks_redacted_finding(prov: Provenance) -> Finding {
    Finding {
        provenance: prov,
        item: Err(NotContainable {
            reason: "gitleaks ran with `--redact`, so the report does not hold the secret; rerun gitleaks without `--redact` (keep its report private) or pass the secret as plain text".into(),
            fingerprint: None,
        }),
    }
}

/// How far apart (in lines) an AWS key id and a secret reported separately may
/// be and still be taken as one key. Credentials files and env files put them
/// on adjacent lines; further apart they are more likely two different keys.
pub(super) const MAX_PAIR_LINES: u64 = 5;

enum Item {
    Found(Found),
    /// Nothing the classifier recognised: a secret type no connector handles.
    Unknown {
        what: String,
        fingerprint: String,
    },
}

struct Placed {
    prov: Provenance,
    column: Option<u64>,
    item: Item,
}

impl Placed {
    /// What the credential is, for spotting duplicates (never printed).
    fn identity(&self) -> Option<String> {
        Some(match &self.item {
            Item::Found(Found::GithubToken { secret, .. }) => secret.fingerprint(),
            Item::Found(Found::AwsKey { key_id, secret, .. }) => {
                format!(
                    "{key_id}:{}",
                    secret.as_ref().map(Secret::fingerprint).unwrap_or_default()
                )
            }
            Item::Found(Found::Invalid { fingerprint, .. }) => fingerprint.clone(),
            Item::Found(Found::AwsSecretUnpaired { secret, .. })
            | Item::Found(Found::PrivateKey { secret, .. }) => secret.fingerprint(),
            Item::Found(Found::Unrecognised { .. }) => return None,
            Item::Unknown { fingerprint, .. } => fingerprint.clone(),
        })
    }

    fn same_place(&self, other: &Placed) -> bool {
        self.prov.file == other.prov.file && self.prov.commit == other.prov.commit
    }
}

/// File, commit, line and credential identity: one finding per key.
type PlaceKey = (Option<String>, Option<String>, Option<u64>, String);

pub(super) fn findings(hits: Vec<Hit>) -> Vec<Finding> {
    let mut placed: Vec<Placed> = Vec::with_capacity(hits.len());
    for hit in hits {
        let found: Vec<Found> = classify(hit.text.expose())
            .into_iter()
            .filter(|f| !matches!(f, Found::Unrecognised { .. }))
            .collect();
        if found.is_empty() {
            placed.push(Placed {
                prov: hit.prov,
                column: hit.column,
                item: Item::Unknown {
                    what: hit.what,
                    fingerprint: hit.text.fingerprint(),
                },
            });
            continue;
        }
        for f in found {
            placed.push(Placed {
                prov: hit.prov.clone(),
                column: hit.column,
                item: Item::Found(f),
            });
        }
    }

    // The same credential at the same place, reported by two rules: keep the
    // first. (A set, not a scan of what was kept: 100,000 findings must not
    // take 10^10 comparisons; in place, not a second vector of them.)
    let mut kept = placed;
    let mut seen: std::collections::HashSet<PlaceKey> = std::collections::HashSet::new();
    kept.retain(|p| match p.identity() {
        Some(id) => seen.insert((p.prov.file.clone(), p.prov.commit.clone(), p.prov.line, id)),
        None => true,
    });
    drop(seen);

    pair_aws(&mut kept);

    kept.into_iter()
        .filter_map(|p| {
            let item = match p.item {
                Item::Found(f) => Credential::from_found(f)?,
                Item::Unknown { what, fingerprint } => Err(NotContainable {
                    reason: format!("{what}: no connector handles this kind of secret"),
                    fingerprint: Some(fingerprint),
                }),
            };
            Some(Finding {
                provenance: p.prov,
                item,
            })
        })
        .collect()
}

/// Give each AWS key id reported without its secret the nearest lone secret in
/// the same file (and commit), within [`MAX_PAIR_LINES`]; nearness is line
/// distance, then column distance (columns may be off by one: they only
/// break ties). A paired secret is no longer a finding of its own.
fn pair_aws(items: &mut Vec<Placed>) {
    let ids: Vec<usize> = (0..items.len())
        .filter(|&i| {
            matches!(
                items[i].item,
                Item::Found(Found::AwsKey { secret: None, .. })
            )
        })
        .collect();
    let secrets: Vec<usize> = (0..items.len())
        .filter(|&i| matches!(items[i].item, Item::Found(Found::AwsSecretUnpaired { .. })))
        .collect();
    // Secrets by place, so each key id looks only at its own file's.
    let mut secrets_at: std::collections::HashMap<(Option<&str>, Option<&str>), Vec<usize>> =
        std::collections::HashMap::new();
    for &j in &secrets {
        let p = &items[j].prov;
        secrets_at
            .entry((p.file.as_deref(), p.commit.as_deref()))
            .or_default()
            .push(j);
    }
    let mut candidates: Vec<(u64, u64, usize, usize)> = Vec::new();
    for &i in &ids {
        let p = &items[i].prov;
        let Some(here) = secrets_at.get(&(p.file.as_deref(), p.commit.as_deref())) else {
            continue;
        };
        for &j in here {
            let (a, b) = (&items[i], &items[j]);
            if !a.same_place(b) {
                continue;
            }
            let (Some(la), Some(lb)) = (a.prov.line, b.prov.line) else {
                continue;
            };
            let dl = la.abs_diff(lb);
            if dl > MAX_PAIR_LINES {
                continue;
            }
            let dc = match (a.column, b.column) {
                (Some(x), Some(y)) => x.abs_diff(y),
                _ => 0,
            };
            candidates.push((dl, dc, i, j));
        }
    }
    candidates.sort();
    let mut id_done = vec![false; items.len()];
    let mut secret_used = vec![false; items.len()];
    for (_, _, i, j) in candidates {
        if id_done[i] || secret_used[j] {
            continue;
        }
        let taken = std::mem::replace(
            &mut items[j].item,
            Item::Found(Found::Unrecognised { line: 0, length: 0 }),
        );
        let Item::Found(Found::AwsSecretUnpaired { secret, .. }) = taken else {
            continue;
        };
        if let Item::Found(Found::AwsKey { secret: slot, .. }) = &mut items[i].item {
            *slot = Some(secret);
        }
        id_done[i] = true;
        secret_used[j] = true;
    }
    // Consumed secrets were replaced by `Unrecognised`, which yields no finding.
    items.retain(|p| !matches!(p.item, Item::Found(Found::Unrecognised { .. })));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    const ID: &str = "AKIAQX3DJRZN6B4TYW2E";
    const SECRET: &str = "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";

    fn hit(file: &str, line: u64, column: u64, text: &str) -> Hit {
        Hit {
            prov: Provenance {
                scanner: "t".into(),
                file: Some(file.into()),
                line: Some(line),
                ..Provenance::default()
            },
            column: Some(column),
            text: Secret::new(text),
            what: "rule".into(),
        }
    }

    #[test]
    fn id_and_secret_in_one_file_are_paired_by_nearness() {
        let f = findings(vec![
            hit("a.env", 1, 19, ID),
            hit("a.env", 2, 23, SECRET),
            hit("b.env", 1, 19, "AKIAZZZZZZZZZZZZZZZZ"),
        ]);
        assert_eq!(f.len(), 2);
        let Ok(Credential::AwsKey { key_id, secret, .. }) = &f[0].item else {
            panic!("{f:?}")
        };
        assert_eq!(key_id, ID);
        assert_eq!(secret.as_ref().unwrap().expose(), SECRET);
        // The other file's key id stays alone (containable by id only).
        assert!(matches!(
            &f[1].item,
            Ok(Credential::AwsKey { secret: None, .. })
        ));
    }

    #[test]
    fn a_secret_too_far_away_or_in_another_file_stays_unpaired() {
        let f = findings(vec![hit("a.env", 1, 1, ID), hit("a.env", 40, 1, SECRET)]);
        assert_eq!(f.len(), 2);
        assert!(matches!(
            &f[0].item,
            Ok(Credential::AwsKey { secret: None, .. })
        ));
        assert!(f[1].item.as_ref().is_err());
        let f = findings(vec![hit("a.env", 1, 1, ID), hit("b.env", 2, 1, SECRET)]);
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn the_same_credential_twice_at_one_place_is_one_finding() {
        // Two rules, columns off by one.
        let f = findings(vec![hit("a.env", 2, 19, ID), hit("a.env", 2, 18, ID)]);
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn unknown_text_is_not_containable_with_a_fingerprint_only() {
        let f = findings(vec![hit("a.env", 2, 1, "CANARY-slack-xoxb-123")]);
        assert_eq!(f.len(), 1);
        let Err(nc) = &f[0].item else { panic!() };
        assert_eq!(nc.reason, "rule: no connector handles this kind of secret");
        assert!(!format!("{f:?}").contains("CANARY"));
    }
}
