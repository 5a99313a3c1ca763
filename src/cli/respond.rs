//! `cordon respond --report FILE|-`: read the report, hand it to the respond
//! pipeline (`crate::respond`), print one summary line per finding.

use std::io::Read;
use std::path::PathBuf;

use clap::Args;

use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use super::revoke::{print_dry_run, OneShot};
use crate::intake::report::{Format, ParseOptions, Provenance, MAX_REPORT_BYTES};
use crate::respond::{parse_intake, respond, Activity, Intake, Progress, RespondOpts, Summary};

#[derive(Args, Debug)]
pub struct RespondArgs {
    /// The scanner report: a file, or `-` for stdin.
    #[arg(long, value_name = "FILE|-")]
    pub report: String,
    /// The report's format; `auto` tells gitleaks, SARIF, trufflehog,
    /// ggshield, detect-secrets, secretlint, GitHub alerts and plain text apart.
    #[arg(long, value_enum, default_value = "auto")]
    pub format: Format,
    /// Directory the report's relative paths refer to (detect-secrets keeps
    /// only a hash: the file is re-read there). Default: the current directory.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Also quarantine the IAM user of each leaked AWS key (deny-all, console
    /// password removed).
    #[arg(long)]
    pub quarantine_user: bool,
    /// The repository whose deploy keys a leaked private key in the report may
    /// open (`OWNER/REPO`): such a key is deleted there. Without it, the
    /// finding names the command that would delete it.
    #[arg(long, value_name = "OWNER/REPO", value_parser = owner_repo)]
    pub github_repo: Option<(String, String)>,
    /// The GitHub App a leaked RSA private key in the report may belong to (a
    /// JWT must name the App): cordon identifies the App with the key
    /// (`GET /app`) and suspends its installations where the policy allows.
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(u64).range(1..))]
    pub github_app_id: Option<u64>,
    /// An organisation whose audit log is searched, after the kill, for what
    /// each leaked GitHub token did (GitHub Enterprise Cloud; cordon's own
    /// token must be an owner's, with `read:audit_log`): keys, webhooks and
    /// other ways back in become tasks of the incident. Repeatable.
    #[arg(long = "github-org", value_name = "ORG", env = "CORDON_GITHUB_ORGS", value_delimiter = ',', value_parser = org_name)]
    pub github_orgs: Vec<String>,
    #[command(flatten)]
    pub one: OneShot,
}

/// `OWNER/REPO` with the characters GitHub allows in each part, so that
/// nothing planned can steer a request elsewhere.
fn owner_repo(v: &str) -> Result<(String, String), String> {
    let ok = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match v.split_once('/') {
        Some((o, r)) if ok(o) && ok(r) => Ok((o.to_owned(), r.to_owned())),
        _ => Err(format!("`{v}` is not OWNER/REPO")),
    }
}

/// An organisation's login: the characters GitHub allows, nothing that can
/// steer a request elsewhere.
pub fn org_name(v: &str) -> Result<String, String> {
    let v = v.trim();
    if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Ok(v.to_owned())
    } else {
        Err(format!("`{v}` is not a github organisation name"))
    }
}

/// Read a report from a file or stdin, refusing anything over the size limit
/// before parsing it.
pub fn read_report(
    arg: &str,
    format: Format,
    root: Option<PathBuf>,
) -> Result<Intake, CommandError> {
    let (bytes, origin) = if arg == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .take(MAX_REPORT_BYTES as u64 + 1)
            .read_to_end(&mut b)
            .map_err(|e| CommandError::failed(format!("cannot read the report from stdin: {e}")))?;
        (b, "stdin".to_owned())
    } else {
        let f = std::fs::File::open(arg).map_err(|e| {
            CommandError::usage(format!("cannot read the report `{arg}`: {e}"))
                .hint("give a report file written by a scanner, or `-` for stdin")
        })?;
        let mut b = Vec::new();
        f.take(MAX_REPORT_BYTES as u64 + 1)
            .read_to_end(&mut b)
            .map_err(|e| CommandError::failed(format!("cannot read the report `{arg}`: {e}")))?;
        (b, arg.to_owned())
    };
    let root = root.or_else(|| {
        // Relative paths in a report usually refer to where the scanner ran:
        // the current directory.
        std::env::current_dir().ok()
    });
    parse_intake(&bytes, format, origin, ParseOptions { root })
}

pub async fn cmd_respond(ctx: &Context, out: &Out, a: RespondArgs) -> CmdResult {
    let progress = std::sync::Arc::new(Progress::default());
    // Cleared before anything is printed, and on every early return.
    let bar = ProgressBar::start(out, &progress);
    let intake = read_report(&a.report, a.format, a.root.clone())?;
    let mut meta = a.one.meta.clone();
    meta.requester = Some(default_requester(&meta));
    let opts = RespondOpts {
        meta,
        dry_run: a.one.dry_run,
        run: a.one.run_opts().options(),
        quarantine_user: a.quarantine_user,
        github_repo: a.github_repo.clone(),
        github_app_id: a.github_app_id,
        github_orgs: a.github_orgs.clone(),
        progress: bar.as_ref().map(|_| progress.clone()),
    };
    let summary = respond(ctx, intake, &opts).await;
    drop(bar);
    let mut summary = summary?;
    summary.exit = ctx.refusal_exit(summary.exit);
    // Diagnostics on stderr, with `--json` too (stdout holds the document).
    for n in &summary.notes {
        super::output::diag(n);
    }
    if !out.json {
        if let (Some(d), Some(id)) = (&summary.dry_run, &summary.plan) {
            print_dry_run(out, id, &d.plan, &d.decisions);
        }
    }
    print_summary(out, &summary);
    Ok(summary.exit)
}

/// A progress bar on stderr while `respond` runs: a spinner while the report
/// is read, then the findings written to the audit log, then the plan's steps
/// as the engine finishes them. Only when stderr is a terminal and the output
/// is not `--json`: a pipe or a CI log gets nothing of it. It is redrawn from
/// the counters of [`Progress`] ten times a second by its own thread, and
/// cleared when dropped.
struct ProgressBar {
    pb: indicatif::ProgressBar,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl ProgressBar {
    fn start(out: &Out, p: &std::sync::Arc<Progress>) -> Option<ProgressBar> {
        use std::io::IsTerminal;
        if out.json || out.capture.is_some() || !std::io::stderr().is_terminal() {
            return None;
        }
        let pb = indicatif::ProgressBar::new(0);
        let spinner = indicatif::ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        let bar =
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {human_pos}/{human_len}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ");
        pb.set_style(spinner.clone());
        pb.set_message("reading the report");
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = {
            let (pb, stop, p) = (pb.clone(), stop.clone(), p.clone());
            std::thread::spawn(move || {
                use std::sync::atomic::Ordering::Relaxed;
                let mut shown = 0u8;
                while !stop.load(Relaxed) {
                    let (steps, findings) = (p.steps.load(Relaxed), p.findings.load(Relaxed));
                    let (phase, len, pos, msg) = if steps > 0 {
                        (2, steps, p.steps_done.load(Relaxed), "containment steps")
                    } else if findings > 0 {
                        (1, findings, p.recorded.load(Relaxed), "findings recorded")
                    } else {
                        (0, 0, 0, "reading the report")
                    };
                    pb.set_length(len as u64);
                    pb.set_position(pos as u64);
                    // Length first: a new style is never drawn with a stale length.
                    if phase != shown {
                        pb.set_style(if phase == 0 {
                            spinner.clone()
                        } else {
                            bar.clone()
                        });
                        pb.set_message(msg);
                        shown = phase;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            })
        };
        Some(ProgressBar {
            pb,
            stop,
            ticker: Some(ticker),
        })
    }
}

impl Drop for ProgressBar {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        self.pb.finish_and_clear();
    }
}

/// The requester when `--as` is not given: `ci` inside a CI job (the `CI`
/// variable every major CI system sets), otherwise the login name, as a claim.
fn default_requester(meta: &crate::plan::PlanMeta) -> String {
    if meta.requester.is_none()
        && std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
    {
        return "ci".into();
    }
    meta.requester_name()
}

fn where_found(p: &Provenance) -> String {
    let mut s = match (&p.file, p.line) {
        (Some(f), Some(l)) => format!("{f}:{l}"),
        (Some(f), None) => f.clone(),
        (None, Some(l)) => format!("line {l}"),
        (None, None) => p.url.clone().unwrap_or_else(|| "-".into()),
    };
    if let Some(c) = &p.commit {
        s.push_str(&format!(" @{}", c.get(..8).unwrap_or(c)));
    }
    if p.read_back.is_some() {
        // The report did not carry the secret: cordon read it from the file.
        s.push_str(" (read back)");
    }
    s
}

/// The `--json` summary, serialised straight from the summary's rows (not
/// first copied into one `serde_json::Value` of every row: issue 21's
/// 100,000 findings). Fields in this order, as the document always had them.
#[derive(serde::Serialize)]
struct JsonSummary<'a> {
    report: JsonReport<'a>,
    plan: &'a Option<String>,
    requester: &'a str,
    requester_verified: bool,
    findings: &'a [crate::respond::FindingRow],
    time_to_dead: &'a Option<crate::engine::TimeToDead>,
    exit: i32,
}

#[derive(serde::Serialize)]
struct JsonReport<'a> {
    format: &'a str,
    origin: &'a str,
    sha256: &'a str,
}

impl<'a> JsonSummary<'a> {
    fn of(s: &'a Summary) -> Self {
        JsonSummary {
            report: JsonReport {
                format: s.format,
                origin: &s.origin,
                sha256: &s.report_sha256,
            },
            plan: &s.plan,
            requester: &s.requester,
            requester_verified: s.requester_verified,
            findings: &s.findings,
            time_to_dead: &s.time_to_dead,
            exit: s.exit.code(),
        }
    }
}

pub fn print_summary(out: &Out, s: &Summary) {
    if out.json {
        out.json(&JsonSummary::of(s));
        return;
    }
    out.line(format!(
        "report {} ({}, {} findings)",
        s.origin,
        s.format,
        s.findings.len()
    ));
    if let Some(p) = &s.plan {
        out.line(format!(
            "plan {p}  as {} ({})",
            s.requester,
            if s.requester_verified {
                "verified"
            } else {
                "unverified claim"
            }
        ));
    }
    if s.findings.is_empty() {
        out.line("the report holds no findings: nothing to contain");
        return;
    }
    let rows: Vec<Vec<String>> = s
        .findings
        .iter()
        .map(|r| {
            let rule = r.provenance.rule.clone().unwrap_or_default();
            vec![
                r.finding.to_string(),
                format!("{} {}", r.provenance.scanner, rule)
                    .trim()
                    .to_owned(),
                where_found(&r.provenance),
                r.credential.clone().unwrap_or_else(|| "-".into()),
                r.status.label().to_owned(),
                match r.same_as {
                    Some(n) => format!("same credential as finding {n}"),
                    None => r.detail.clone(),
                },
            ]
        })
        .collect();
    out.table(
        &["#", "SCANNER", "FOUND IN", "CREDENTIAL", "RESULT", "DETAIL"],
        &rows,
    );
    // What each contained AWS key did, and the doors it opened (tasks of the incident).
    for r in &s.findings {
        if let (Some(Activity::Aws(a)), Some(k)) = (&r.activity, &r.credential_id) {
            out.line(format!("finding {}: {}", r.finding, a.describe(k)));
        }
    }
    let Some(p) = &s.plan else {
        out.line("nothing containable in the report: no credential cordon can act on");
        return;
    };
    if let Some(line) = s.time_to_dead.as_ref().and_then(|t| t.describe()) {
        out.line(line);
    }
    // What each leaked GitHub token did, or why that is not known.
    for r in &s.findings {
        let Some(Activity::Github(checks)) = &r.activity else {
            continue;
        };
        for a in checks {
            out.line(format!("finding {}: {}", r.finding, a.describe()));
            for door in &a.doors {
                out.line(format!("  - {door}"));
            }
        }
    }
    match s.exit {
        Exit::Stopped => out.line(format!(
            "stopped by a limit or the halt switch: the rest waits for a person; see `cordon pending`, then an approver runs `cordon approve {p} --key ~/.ssh/id_ed25519` and `cordon apply {p}` continues"
        )),
        Exit::AwaitingApproval => out.line(format!(
            "awaiting approval: see `cordon pending`; approvers run `cordon approve {p} --key ~/.ssh/id_ed25519`, then `cordon apply {p}` continues where this stopped"
        )),
        Exit::Partial | Exit::Failed | Exit::Denied => out.line(format!(
            "not everything was contained: fix what the detail says, then `cordon apply {p}` (done steps are not repeated)"
        )),
        _ => {}
    }
}
