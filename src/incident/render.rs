//! Text renderings of the status and the report: the status screen,
//! Markdown, and one self-contained HTML file (inline CSS, no scripts, no
//! external assets, so it opens the same offline, in a mail client or in an
//! archive years later).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::replay::{Credential, Item, Milestone, Report, Status, Task};
use crate::audit::VerifyStatus;
use crate::timefmt::format as ts;

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    // One line per row: a title holding a newline or an escape sequence must
    // not forge a row of its own.
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| crate::text::one_line(c).into_owned())
                .collect()
        })
        .collect();
    let rows = &rows;
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(x) = w.get_mut(i) {
                *x = (*x).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                s.push_str(c);
            } else {
                let pad = w.get(i).copied().unwrap_or(0);
                // Not `{c:<pad$}`: std's formatter panics on widths past 65,535.
                s.push_str(&crate::text::pad(c, pad));
                s.push_str("  ");
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

fn task_rows(tasks: &[Task], now: DateTime<Utc>) -> Vec<Vec<String>> {
    tasks
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.status.as_str().to_owned(),
                t.owner.clone().unwrap_or_else(|| "-".into()),
                match t.due {
                    Some(d) if t.overdue(now) => format!("{} OVERDUE", ts(&d)),
                    Some(d) => ts(&d),
                    None => "-".into(),
                },
                t.title.clone(),
            ]
        })
        .collect()
}

/// The status screen (`cordon status`).
pub fn render_status(s: &Status, now: DateTime<Utc>) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}  {}  severity {}  {}  opened {}  last change {}",
        s.id,
        s.title,
        s.severity.as_str(),
        match s.state {
            super::IncidentState::Open => "OPEN",
            super::IncidentState::Closed => "CLOSED",
        },
        ts(&s.opened_at),
        ts(&s.last_change)
    );
    let roles: Vec<String> = s
        .roles
        .iter()
        .map(|r| format!("{} {}", r.role.as_str(), r.person.as_deref().unwrap_or("-")))
        .collect();
    let _ = writeln!(o, "roles: {}", roles.join(" · "));
    let _ = writeln!(
        o,
        "contained {} · verified {} · failed {} · blocked {} · waiting {}",
        s.contained.len(),
        s.verified.len(),
        s.failed.len(),
        s.blocked.len(),
        s.waiting.len()
    );
    let section = |o: &mut String, name: &str, items: &[Item]| {
        if items.is_empty() {
            return;
        }
        let _ = writeln!(o, "\n{name}");
        for i in items {
            let _ = writeln!(o, "  {}  {}  {}", i.task, i.what, i.detail);
        }
    };
    section(&mut o, "FAILED", &s.failed);
    section(&mut o, "BLOCKED", &s.blocked);
    section(&mut o, "WAITING", &s.waiting);
    section(&mut o, "CONTAINED", &s.contained);
    if !s.tasks.is_empty() {
        let _ = writeln!(o, "\nTASKS");
        o.push_str(&table(
            &["ID", "STATUS", "OWNER", "DUE", "TITLE"],
            &task_rows(&s.tasks, now),
        ));
    }
    for p in &s.problems {
        let _ = writeln!(o, "problem: {p}");
    }
    o
}

/// `850ms`, `4.2s`, `3m 07s`, `1h 02m 09s`.
pub fn human_ms(ms: i64) -> String {
    let (sign, ms) = if ms < 0 { ("-", -ms) } else { ("", ms) };
    if ms < 1000 {
        return format!("{sign}{ms}ms");
    }
    if ms < 60_000 {
        return format!("{sign}{}.{}s", ms / 1000, (ms % 1000) / 100);
    }
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{sign}{h}h {m:02}m {s:02}s")
    } else {
        format!("{sign}{m}m {s:02}s")
    }
}

fn ms(m: &Option<Milestone>) -> String {
    match m {
        Some(m) => format!("{} (+{})", ts(&m.at), human_ms(m.after_detected_ms)),
        None => "-".into(),
    }
}

fn verify_line(r: &Report) -> String {
    let v = &r.log_verify;
    match &v.status {
        VerifyStatus::Intact => format!("intact: {} records, head {}", v.records, v.head),
        VerifyStatus::TornTail { bytes } => format!(
            "torn tail: the last {bytes} bytes are an incomplete record; the {} records before it are intact",
            v.records
        ),
        VerifyStatus::Tampered { seq, reason } => format!(
            "TAMPERED at seq {seq}: {reason}; {} records before it verify. Nothing in this report after that point can be trusted.",
            v.records
        ),
    }
}

fn credential_rows(c: &[Credential]) -> Vec<Vec<String>> {
    c.iter()
        .map(|c| {
            vec![
                c.target.clone(),
                c.status.as_str().to_owned(),
                ms(&c.detected),
                ms(&c.planned),
                ms(&c.approved),
                ms(&c.contained),
                ms(&c.verified),
                format!(
                    "{}{}",
                    if c.approvals.is_empty() {
                        "none".to_owned()
                    } else {
                        c.approvals.join(", ")
                    },
                    if c.break_glass { " (break-glass)" } else { "" }
                ),
            ]
        })
        .collect()
}

const CRED_HEADER: [&str; 8] = [
    "Credential",
    "Status",
    "Detected",
    "Planned",
    "Approved",
    "Contained",
    "Verified",
    "Approvals",
];

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn md_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "| {} |", header.join(" | "));
    let _ = writeln!(o, "|{}", header.iter().map(|_| "---|").collect::<String>());
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| md_escape(c)).collect();
        let _ = writeln!(o, "| {} |", cells.join(" | "));
    }
    o
}

/// The sections of the report, shared by Markdown and HTML so the two
/// cannot disagree.
struct Sections {
    header: Vec<(String, String)>,
    roles: Vec<Vec<String>>,
    credentials: Vec<Vec<String>>,
    timeline: Vec<Vec<String>>,
    evidence: Vec<Vec<String>>,
    open_items: Vec<Vec<String>>,
    break_glass: Vec<Vec<String>>,
    tasks: Vec<Vec<String>>,
    verify: String,
    problems: Vec<String>,
}

const TIMELINE_HEADER: [&str; 8] = [
    "Seq",
    "Time",
    "Kind",
    "Actor",
    "What",
    "Policy hash",
    "Approvals",
    "Break-glass",
];
const EVIDENCE_HEADER: [&str; 6] = ["Seq", "Time", "Step", "Target", "SHA-256", "Stored object"];
const OPEN_HEADER: [&str; 3] = ["Task", "What", "Detail"];
const BG_HEADER: [&str; 7] = [
    "Seq", "Time", "Actor", "Step", "Target", "Reason", "Decision",
];
const TASK_HEADER: [&str; 5] = ["ID", "Status", "Owner", "Due", "Title"];
const ROLE_HEADER: [&str; 4] = ["Role", "Person", "Since", "Assigned by"];

fn sections(r: &Report) -> Sections {
    let i = &r.incident;
    let who = |name: &str, verified: bool| {
        if verified {
            format!("{name} (verified)")
        } else {
            format!("{name} (claimed, unverified)")
        }
    };
    let mut header = vec![
        ("Incident".to_owned(), i.id.clone()),
        ("Title".to_owned(), i.title.clone()),
        ("Severity".to_owned(), i.severity.as_str().to_owned()),
        ("State".to_owned(), format!("{:?}", i.state).to_lowercase()),
        (
            "Opened".to_owned(),
            format!("{} by {}", ts(&i.opened_at), i.opened_by),
        ),
    ];
    if let Some(c) = &i.closed_at {
        header.push((
            "Closed".to_owned(),
            format!("{} by {}", ts(c), i.closed_by.clone().unwrap_or_default()),
        ));
    }
    if let Some(s) = &i.summary {
        header.push(("Summary".to_owned(), s.clone()));
    }
    header.push(("Report generated".to_owned(), ts(&r.generated_at)));
    header.push((
        "Plans".to_owned(),
        if i.plans.is_empty() {
            "none".to_owned()
        } else {
            i.plans
                .iter()
                .map(|p| {
                    format!(
                        "{} (sha256 {})",
                        p.id,
                        p.sha256.clone().unwrap_or_else(|| "unknown".into())
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        },
    ));
    Sections {
        header,
        roles: i
            .roles
            .iter()
            .map(|s| {
                vec![
                    s.role.as_str().to_owned(),
                    s.person.clone().unwrap_or_else(|| "unassigned".into()),
                    s.since.as_ref().map(ts).unwrap_or_else(|| "-".into()),
                    s.assigned_by.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect(),
        credentials: credential_rows(&i.credentials),
        timeline: i
            .timeline
            .iter()
            .map(|e| {
                vec![
                    e.seq.to_string(),
                    ts(&e.at),
                    e.kind.as_str().to_owned(),
                    who(&e.actor, e.actor_verified),
                    e.what.clone(),
                    e.policy_hash.clone().unwrap_or_else(|| "-".into()),
                    if e.approvers.is_empty() {
                        "-".into()
                    } else {
                        e.approvers.join(", ")
                    },
                    e.break_glass.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect(),
        evidence: i
            .evidence
            .iter()
            .map(|e| {
                vec![
                    e.seq.to_string(),
                    ts(&e.at),
                    format!(
                        "{}:{}",
                        e.plan.clone().unwrap_or_default(),
                        e.step.clone().unwrap_or_default()
                    ),
                    e.target.clone().unwrap_or_default(),
                    e.sha256.clone(),
                    e.check.clone(),
                ]
            })
            .collect(),
        open_items: r
            .open_items
            .iter()
            .map(|o| vec![o.task.clone(), o.what.clone(), o.detail.clone()])
            .collect(),
        break_glass: i
            .break_glass
            .iter()
            .map(|b| {
                vec![
                    b.seq.to_string(),
                    ts(&b.at),
                    who(&b.actor, b.actor_verified),
                    format!(
                        "{}:{}",
                        b.plan.clone().unwrap_or_default(),
                        b.step.clone().unwrap_or_default()
                    ),
                    b.target.clone().unwrap_or_default(),
                    b.reason.clone(),
                    if b.allowed { "allowed" } else { "refused" }.to_owned(),
                ]
            })
            .collect(),
        tasks: task_rows(&i.tasks, r.generated_at),
        verify: verify_line(r),
        problems: i.problems.clone(),
    }
}

const INTRO_CREDENTIALS: &str = "Time to contain, per credential: detected (the scanner finding that reported it, else its first plan) → planned → approved (allowed by the authority gate) → contained → verified (proven dead). Durations are counted from detection; a milestone is `-` until every containment step of the credential reached it.";
const INTRO_TIMELINE: &str = "Every audit-log record of this incident, in log order: who decided what, when, under which policy hash and with which approvals. Actors named with `--as` and no signature are marked as claims.";

pub fn render_markdown(r: &Report) -> String {
    let s = sections(r);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Incident report: {} — {}\n",
        r.incident.id,
        md_escape(&r.incident.title)
    );
    for (k, v) in &s.header {
        let _ = writeln!(o, "- **{k}:** {}", md_escape(v));
    }
    let _ = writeln!(o, "\n## Audit log verification\n\n{}\n", s.verify);
    let _ = writeln!(o, "## Roles\n\n{}", md_table(&ROLE_HEADER, &s.roles));
    let _ = writeln!(
        o,
        "## Time to contain\n\n{INTRO_CREDENTIALS}\n\n{}",
        md_table(&CRED_HEADER, &s.credentials)
    );
    let _ = writeln!(
        o,
        "## Open items\n\n{}",
        if s.open_items.is_empty() {
            "None.\n".to_owned()
        } else {
            md_table(&OPEN_HEADER, &s.open_items)
        }
    );
    let _ = writeln!(
        o,
        "## Break-glass uses\n\n{}",
        if s.break_glass.is_empty() {
            "None.\n".to_owned()
        } else {
            md_table(&BG_HEADER, &s.break_glass)
        }
    );
    let _ = writeln!(o, "## Tasks\n\n{}", md_table(&TASK_HEADER, &s.tasks));
    let _ = writeln!(
        o,
        "## Evidence\n\n{}",
        if s.evidence.is_empty() {
            "None.\n".to_owned()
        } else {
            md_table(&EVIDENCE_HEADER, &s.evidence)
        }
    );
    let _ = write!(
        o,
        "## Timeline\n\n{INTRO_TIMELINE}\n\n{}",
        md_table(&TIMELINE_HEADER, &s.timeline)
    );
    if !s.problems.is_empty() {
        let _ = writeln!(o, "\n## Problems\n");
        for p in &s.problems {
            let _ = writeln!(o, "- {}", md_escape(p));
        }
    }
    o
}

pub fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn html_table(o: &mut String, header: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        o.push_str("<p class=\"none\">None.</p>\n");
        return;
    }
    o.push_str("<table>\n<thead><tr>");
    for h in header {
        let _ = write!(o, "<th>{}</th>", html_escape(h));
    }
    o.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        o.push_str("<tr>");
        for c in r {
            let _ = write!(o, "<td>{}</td>", html_escape(c));
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</tbody>\n</table>\n");
}

const CSS: &str = "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem;color:#1b1f24;background:#fff}\
h1{font-size:1.5rem;margin:0 0 1rem}h2{font-size:1.15rem;margin:2rem 0 .5rem;border-bottom:1px solid #d0d7de;padding-bottom:.25rem}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}dd{margin:0}\
table{border-collapse:collapse;width:100%;font-size:12.5px}th,td{border:1px solid #d0d7de;padding:.3rem .45rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
th{background:#f6f8fa;white-space:nowrap}tbody tr:nth-child(even){background:#fbfcfd}.none{color:#57606a}\
.verify{padding:.5rem .75rem;border-radius:4px;background:#dafbe1}.verify.bad{background:#ffebe9}\
@media print{body{margin:0}}";

pub fn render_html(r: &Report) -> String {
    let s = sections(r);
    let mut o = String::new();
    let title = format!("Incident report: {} — {}", r.incident.id, r.incident.title);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta name=\"generator\" content=\"cordon {}\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n<dl id=\"summary\">\n",
        env!("CARGO_PKG_VERSION"),
        html_escape(&title),
        html_escape(&title)
    );
    for (k, v) in &s.header {
        let _ = writeln!(o, "<dt>{}</dt><dd>{}</dd>", html_escape(k), html_escape(v));
    }
    o.push_str("</dl>\n");
    let bad = !matches!(r.log_verify.status, VerifyStatus::Intact);
    let _ = write!(
        o,
        "<section id=\"log-verify\">\n<h2>Audit log verification</h2>\n<p class=\"verify{}\">{}</p>\n</section>\n",
        if bad { " bad" } else { "" },
        html_escape(&s.verify)
    );
    let sec = |o: &mut String,
               id: &str,
               name: &str,
               intro: Option<&str>,
               header: &[&str],
               rows: &[Vec<String>]| {
        let _ = writeln!(o, "<section id=\"{id}\">\n<h2>{}</h2>", html_escape(name));
        if let Some(i) = intro {
            let _ = writeln!(o, "<p>{}</p>", html_escape(i));
        }
        html_table(o, header, rows);
        o.push_str("</section>\n");
    };
    sec(&mut o, "roles", "Roles", None, &ROLE_HEADER, &s.roles);
    sec(
        &mut o,
        "time-to-contain",
        "Time to contain",
        Some(INTRO_CREDENTIALS),
        &CRED_HEADER,
        &s.credentials,
    );
    sec(
        &mut o,
        "open-items",
        "Open items",
        None,
        &OPEN_HEADER,
        &s.open_items,
    );
    sec(
        &mut o,
        "break-glass",
        "Break-glass uses",
        None,
        &BG_HEADER,
        &s.break_glass,
    );
    sec(&mut o, "tasks", "Tasks", None, &TASK_HEADER, &s.tasks);
    sec(
        &mut o,
        "evidence",
        "Evidence",
        None,
        &EVIDENCE_HEADER,
        &s.evidence,
    );
    sec(
        &mut o,
        "timeline",
        "Timeline",
        Some(INTRO_TIMELINE),
        &TIMELINE_HEADER,
        &s.timeline,
    );
    if !s.problems.is_empty() {
        o.push_str("<section id=\"problems\">\n<h2>Problems</h2>\n<ul>\n");
        for p in &s.problems {
            let _ = writeln!(o, "<li>{}</li>", html_escape(p));
        }
        o.push_str("</ul>\n</section>\n");
    }
    o.push_str("</body>\n</html>\n");
    o
}

// ---------------------------------------------------------------- words
// What the replay says in the timeline, in task titles, in problems and in
// the status items: every sentence a person reads, in one place, so that the
// replay only decides state.

pub(crate) mod words {
    use chrono::{DateTime, Utc};

    use crate::incident::events::Role;
    use crate::plan::Severity;
    use crate::timefmt::format as ts;

    pub fn opened(title: &str, severity: Severity) -> String {
        format!("opened `{title}` (severity {})", severity.as_str())
    }

    pub fn role_assigned(person: &str, role: Role) -> String {
        format!("{person} is {}", role.as_str())
    }

    pub fn closed(summary: &str) -> String {
        format!("closed: {summary}")
    }

    /// A record whose `data` is not its kind's type: the problem, and what
    /// the timeline says (`what` is `incident event`, `task event`, ...).
    pub fn unreadable_problem(seq: u64, what: &str, error: &str) -> String {
        format!("record {seq}: unreadable {what}: {error}")
    }

    pub fn unreadable(what: &str) -> String {
        format!("unreadable {what}")
    }

    pub fn plan_written(id: &str, steps: usize, reason: Option<&str>) -> String {
        format!(
            "plan {id} written: {steps} step(s){}",
            reason.map(|x| format!(", reason: {x}")).unwrap_or_default()
        )
    }

    pub fn plan_unreadable_problem(id: &str, seq: u64, error: &str) -> String {
        format!(
            "plan `{id}` (record {seq}) cannot be read, its steps are missing from the tasks: {error}"
        )
    }

    pub fn plan_unreadable(id: &str) -> String {
        format!("plan {id} written (plan file unreadable)")
    }

    /// The title of the task a plan step is.
    pub fn step_title(action: &str, target: &str) -> String {
        format!("{action} {target}")
    }

    pub fn approved(plan: &str, approvers: &[String]) -> String {
        format!("plan {plan} approved by {}", approvers.join(", "))
    }

    pub fn allowed(subject: &str, policies: &[String], break_glass: bool) -> String {
        format!(
            "allowed {subject} by {}{}",
            policies.join(", "),
            if break_glass {
                " under break-glass"
            } else {
                ""
            }
        )
    }

    pub fn held(subject: &str, why: &str) -> String {
        format!("held {subject}: {why}")
    }

    pub fn denied(subject: &str, why: &str) -> String {
        format!("denied {subject}: {why}")
    }

    pub fn evidence(hash: &str, target: &str) -> String {
        format!("evidence sha256:{hash} of {target}")
    }

    pub fn about_to(action: &str, target: &str) -> String {
        format!("about to {action} {target}")
    }

    pub fn outcome(label: &str, detail: &str) -> String {
        format!("{label}: {detail}")
    }

    pub fn verified(label: &str, detail: &str) -> String {
        format!("verified {label}: {detail}")
    }

    /// A finding record's line: its own message.
    pub fn finding(message: Option<&str>) -> String {
        message.unwrap_or("finding").to_owned()
    }

    pub fn task_added(
        task: &str,
        title: &str,
        owner: Option<&str>,
        due: Option<&DateTime<Utc>>,
    ) -> String {
        format!(
            "task {task} added: {title}{}{}",
            owner.map(|o| format!(", owner {o}")).unwrap_or_default(),
            due.map(|d| format!(", due {}", ts(d))).unwrap_or_default()
        )
    }

    pub fn task_assigned(task: &str, owner: &str) -> String {
        format!("task {task} assigned to {owner}")
    }

    pub fn task_blocked(task: &str, reason: &str) -> String {
        format!("task {task} blocked: {reason}")
    }

    pub fn task_unblocked(task: &str) -> String {
        format!("task {task} unblocked")
    }

    pub fn task_done(task: &str) -> String {
        format!("task {task} done")
    }

    // ---- status items

    pub const CONTAINED_NOT_VERIFIED: &str = "contained, not verified yet";

    pub fn failed_item(status: &str, detail: &str) -> String {
        format!("{status}: {detail}")
    }

    pub fn blocked_item(reason: &str, by: &str, since: Option<&DateTime<Utc>>) -> String {
        format!(
            "{reason} (blocked by {by} since {})",
            since.map(ts).unwrap_or_default()
        )
    }

    pub fn awaiting_approval_item(missing: &[String]) -> String {
        format!("waiting for approval: {}", missing.join("; "))
    }

    pub fn waiting_for(owner: &str) -> String {
        format!("waiting for {owner}")
    }

    pub const WAITING_FOR_APPLY: &str = "waiting for `cordon apply` (no owner)";
    pub const RUNNING_OR_INTERRUPTED: &str =
        "running or interrupted: re-run `cordon apply` to resume (no owner)";
    pub const WAITING_FOR_OWNER: &str = "waiting for an owner (unassigned)";

    pub fn overdue(due: &DateTime<Utc>) -> String {
        format!(", OVERDUE since {}", ts(due))
    }

    pub fn due(due: &DateTime<Utc>) -> String {
        format!(", due {}", ts(due))
    }

    pub fn role_item(role: Role) -> String {
        format!("role {}", role.as_str())
    }

    pub fn role_unassigned(role: Role) -> String {
        format!(
            "unassigned: `cordon incident assign {} PERSON`",
            role.as_str()
        )
    }

    pub const STILL_OPEN: &str = "incident still open";

    pub fn close_it(id: &str) -> String {
        format!("`cordon incident close {id} --summary ...`")
    }

    /// Who holds a roster role named by an item, as the roster has them now.
    pub fn role_holders(role: &str, people: &[String]) -> String {
        format!(
            "{role}: {}",
            if people.is_empty() {
                "nobody in the roster".to_owned()
            } else {
                people.join(", ")
            }
        )
    }

    pub fn with_holders(detail: &str, named: &[String]) -> String {
        format!("{detail} [who: {}]", named.join("; "))
    }
}
