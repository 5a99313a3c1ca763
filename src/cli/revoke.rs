//! One-shot commands for the on-call engineer: identify → plan → gate →
//! apply → verify. `revoke`, `quarantine` and `restore`.

use std::collections::BTreeMap;
use std::io::Read;

use clap::{Args, Subcommand};
use cordon_connector::{Action, DecisionClass, Outcome, PlanStep, Provider, Secret, Target};

use super::apply::{run_plan, RunOpts};
use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use super::plan::print_plan;
use crate::engine::{Journal, SecretBag};
use crate::gate::Decision;
use crate::intake::classify::{classify, Found, GithubKind};
use crate::plan::{add_steps, github_token_step, identify_keys, Plan, PlanMeta};

#[derive(Args, Debug, Clone)]
pub struct OneShot {
    #[command(flatten)]
    pub meta: PlanMeta,
    /// Write the plan and show the decisions, but act on nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Break-glass (the policy says who may); `--reason` is required with it.
    #[arg(long, requires = "reason")]
    pub break_glass: bool,
    /// Steps in flight at once.
    #[arg(long, default_value_t = 32, value_parser = super::args::concurrency)]
    pub concurrency: usize,
    /// Cap on operations per second per account (a snapshot, a change or a
    /// check). Without it the rate adapts: it starts at 10 (safe for real IAM),
    /// rises while the provider answers and halves when it throttles, up to 500.
    #[arg(long, value_parser = super::args::rate)]
    pub rate: Option<f64>,
}

impl OneShot {
    pub fn run_opts(&self) -> RunOpts {
        RunOpts {
            requester: None,
            break_glass: self.break_glass,
            reason: self.meta.reason.clone(),
            concurrency: self.concurrency,
            rate: self.rate,
            ..RunOpts::default()
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum RevokeCommand {
    /// Disable leaked AWS access keys (and optionally quarantine their users).
    AwsKey {
        /// The access key ids (AKIA... or ASIA...). Not secret. One plan holds them all.
        #[arg(required = true)]
        key_ids: Vec<String>,
        /// Environment variable holding the leaked secret access key (one key
        /// id only), so that verification can prove the key dead with a signed call.
        #[arg(long, value_name = "VAR")]
        secret_env: Option<String>,
        /// Also quarantine the key's user (deny-all, console login removed).
        #[arg(long)]
        quarantine_user: bool,
        /// For ASIA keys: the role whose sessions to revoke.
        #[arg(long)]
        role: Option<String>,
        /// For an ASIA key (with --secret-env): environment variable holding its session
        /// token. The session then names its own principal (`sts:GetCallerIdentity`
        /// signed with it): a role session, an IAM user's GetSessionToken session or a
        /// federation token, each contained its own way.
        #[arg(long, value_name = "VAR", requires = "secret_env")]
        session_token_env: Option<String>,
        #[command(flatten)]
        one: OneShot,
    },
    /// Revoke a leaked GitHub token, read from stdin or an environment
    /// variable (never from argv: argv leaks into shell history and `ps`).
    GithubToken {
        #[arg(long, conflicts_with = "env", required_unless_present = "env")]
        stdin: bool,
        #[arg(long, value_name = "VAR")]
        env: Option<String>,
        #[command(flatten)]
        one: OneShot,
    },
    /// Revoke an OAuth app's token (or, with --grant, the user's whole
    /// authorization) with the app's client credentials.
    GithubOauthToken(super::revoke_github::OauthTokenArgs),
    /// Delete a deploy key, found by the fingerprint of the leaked private key.
    GithubDeployKey(super::revoke_github::DeployKeyArgs),
    /// Remove a fine-grained token's access to one organisation (partial: the
    /// token stays valid elsewhere).
    GithubOrgPat(super::revoke_github::OrgPatArgs),
}

#[derive(Subcommand, Debug)]
pub enum QuarantineCommand {
    /// Deny-all on an IAM user and delete its console login profile.
    AwsUser {
        name: String,
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        one: OneShot,
    },
    /// Deny-all on an IAM role plus revocation of its live sessions.
    AwsRole {
        name: String,
        #[arg(long)]
        account: Option<String>,
        /// Environment of the role (`production` needs more authority).
        #[arg(long)]
        environment: Option<String>,
        #[command(flatten)]
        one: OneShot,
    },
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// `PLAN` (every contained step) or `PLAN:STEP`.
    pub what: String,
    /// Re-activate a leaked access key too (never done unless asked).
    #[arg(long)]
    pub reactivate_key: bool,
    /// Remove a session cut-off or a quarantine even while sessions issued before it (a
    /// leaked key's) could still be valid: that re-enables them. Without it, such a
    /// restore is refused until cut-off + the longest session (36 h for users).
    #[arg(long)]
    pub revive_sessions: bool,
    #[command(flatten)]
    pub one: OneShot,
}

/// Write the plan, then either show decisions (dry run) or run it.
pub(super) async fn plan_and_run(
    ctx: &Context,
    out: &Out,
    one: &OneShot,
    steps: Vec<PlanStep>,
    secrets: SecretBag,
) -> CmdResult {
    let (id, bytes, plan) = ctx.write_plan(&one.meta, steps)?;
    if one.dry_run {
        return dry_run(ctx, out, &id, &plan);
    }
    run_plan(ctx, out, &id, &bytes, &plan, &one.run_opts(), &secrets).await
}

pub fn dry_run(ctx: &Context, out: &Out, id: &str, plan: &Plan) -> CmdResult {
    let decisions = ctx.dry_run_decisions(id, plan);
    if out.json {
        out.json(&serde_json::json!({"id": id, "plan": plan, "dry_run": true, "decisions": decisions.iter().map(|(s, d)| serde_json::json!({"step": s, "decision": d})).collect::<Vec<_>>()}));
    } else {
        print_dry_run(out, id, plan, &decisions);
    }
    Ok(crate::respond::dry_run_exit(&decisions).unwrap_or(Exit::Ok))
}

/// The plan and what the gate would decide per step, as a table and lines.
pub fn print_dry_run(out: &Out, id: &str, plan: &Plan, decisions: &[(String, Decision)]) {
    print_plan(out, id, plan);
    for (s, d) in decisions {
        out.line(if d.is_allow() {
            format!("{s}: would be allowed by {}", d.policies.join(", "))
        } else if d.is_stopped() {
            format!("{s}: would be stopped: {}", d.why())
        } else if d.awaits_people() {
            format!("{s}: would wait for a person: {}", d.why())
        } else {
            format!("{s}: would be denied: {}", d.why())
        });
    }
    out.line(format!("dry run: nothing was done. Act with `cordon apply {id}` (the requester is a claim until signed: `cordon approve {id} --key ...`)"));
}

pub(super) fn read_secret_env(var: &str) -> Result<Secret, CommandError> {
    std::env::var(var)
        .map(|v| Secret::new(v.trim().to_owned()))
        .map_err(|_| CommandError::usage(format!("environment variable `{var}` is not set")))
}

pub async fn cmd_revoke(ctx: &Context, out: &Out, cmd: RevokeCommand) -> CmdResult {
    match cmd {
        RevokeCommand::AwsKey {
            key_ids,
            secret_env,
            quarantine_user,
            role,
            session_token_env,
            one,
        } => {
            for k in &key_ids {
                cordon_aws::key_kind(k).map_err(|e| CommandError::usage(e.message))?;
            }
            if secret_env.is_some() && key_ids.len() > 1 {
                return Err(CommandError::usage(
                    "--secret-env goes with a single key id",
                ));
            }
            let mut secrets = SecretBag::default();
            let mut fp = None;
            if let Some(var) = &secret_env {
                let s = read_secret_env(var)?;
                fp = Some(s.fingerprint());
                secrets.insert(s);
            }
            let aws = ctx.aws().await?;
            let identities = match (&session_token_env, &secret_env) {
                (Some(token_var), Some(secret_var)) => {
                    let key = &key_ids[0];
                    if !key.starts_with("ASIA") {
                        return Err(CommandError::usage(format!(
                            "--session-token-env goes with an ASIA (session) key, not `{key}`"
                        )));
                    }
                    let token = read_secret_env(token_var)?;
                    let secret = read_secret_env(secret_var)?;
                    vec![aws
                        .identify_session(key, &secret, &token)
                        .await
                        .map_err(|e| format!("cannot identify `{key}`: {}", e.message))]
                }
                _ => identify_keys(&aws, &key_ids, one.concurrency).await,
            };
            let mut steps: Vec<PlanStep> = Vec::new();
            for identity in identities {
                let identity = identity.map_err(CommandError::failed)?;
                if !out.json && key_ids.len() <= 20 {
                    out.line(format!("identified: {}", identity.summary()));
                }
                let mine = cordon_aws::contain_steps_for_key(
                    &identity,
                    &cordon_aws::ContainOptions {
                        quarantine_user,
                        quarantine_mode: None,
                        role: role.clone(),
                        secret_fingerprint: fp.clone(),
                    },
                )?;
                add_steps(&mut steps, mine);
            }
            plan_and_run(ctx, out, &one, steps, secrets).await
        }
        RevokeCommand::GithubToken { stdin, env, one } => {
            let raw = if stdin {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|e| CommandError::failed(format!("cannot read stdin: {e}")))?;
                Secret::new(s)
            } else if let Some(var) = &env {
                read_secret_env(var)?
            } else {
                return Err(CommandError::usage("give --stdin or --env VAR"));
            };
            let mut secrets = SecretBag::default();
            let mut steps = Vec::new();
            let mut rejected = Vec::new();
            for f in classify(raw.expose()) {
                match f {
                    Found::GithubToken { kind, secret, .. } => {
                        steps.push(github_token_step(
                            format!("s{}", steps.len() + 1),
                            kind == GithubKind::Installation,
                            kind.prefix().trim_end_matches('_'),
                            secret.fingerprint(),
                        ));
                        secrets.insert(secret);
                    }
                    Found::Invalid {
                        reason,
                        fingerprint,
                        ..
                    } => rejected.push(format!("sha256:{fingerprint}: {reason}")),
                    _ => {}
                }
            }
            for r in &rejected {
                if !out.json {
                    out.line(format!("not containable: {r}"));
                }
            }
            if steps.is_empty() {
                return Err(CommandError::new(Exit::NothingContainable, "no valid GitHub token in the input")
                    .hint("tokens start with ghp_, gho_, ghu_, ghs_, ghr_ or github_pat_; classic ones must pass their checksum"));
            }
            plan_and_run(ctx, out, &one, steps, secrets).await
        }
        RevokeCommand::GithubOauthToken(a) => {
            super::revoke_github::cmd_oauth_token(ctx, out, a).await
        }
        RevokeCommand::GithubDeployKey(a) => {
            super::revoke_github::cmd_deploy_key(ctx, out, a).await
        }
        RevokeCommand::GithubOrgPat(a) => super::revoke_github::cmd_org_pat(ctx, out, a).await,
    }
}

pub async fn cmd_quarantine(ctx: &Context, out: &Out, cmd: QuarantineCommand) -> CmdResult {
    let (action, kind, name, account, environment, one) = match cmd {
        QuarantineCommand::AwsUser { name, account, one } => {
            (Action::AwsQuarantineUser, "user", name, account, None, one)
        }
        QuarantineCommand::AwsRole {
            name,
            account,
            environment,
            one,
        } => (
            Action::AwsQuarantineRole,
            "role",
            name,
            account,
            environment,
            one,
        ),
    };
    let account = match account {
        Some(a) => a,
        None => ctx.aws().await?.own_account().await.map_err(|e| {
            CommandError::failed(format!("cannot tell the AWS account: {}", e.message))
                .hint("pass --account")
        })?,
    };
    let mut target = Target::new(Provider::Aws, kind, name);
    target.account = Some(account);
    target.environment = environment;
    let steps = vec![PlanStep {
        id: "s1".into(),
        action,
        target,
        secret: None,
        params: BTreeMap::new(),
    }];
    plan_and_run(ctx, out, &one, steps, SecretBag::default()).await
}

pub async fn cmd_restore(ctx: &Context, out: &Out, a: RestoreArgs) -> CmdResult {
    let (plan_ref, step_ref) = match a.what.split_once(':') {
        Some((p, s)) => (p.to_owned(), Some(s.to_owned())),
        None => (a.what.clone(), None),
    };
    let (id, _, plan) = ctx.load_plan(&plan_ref)?;
    let journal = Journal::for_plan(&ctx.log.read_all()?, &id);
    let mut steps = Vec::new();
    let mut skipped = Vec::new();
    for s in &plan.steps {
        if step_ref.as_ref().is_some_and(|r| r != &s.id)
            || s.action.class() != DecisionClass::Contain
        {
            continue;
        }
        let j = journal.step(&s.id);
        let done = j
            .and_then(|j| j.outcome.as_ref())
            .is_some_and(|o| matches!(o, Outcome::Done { .. }));
        let Some(evidence) = j.and_then(|j| j.evidence.clone()).filter(|_| done) else {
            skipped.push(format!(
                "{}: cordon did not change it (nothing to undo)",
                s.id
            ));
            continue;
        };
        let restore = match s.action.provider() {
            Provider::Aws => cordon_aws::restore_step_for(s, &evidence),
            Provider::Test => Some(PlanStep {
                id: s.id.clone(),
                action: Action::TestRestore,
                target: s.target.clone(),
                secret: None,
                params: BTreeMap::from([(
                    "evidence_hash".to_owned(),
                    serde_json::Value::String(evidence),
                )]),
            }),
            Provider::Github => {
                skipped.push(format!(
                    "{}: a revoked GitHub credential cannot be restored; issue a new one",
                    s.id
                ));
                None
            }
        };
        if let Some(mut r) = restore {
            r.id = format!("s{}", steps.len() + 1);
            if r.action == Action::AwsRestoreAccessKey {
                if !a.reactivate_key {
                    // A leaked key is never re-activated unless asked for.
                    skipped.push(format!(
                        "{}: the leaked access key stays disabled (rotate it, or pass --reactivate-key)",
                        s.id
                    ));
                    continue;
                }
                r.params
                    .insert("reactivate_key".into(), serde_json::Value::Bool(true));
            }
            if a.revive_sessions
                && matches!(r.action, Action::AwsRestoreUser | Action::AwsRestoreRole)
            {
                r.params
                    .insert("revive_sessions".into(), serde_json::Value::Bool(true));
            }
            steps.push(r);
        }
    }
    for s in &skipped {
        if !out.json {
            out.line(format!("skipped {s}"));
        }
    }
    if steps.is_empty() {
        return Err(CommandError::failed(format!(
            "nothing in plan `{id}` can be restored"
        )));
    }
    let mut one = a.one;
    if one.meta.incident.is_none() {
        // Inherit the original plan's incident while it is open; a restore
        // after the incident was closed stands on its own.
        let ledger = super::incident::load_ledger(ctx)?;
        one.meta.incident = plan.incident.clone().filter(|i| {
            ledger
                .get(i)
                .is_some_and(|x| x.state == crate::incident::IncidentState::Open)
        });
    }
    plan_and_run(ctx, out, &one, steps, SecretBag::default()).await
}
