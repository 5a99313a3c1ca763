//! The authority policy: who may contain, who may restore, and the proof.
//!
//! A policy directory holds four files, read in this fixed order:
//!
//! | file                   | what                                                   |
//! |------------------------|--------------------------------------------------------|
//! | `authority.cedar`      | the rules (Cedar), every one with an `@id("...")`      |
//! | `authority.cedarschema`| the schema the rules are validated against, strictly   |
//! | `roster.toml`          | roles, people, automation principals, decision classes |
//! | `allowed_signers`      | OpenSSH keys that speak for people (and automation)    |
//!
//! [`load`] reads and checks them all; anything wrong stops the load, and a
//! [`PolicyGate`] built from a failed load denies every step with the error
//! (fail closed). The gate ([`Policy::decide`]) asks Cedar once per plan step;
//! [`Policy::authenticate`] turns the plan's stored OpenSSH signatures (and an
//! automation secret) into the proven requester and the approvals that count;
//! [`Policy::explain`] answers what-if questions; [`check`] lints a directory.
//!
//! The policy hash ([`Policy::hash`], `Decision.policy_hash`) is SHA-256 (hex)
//! over, for each file in the order above: its name, `\n`, its length in
//! bytes as decimal, `\n`, its bytes. The framing makes the hash change when
//! bytes move from one file to the next.

mod approvals;
pub mod bounds;
mod check;
mod decide;
mod explain;
mod memo;
pub mod reason;
pub mod roster;
pub mod signers;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use cedar_policy::{PolicyId, PolicySet, Schema, ValidationMode, Validator};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use approvals::{
    sign, verify_signature, ApprovalError, AuthRequest, Authentication, RejectedItem, Rejection,
    SignError, SignatureCheck, StoredSignature, NAMESPACE,
};
pub use bounds::Bounds;
pub use check::{check, example_secrets, DEMO_ENV, EXAMPLE_SECRETS};
pub use decide::{ApprovalSummary, RequestContext};
pub use explain::{parse_target, ExplainError, Explanation, WhatIf};
pub use reason::Reason;
pub use roster::Roster;
pub use signers::AllowedSigners;

use crate::gate::{Decision, Gate, GateInput};

pub const POLICY_FILE: &str = "authority.cedar";
pub const SCHEMA_FILE: &str = "authority.cedarschema";
pub const ROSTER_FILE: &str = "roster.toml";
pub const SIGNERS_FILE: &str = "allowed_signers";
/// The policy files, in the order they are hashed.
pub const FILES: [&str; 4] = [POLICY_FILE, SCHEMA_FILE, ROSTER_FILE, SIGNERS_FILE];

/// One problem in a policy directory, located in a file (and a line when known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: FindingSeverity,
    /// The file's path as given (directory joined with the file name).
    pub file: String,
    /// 1-based.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingSeverity {
    /// The policy does not load (or would not allow what it means to).
    Error,
    /// The policy loads but something is likely wrong.
    Warning,
}

impl Finding {
    pub fn error(file: impl Into<String>, line: Option<usize>, message: impl Into<String>) -> Self {
        Finding {
            severity: FindingSeverity::Error,
            file: file.into(),
            line,
            message: message.into(),
        }
    }

    pub fn warning(
        file: impl Into<String>,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            severity: FindingSeverity::Warning,
            file: file.into(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file, l, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// The policy directory could not be loaded. Every decision made while this
/// is the state is a deny carrying [`LoadError::summary`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.summary())]
pub struct LoadError {
    pub dir: PathBuf,
    /// Hash of the bytes that could be read (missing files hash as absent).
    pub hash: String,
    /// At least one, each an error.
    pub findings: Vec<Finding>,
    /// The policy loads, but its roster still holds a published example
    /// secret, refused outside a demo ([`load_for_use`]).
    pub example_secrets: bool,
}

impl LoadError {
    /// The reason every decision made under this error gives.
    pub fn reason(&self) -> Reason {
        let detail = self.summary();
        if self.example_secrets {
            Reason::ExampleSecretRefused { detail }
        } else {
            Reason::PolicyNotLoaded { detail }
        }
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "the authority policy in `{}` does not load, so nothing is allowed: ",
            self.dir.display()
        );
        let shown: Vec<String> = self
            .findings
            .iter()
            .take(3)
            .map(|f| f.to_string())
            .collect();
        s.push_str(&shown.join("; "));
        if self.findings.len() > 3 {
            s.push_str(&format!("; and {} more", self.findings.len() - 3));
        }
        s.push_str(" (run `cordon policy check` for all findings)");
        s
    }
}

/// Metadata of one Cedar policy, from its annotations.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInfo {
    pub id: String,
    pub effect: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// 1-based line of the policy's `@id` in `authority.cedar`.
    pub line: usize,
}

/// A loaded, validated authority policy.
pub struct Policy {
    dir: PathBuf,
    hash: String,
    schema: Schema,
    policies: PolicySet,
    info: Vec<PolicyInfo>,
    roster: Roster,
    signers: AllowedSigners,
    /// Kept for `check`'s lints (line lookups).
    policy_text: String,
    authorizer: cedar_policy::Authorizer,
    /// Per action, the schema's action entities a request for it can look
    /// up (`decide::action_stores`), built once at load. Each request adds
    /// its principal, its roles and its target to a copy, validated against
    /// the schema. An action without one is built the reference way.
    stores: std::collections::HashMap<cordon_connector::Action, cedar_policy::Entities>,
    /// The request shapes that passed the schema check of `Request::new`
    /// (`decide::RequestShapes`), not checked again.
    request_shapes: decide::RequestShapes,
    /// Build every entity per request instead, check every request against
    /// the schema, and ask every policy (see
    /// [`Policy::rebuilding_entities_per_request`]).
    rebuild_entities: bool,
    /// The policies that can apply, per action and principal type
    /// (`decide::scoped_sets`); a request without an entry asks them all.
    scoped: std::collections::HashMap<(cordon_connector::Action, &'static str), PolicySet>,
    /// Narrower still, per roster member and action
    /// (`decide::member_sets`), built on the member's first request.
    members: std::collections::HashMap<String, std::sync::OnceLock<decide::MemberSets>>,
    /// The policies led by `context.break_glass`
    /// (`decide::led_by_break_glass_ids`).
    led: Vec<PolicyId>,
    /// `scoped` for requests without break-glass
    /// (`decide::without_break_glass`).
    calm_scoped: std::collections::HashMap<(cordon_connector::Action, &'static str), PolicySet>,
    /// Cedar's answers by request as the policies can see it (`memo`).
    memo: memo::Memo,
}

impl Policy {
    /// The same policy deciding the way it did before the per-action entity
    /// stores, the skipped schema checks and the per-action policy sets:
    /// every entity (the schema's actions included) built and validated per
    /// request, every request checked against the schema, every policy
    /// asked. For the side-by-side benchmark (`benches/policy_decision.rs`)
    /// and the tests that both ways decide alike; never used by cordon itself.
    #[doc(hidden)]
    pub fn rebuilding_entities_per_request(mut self) -> Policy {
        self.rebuild_entities = true;
        self.memo.off();
        self
    }

    /// The same policy evaluating every request, none answered from the
    /// decision memo (`memo`): what the first request of its kind costs.
    /// For the benchmark and the tests; never used by cordon itself.
    #[doc(hidden)]
    pub fn without_decision_memo(mut self) -> Policy {
        self.memo.off();
        self
    }

    /// Requests answered from the decision memo so far (the benchmark shows
    /// it, so that a figure from memo hits says so).
    #[doc(hidden)]
    pub fn decision_memo_hits(&self) -> u64 {
        self.memo.hits()
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("dir", &self.dir)
            .field("hash", &self.hash)
            .field("policies", &self.info.len())
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// SHA-256 (hex) of the policy files, as described in the module docs.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    pub fn signers(&self) -> &AllowedSigners {
        &self.signers
    }

    /// Every policy's id, effect, description and line, in file order.
    pub fn policies(&self) -> &[PolicyInfo] {
        &self.info
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Gate for Policy {
    fn decide(&self, input: &GateInput<'_>) -> Decision {
        Policy::decide(self, input)
    }
    fn decide_without_evidence(&self, input: &GateInput<'_>) -> Decision {
        Policy::decide_without_evidence(self, input)
    }
}

/// A gate that is either a loaded policy or the reason it failed to load.
/// Built with [`PolicyGate::load`]; a failed load denies every step.
///
/// With [`Bounds`] attached ([`PolicyGate::with_bounds`]) the gate also
/// applies the halt switch and the automation principals' limits. Without
/// them (a gate built for what-if questions), an automation principal that
/// has limits is stopped: its usage cannot be counted (fail closed).
#[derive(Debug)]
pub struct PolicyGate {
    inner: Result<Policy, LoadError>,
    bounds: Option<Bounds>,
}

impl PolicyGate {
    /// Load the policy for use. Beyond [`load`], a roster that still uses a
    /// published example secret is refused unless `demo` (the `CORDON_DEMO`
    /// switch): otherwise anyone who read the docs could act as `ci`.
    pub fn load(dir: &Path, demo: bool) -> PolicyGate {
        PolicyGate {
            inner: load_for_use(dir, demo),
            bounds: None,
        }
    }

    /// Apply the halt switch and the limits of the state these bounds read.
    pub fn with_bounds(mut self, bounds: Bounds) -> PolicyGate {
        self.bounds = Some(bounds);
        self
    }

    pub fn policy(&self) -> Result<&Policy, &LoadError> {
        self.inner.as_ref()
    }
}

impl From<Policy> for PolicyGate {
    fn from(p: Policy) -> Self {
        PolicyGate {
            inner: Ok(p),
            bounds: None,
        }
    }
}

impl Gate for PolicyGate {
    fn decide(&self, input: &GateInput<'_>) -> Decision {
        match &self.inner {
            Ok(p) => {
                let d = p.decide(input);
                match &self.bounds {
                    Some(b) => b.check(p, input, d),
                    None if d.is_allow()
                        && input.requester.kind == crate::plan::PrincipalKind::Automation
                        && p.roster().limits.contains_key(&input.requester.name) =>
                    {
                        d.stop(Reason::LimitsWithoutState {
                            principal: input.requester.name.clone(),
                        })
                    }
                    None => d,
                }
            }
            Err(e) => Decision::deny(e.hash.clone(), e.reason()),
        }
    }
    /// Only the policy's evidence rule: the engine asks this after the
    /// step's own decision allowed it, and that decision already went
    /// through the bounds (halt switch, limits); counting the step twice
    /// against a limit would be wrong.
    fn decide_without_evidence(&self, input: &GateInput<'_>) -> Decision {
        match &self.inner {
            Ok(p) => p.decide_without_evidence(input),
            Err(e) => Decision::deny(e.hash.clone(), e.reason()),
        }
    }
}

/// The policy hash over file contents (`None` = the file could not be read).
pub fn policy_hash(files: &[(&str, Option<&[u8]>)]) -> String {
    let mut h = Sha256::new();
    for (name, bytes) in files {
        h.update(name.as_bytes());
        h.update(b"\n");
        match bytes {
            Some(b) => {
                h.update(b.len().to_string().as_bytes());
                h.update(b"\n");
                h.update(b);
            }
            None => h.update(b"absent\n"),
        }
    }
    hex::encode(h.finalize())
}

/// Why a policy path could have been written by someone else, if it could:
/// owned by another user (neither this one nor root), or writable by group or
/// others. The same rule for the state directory's own policy and for any
/// `--policy DIR`, and for `policy check` as for every other command: a
/// permit-all rule dropped into a world-writable directory must not decide.
#[cfg(unix)]
pub fn unsafe_path(path: &Path) -> Option<String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let md = std::fs::metadata(path).ok()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let what = if md.is_dir() { "directory" } else { "file" };
    if md.uid() != me && md.uid() != 0 {
        let fix = if md.is_dir() {
            format!("`chown -R {me} {}`", path.display())
        } else {
            format!("`chown {me} {}`", path.display())
        };
        return Some(format!(
            "the policy {what} is owned by uid {} (you are uid {me}): whoever owns it decides who may act; run {fix}, or point --policy at a policy you own",
            md.uid()
        ));
    }
    let mode = md.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Some(format!(
            "the policy {what} is writable by group or others (mode {mode:03o}): anyone who can write it decides who may act; run `chmod go-w {}`",
            path.display()
        ));
    }
    None
}

#[cfg(not(unix))]
pub fn unsafe_path(_path: &Path) -> Option<String> {
    None
}

/// [`load`], then refuse the published example secrets unless `demo`.
pub fn load_for_use(dir: &Path, demo: bool) -> Result<Policy, LoadError> {
    let p = load(dir)?;
    let refused: Vec<Finding> = example_secrets(&p, demo)
        .into_iter()
        .filter(|f| f.severity == FindingSeverity::Error)
        .collect();
    if refused.is_empty() {
        Ok(p)
    } else {
        Err(LoadError {
            dir: dir.to_path_buf(),
            hash: p.hash().to_owned(),
            findings: refused,
            example_secrets: true,
        })
    }
}

/// Load and check the policy directory `dir`. A lint error (a person
/// holding a role nobody defined) means the files do not say what their
/// author meant: it stops every command, as it fails `policy check`.
pub fn load(dir: &Path) -> Result<Policy, LoadError> {
    let policy = load_unlinted(dir)?;
    let errors: Vec<Finding> = check::lint(&policy, chrono::Utc::now())
        .into_iter()
        .filter(|f| f.severity == FindingSeverity::Error)
        .collect();
    if errors.is_empty() {
        Ok(policy)
    } else {
        Err(LoadError {
            dir: dir.to_path_buf(),
            hash: policy.hash,
            findings: errors,
            example_secrets: false,
        })
    }
}

/// Load, parse and validate, without the lints (`check` runs them all).
fn load_unlinted(dir: &Path) -> Result<Policy, LoadError> {
    let mut findings = Vec::new();
    let mut contents: Vec<Option<Vec<u8>>> = Vec::new();
    if let Some(why) = unsafe_path(dir) {
        findings.push(Finding::error(dir.display().to_string(), None, why));
    }
    for name in FILES {
        if let Some(why) = unsafe_path(&dir.join(name)) {
            findings.push(Finding::error(
                dir.join(name).display().to_string(),
                None,
                why,
            ));
        }
    }
    for name in FILES {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(b) => contents.push(Some(b)),
            Err(e) => {
                let what = if e.kind() == std::io::ErrorKind::NotFound {
                    "is missing".to_string()
                } else {
                    format!("cannot be read: {e}")
                };
                findings.push(Finding::error(
                    path.display().to_string(),
                    None,
                    format!(
                        "the policy file {what}: a policy directory needs {}",
                        FILES.join(", ")
                    ),
                ));
                contents.push(None);
            }
        }
    }
    let hash = policy_hash(
        &FILES
            .iter()
            .zip(&contents)
            .map(|(n, c)| (*n, c.as_deref()))
            .collect::<Vec<_>>(),
    );
    let fail = |findings: Vec<Finding>| LoadError {
        dir: dir.to_path_buf(),
        hash: hash.clone(),
        findings,
        example_secrets: false,
    };
    if !findings.is_empty() {
        return Err(fail(findings));
    }
    let mut texts = Vec::new();
    for (name, c) in FILES.iter().zip(&contents) {
        let file = dir.join(name).display().to_string();
        match c.as_deref().map(std::str::from_utf8) {
            Some(Ok(t)) => texts.push(t.to_owned()),
            _ => {
                findings.push(Finding::error(file, None, "the file is not UTF-8 text"));
                texts.push(String::new());
            }
        }
    }
    if !findings.is_empty() {
        return Err(fail(findings));
    }
    let fname = |n: &str| dir.join(n).display().to_string();
    let [policy_text, schema_text, roster_text, signers_text] = [0, 1, 2, 3].map(|i| &texts[i]);

    for (name, text) in [
        (POLICY_FILE, policy_text),
        (SCHEMA_FILE, schema_text),
        (ROSTER_FILE, roster_text),
    ] {
        if is_blank(text, name) {
            findings.push(Finding::error(
                fname(name),
                Some(1),
                "the file is empty: an empty policy would deny everything, so cordon refuses to load it",
            ));
        }
    }
    if !findings.is_empty() {
        return Err(fail(findings));
    }

    let schema = match Schema::from_cedarschema_str(schema_text) {
        Ok((s, _warnings)) => Some(s),
        Err(e) => {
            findings.extend(diag_findings(&fname(SCHEMA_FILE), schema_text, &e));
            None
        }
    };
    let parsed = match parse_policies(&fname(POLICY_FILE), policy_text) {
        Ok(p) => Some(p),
        Err(f) => {
            findings.extend(f);
            None
        }
    };
    let roster = match roster::parse(roster_text, &fname(ROSTER_FILE)) {
        Ok(r) => Some(r),
        Err(f) => {
            findings.extend(f);
            None
        }
    };
    let signers = match signers::parse(signers_text, &fname(SIGNERS_FILE)) {
        Ok(s) => Some(s),
        Err(f) => {
            findings.extend(f);
            None
        }
    };
    if let (Some(schema), Some((policies, _))) = (&schema, &parsed) {
        let result = Validator::new(schema.clone()).validate(policies, ValidationMode::Strict);
        for e in result.validation_errors() {
            findings.extend(diag_findings(&fname(POLICY_FILE), policy_text, e));
        }
    }
    match (schema, parsed, roster, signers) {
        (Some(schema), Some((policies, info)), Some(roster), Some(signers))
            if findings.is_empty() =>
        {
            let scoped = decide::scoped_sets(&schema, &policies);
            let stores = decide::action_stores(&schema, &policies, &scoped);
            let led = decide::led_by_break_glass_ids(&policies);
            let calm_scoped = scoped
                .iter()
                .filter_map(|(k, set)| Some((*k, decide::without_break_glass(set, &led)?)))
                .collect();
            let members = roster
                .people
                .keys()
                .chain(roster.automation.keys())
                .map(|n| (n.clone(), std::sync::OnceLock::new()))
                .collect();
            let request_shapes = decide::RequestShapes::new(schema_text);
            Ok(Policy {
                // Off where the schema checks depend on ids (see `memo`).
                memo: memo::Memo::new(request_shapes.enabled()),
                members,
                led,
                calm_scoped,
                stores,
                request_shapes,
                scoped,
                rebuild_entities: false,
                dir: dir.to_path_buf(),
                hash,
                schema,
                policies,
                info,
                roster,
                signers,
                policy_text: policy_text.clone(),
                authorizer: cedar_policy::Authorizer::new(),
            })
        }
        _ => Err(fail(findings)),
    }
}

/// True when the file holds nothing but whitespace and comments.
fn is_blank(text: &str, name: &str) -> bool {
    let comment = if name == ROSTER_FILE { "#" } else { "//" };
    text.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with(comment))
}

/// Parse `authority.cedar`, renaming every policy to its `@id`.
fn parse_policies(file: &str, text: &str) -> Result<(PolicySet, Vec<PolicyInfo>), Vec<Finding>> {
    let parsed: PolicySet = text
        .parse()
        .map_err(|e: cedar_policy::ParseErrors| diag_findings(file, text, &e))?;
    let mut findings = Vec::new();
    let mut set = PolicySet::new();
    let mut info = Vec::new();
    // `policies()` is unordered: sort by position in the file.
    // Two policies with the same `@id` get that annotation's first and
    // second occurrence, so the duplicate is reported where it is.
    let mut seen_ids: std::collections::HashMap<String, usize> = Default::default();
    let mut all: Vec<(usize, &cedar_policy::Policy)> = parsed
        .policies()
        .map(|p| {
            let n = seen_ids
                .entry(p.annotation("id").unwrap_or_default().to_owned())
                .or_default();
            let o = policy_offset(text, p, *n);
            *n += 1;
            (o, p)
        })
        .collect();
    all.sort_by_key(|(o, _)| *o);
    if parsed.templates().next().is_some() {
        findings.push(Finding::error(
            file,
            None,
            "policy templates (`?principal`, `?resource`) are not supported: write static policies",
        ));
    }
    for (offset, p) in all {
        let line = roster::line_of(text, offset);
        let Some(id) = p.annotation("id").filter(|s| !s.is_empty()) else {
            findings.push(Finding::error(
                file,
                Some(line),
                "policy has no `@id(\"...\")` annotation: every policy needs one, so decisions can name it",
            ));
            continue;
        };
        let renamed = p.new_id(PolicyId::new(id));
        if set.add(renamed).is_err() {
            findings.push(Finding::error(
                file,
                Some(line),
                format!("policy id `{id}` is used twice: ids must be unique"),
            ));
            continue;
        }
        info.push(PolicyInfo {
            id: id.to_owned(),
            effect: match p.effect() {
                cedar_policy::Effect::Permit => "permit",
                cedar_policy::Effect::Forbid => "forbid",
            },
            description: p.annotation("description").map(str::to_owned),
            line,
        });
    }
    if info.is_empty() && findings.is_empty() {
        findings.push(Finding::error(
            file,
            Some(1),
            "the file holds no policy: an empty policy would deny everything, so cordon refuses to load it",
        ));
    }
    if findings.is_empty() {
        Ok((set, info))
    } else {
        Err(findings)
    }
}

/// Where a policy starts in the file: its `@id` annotation when it has one.
fn policy_offset(text: &str, p: &cedar_policy::Policy, nth: usize) -> usize {
    if let Some(id) = p.annotation("id") {
        for pat in [format!("@id(\"{id}\")"), format!("@id( \"{id}\" )")] {
            let found: Vec<usize> = text.match_indices(&pat).map(|(o, _)| o).collect();
            if let Some(o) = found.get(nth).or(found.last()) {
                return *o;
            }
        }
    }
    // Fall back to the policy text's own position.
    let src = p.to_string();
    let head: String = src.chars().take(40).collect();
    text.find(head.trim()).unwrap_or(0)
}

/// Turn a Cedar diagnostic (and its related ones) into findings with lines.
fn diag_findings(file: &str, text: &str, d: &dyn miette::Diagnostic) -> Vec<Finding> {
    let mut out = vec![one_diag(file, text, d)];
    if let Some(rel) = d.related() {
        for r in rel {
            let f = one_diag(file, text, r);
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    out
}

fn one_diag(file: &str, text: &str, d: &dyn miette::Diagnostic) -> Finding {
    let line = d
        .labels()
        .and_then(|mut l| l.next())
        .map(|l| roster::line_of(text, l.offset()));
    let mut msg = d.to_string();
    if let Some(h) = d.help() {
        msg.push_str(&format!(" ({h})"));
    }
    Finding::error(file, line, msg)
}
