//! GitHub secret scanning alerts, in the two shapes GitHub documents:
//! * the REST alert object (`GET /repos/{owner}/{repo}/secret-scanning/alerts/{n}`,
//!   or an array of them from the list endpoints): `number`, `secret_type`,
//!   `secret`, `html_url`, `url`, and for organisation lists `repository`;
//! * the `secret_scanning_alert` webhook payload: `action`, `alert` (the same
//!   object without `secret`), `repository`. It never carries the secret, so
//!   it becomes an [`AlertRef`] for the caller to fetch
//!   (`cordon_github::GithubConnector::fetch_secret_scanning_alert`).
//!
//! An alert object without `secret` (listed with `hide_secret=true`) is also
//! an [`AlertRef`], named by its `url`.

use super::json::{self, Node, Walk};
use super::{findings_from_text, AlertRef, Provenance, Report, ReportError};

const FORMAT: &str = "github-alert";

pub fn parse(text: &str) -> Result<Report, ReportError> {
    let v = json::parse(FORMAT, text)?;
    let w = Walk::new(FORMAT);
    let root = w.root(&v);
    let mut report = Report::default();
    if v.is_array() {
        for a in root.items()? {
            alert(&a.node(), None, &mut report)?;
        }
    } else if root.get("alert")?.is_some() {
        // A webhook delivery.
        let alert_node = root.req("alert")?;
        let repo = root.req("repository")?;
        let repo = repo.node();
        let name = repo.req_str("name")?;
        let owner = repo.req("owner")?.node().req_str("login")?;
        alert(&alert_node.node(), Some((owner, name)), &mut report)?;
    } else {
        alert(&root, None, &mut report)?;
    }
    Ok(report)
}

fn alert(n: &Node<'_>, repo: Option<(&str, &str)>, report: &mut Report) -> Result<(), ReportError> {
    let number = n.req_u64("number")?;
    let secret_type = n.req_str("secret_type")?;
    let html_url = n.opt_nonempty("html_url")?;
    let secret = n.opt_str("secret")?;
    match secret {
        Some(secret) => {
            let prov = Provenance {
                scanner: "github".into(),
                rule: Some(secret_type.to_owned()),
                url: html_url,
                ..Provenance::default()
            };
            report.findings.extend(findings_from_text(
                secret,
                &prov,
                &format!("github secret type `{secret_type}`"),
            ));
        }
        None => {
            let (owner, name) = match repo {
                Some((o, r)) => (o.to_owned(), r.to_owned()),
                None => owner_repo(n)?,
            };
            report.alerts.push(AlertRef {
                owner,
                repo: name,
                number,
            });
        }
    }
    Ok(())
}

/// `owner/repo` of an alert object: its `repository.full_name` (organisation
/// lists), else its API `url` (`…/repos/{owner}/{repo}/secret-scanning/alerts/{n}`).
fn owner_repo(n: &Node<'_>) -> Result<(String, String), ReportError> {
    if let Some(r) = n.get("repository")? {
        let full = r.node().req_str("full_name")?;
        if let Some((o, r)) = full.split_once('/') {
            return Ok((o.to_owned(), r.to_owned()));
        }
    }
    let url = n.req("url")?;
    let s = url.node().str()?;
    let parts: Vec<&str> = s.split('/').collect();
    let at = parts.iter().position(|p| *p == "repos");
    match at.and_then(|i| Some((*parts.get(i + 1)?, *parts.get(i + 2)?))) {
        Some((o, r)) if !o.is_empty() && !r.is_empty() => Ok((o.to_owned(), r.to_owned())),
        _ => Err(url
            .node()
            .error("the alert holds no secret, and its url names no `/repos/{owner}/{repo}`")),
    }
}
