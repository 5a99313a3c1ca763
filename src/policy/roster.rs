//! `roster.toml`: people and their roles, automation principals and how they
//! prove themselves, and the decision classes (owner role, backup role,
//! escalate-after delay).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use toml::Spanned;

use super::Finding;

#[derive(Debug, Clone)]
pub struct Roster {
    pub organisation: Option<String>,
    pub roles: BTreeMap<String, RoleDef>,
    pub people: BTreeMap<String, PersonDef>,
    pub automation: BTreeMap<String, AutomationDef>,
    pub classes: BTreeMap<String, ClassDef>,
    /// Stop conditions per automation principal (`[limits.NAME]`).
    pub limits: BTreeMap<String, LimitsDef>,
}

#[derive(Debug, Clone)]
pub struct RoleDef {
    pub description: Option<String>,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct PersonDef {
    pub display: Option<String>,
    pub roles: Vec<String>,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct AutomationDef {
    pub description: Option<String>,
    pub roles: Vec<String>,
    /// The environment variable the CLI reads the secret from.
    pub secret_env: Option<String>,
    /// base64(SHA-256(secret)), decoded.
    pub secret_sha256: Option<[u8; 32]>,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct ClassDef {
    pub description: Option<String>,
    pub owner: String,
    pub backup: Option<String>,
    pub escalate_after_minutes: u32,
    pub line: usize,
}

/// Stop conditions of one automation principal (`[limits.NAME]`): past any
/// of them the remaining steps wait for a person (see `policy::bounds`).
#[derive(Debug, Clone, Default)]
pub struct LimitsDef {
    /// At most this many credentials (distinct targets) acted on per window.
    pub max_credentials_per_window: Option<u32>,
    /// The window, in minutes (default 60).
    pub window_minutes: u32,
    /// At most this many provider accounts (AWS accounts, GitHub owners)
    /// acted on in one plan; steps in further accounts wait.
    pub max_accounts_per_plan: Option<u32>,
    /// Act only on plans of at least this severity.
    pub min_severity: Option<crate::plan::Severity>,
    /// Act only on targets labelled with one of these environments
    /// (unlabelled targets wait too).
    pub environments: Option<Vec<String>>,
    pub line: usize,
}

/// What kind of principal a roster name is.
#[derive(Debug, Clone, Copy)]
pub enum Member<'a> {
    Person(&'a PersonDef),
    Automation(&'a AutomationDef),
}

impl Roster {
    pub fn member(&self, name: &str) -> Option<Member<'_>> {
        if let Some(a) = self.automation.get(name) {
            return Some(Member::Automation(a));
        }
        self.people.get(name).map(Member::Person)
    }

    /// The roles a name holds (empty when the name is not in the roster).
    pub fn roles_of(&self, name: &str) -> &[String] {
        match self.member(name) {
            Some(Member::Person(p)) => &p.roles,
            Some(Member::Automation(a)) => &a.roles,
            None => &[],
        }
    }

    pub fn class(&self, name: &str) -> Option<&ClassDef> {
        self.classes.get(name)
    }

    /// Every role some person or automation principal holds.
    pub fn held_roles(&self) -> BTreeSet<&str> {
        self.people
            .values()
            .flat_map(|p| p.roles.iter())
            .chain(self.automation.values().flat_map(|a| a.roles.iter()))
            .map(String::as_str)
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoster {
    #[serde(default)]
    organisation: Option<RawOrg>,
    #[serde(default)]
    roles: BTreeMap<String, Spanned<RawRole>>,
    #[serde(default)]
    people: BTreeMap<String, Spanned<RawPerson>>,
    #[serde(default)]
    automation: BTreeMap<String, Spanned<RawAutomation>>,
    #[serde(default)]
    classes: BTreeMap<String, Spanned<RawClass>>,
    #[serde(default)]
    limits: BTreeMap<String, Spanned<RawLimits>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_credentials_per_window: Option<u32>,
    window_minutes: Option<u32>,
    max_accounts_per_plan: Option<u32>,
    min_severity: Option<crate::plan::Severity>,
    environments: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrg {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerson {
    display: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAutomation {
    description: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    secret_env: Option<String>,
    secret_sha256: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    description: Option<String>,
    owner: String,
    backup: Option<String>,
    escalate_after_minutes: u32,
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The line of a table's header (`[people.alice]`), falling back to the
/// span's own line. toml spans of a table start at its first key, so search
/// back for the header that names it.
fn header_line(text: &str, table: &str, key: &str, span_start: usize) -> usize {
    let bare = format!("[{table}.{key}]");
    let quoted = format!("[{table}.\"{key}\"]");
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t == bare || t == quoted {
            return i + 1;
        }
    }
    line_of(text, span_start)
}

/// Parse and check `roster.toml`. The decision classes `contain` and
/// `restore` must exist and every role a class names must be defined: the
/// gate cannot decide without them.
pub fn parse(text: &str, file: &str) -> Result<Roster, Vec<Finding>> {
    let raw: RawRoster = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        vec![Finding::error(
            file,
            line,
            format!("not a valid roster: {}", e.message()),
        )]
    })?;
    let mut errors = Vec::new();
    let roles: BTreeMap<String, RoleDef> = raw
        .roles
        .into_iter()
        .map(|(k, v)| {
            let line = header_line(text, "roles", &k, v.span().start);
            (
                k,
                RoleDef {
                    description: v.into_inner().description,
                    line,
                },
            )
        })
        .collect();
    let people = raw
        .people
        .into_iter()
        .map(|(k, v)| {
            let line = header_line(text, "people", &k, v.span().start);
            let p = v.into_inner();
            (
                k,
                PersonDef {
                    display: p.display,
                    roles: p.roles,
                    line,
                },
            )
        })
        .collect::<BTreeMap<_, _>>();
    let mut automation = BTreeMap::new();
    for (k, v) in raw.automation {
        let line = header_line(text, "automation", &k, v.span().start);
        let a = v.into_inner();
        let secret_sha256 = match a.secret_sha256 {
            None => None,
            Some(s) => match decode_sha256(s.get_ref()) {
                Some(d) => Some(d),
                None => {
                    errors.push(Finding::error(
                        file,
                        Some(line_of(text, s.span().start)),
                        format!(
                            "automation `{k}`: secret_sha256 must be base64 of a 32-byte SHA-256 (compute it with `printf %s \"$TOKEN\" | sha256sum | xxd -r -p | base64`)"
                        ),
                    ));
                    None
                }
            },
        };
        automation.insert(
            k,
            AutomationDef {
                description: a.description,
                roles: a.roles,
                secret_env: a.secret_env,
                secret_sha256,
                line,
            },
        );
    }
    let classes: BTreeMap<String, ClassDef> = raw
        .classes
        .into_iter()
        .map(|(k, v)| {
            let line = header_line(text, "classes", &k, v.span().start);
            let c = v.into_inner();
            (
                k,
                ClassDef {
                    description: c.description,
                    owner: c.owner,
                    backup: c.backup,
                    escalate_after_minutes: c.escalate_after_minutes,
                    line,
                },
            )
        })
        .collect();
    let mut limits = BTreeMap::new();
    for (k, v) in raw.limits {
        let line = header_line(text, "limits", &k, v.span().start);
        let l = v.into_inner();
        if !automation.contains_key(&k) {
            errors.push(Finding::error(
                file,
                Some(line),
                format!("[limits.{k}] names `{k}`, which is not an automation principal: stop conditions bind [automation] entries only"),
            ));
        }
        for (what, v) in [
            ("max_credentials_per_window", l.max_credentials_per_window),
            ("window_minutes", l.window_minutes),
            ("max_accounts_per_plan", l.max_accounts_per_plan),
        ] {
            if v == Some(0) {
                errors.push(Finding::error(
                    file,
                    Some(line),
                    format!("[limits.{k}] {what} is 0: to stop `{k}` from acting at all, remove its permits or use `cordon halt`"),
                ));
            }
        }
        if l.window_minutes.is_some() && l.max_credentials_per_window.is_none() {
            errors.push(Finding::error(
                file,
                Some(line),
                format!("[limits.{k}] window_minutes without max_credentials_per_window limits nothing: add max_credentials_per_window"),
            ));
        }
        if l.environments.as_ref().is_some_and(Vec::is_empty) {
            errors.push(Finding::error(
                file,
                Some(line),
                format!(
                    "[limits.{k}] environments is empty: list the environments `{k}` may act in"
                ),
            ));
        }
        limits.insert(
            k,
            LimitsDef {
                max_credentials_per_window: l.max_credentials_per_window,
                window_minutes: l.window_minutes.unwrap_or(60),
                max_accounts_per_plan: l.max_accounts_per_plan,
                min_severity: l.min_severity,
                environments: l.environments,
                line,
            },
        );
    }
    for needed in ["contain", "restore"] {
        if !classes.contains_key(needed) {
            errors.push(Finding::error(
                file,
                None,
                format!("decision class `{needed}` is missing: add a [classes.{needed}] table with owner, backup and escalate_after_minutes"),
            ));
        }
    }
    for (name, c) in &classes {
        for (what, role) in [("owner", Some(&c.owner)), ("backup", c.backup.as_ref())] {
            if let Some(role) = role {
                if !roles.contains_key(role) {
                    errors.push(Finding::error(
                        file,
                        Some(c.line),
                        format!("decision class `{name}` names {what} role `{role}`, which is not defined: add [roles.{role}] or fix the name"),
                    ));
                }
            }
        }
    }
    for name in people.keys() {
        if automation.contains_key(name) {
            errors.push(Finding::error(
                file,
                people.get(name).map(|p: &PersonDef| p.line),
                format!("`{name}` is both a person and an automation principal: rename one"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Roster {
        organisation: raw.organisation.and_then(|o| o.name),
        roles,
        people,
        automation,
        classes,
        limits,
    })
}

fn decode_sha256(s: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()?;
    bytes.try_into().ok()
}
