//! The compliance harness every connector's integration tests run against a
//! live peer (as Vector's sinks share one). Each check returns a descriptive
//! error instead of panicking so that tests can add their own context.

use crate::{Connector, Outcome, StepContext, Verification};

/// describe (not contained) → execute (done) → describe (contained) →
/// execute again (already contained) → verify (dead).
///
/// The caller provides a fresh, not-yet-contained target.
pub async fn check_contain_cycle(
    connector: &dyn Connector,
    ctx: &StepContext<'_>,
) -> Result<(), String> {
    let before = connector
        .describe(ctx)
        .await
        .map_err(|e| format!("describe before: {e}"))?;
    if before.contained {
        return Err("target already contained before execute: the test needs a fresh one".into());
    }
    let first = connector
        .execute(ctx)
        .await
        .map_err(|e| format!("first execute: {e}"))?;
    if !matches!(first, Outcome::Done { .. }) {
        return Err(format!("first execute: expected done, got {first:?}"));
    }
    let after = connector
        .describe(ctx)
        .await
        .map_err(|e| format!("describe after: {e}"))?;
    if !after.contained {
        return Err(format!(
            "describe after execute still reports not contained: {}",
            after.evidence
        ));
    }
    let second = connector
        .execute(ctx)
        .await
        .map_err(|e| format!("second execute: {e}"))?;
    if !matches!(second, Outcome::AlreadyContained { .. }) {
        return Err(format!(
            "second execute must be a no-op reported as already contained, got {second:?}"
        ));
    }
    match connector.verify(ctx).await {
        // Partial: the control is read back in place but, by its nature,
        // contains the credential only in part (and says so).
        Ok(Verification::Dead { .. } | Verification::Partial { .. }) => Ok(()),
        Ok(other) => Err(format!("verify after containment: {other:?}")),
        Err(e) => Err(format!("verify: {e}")),
    }
}

/// Fail when `needle` (a canary secret) occurs in any of `haystacks`.
pub fn assert_no_canary(needle: &str, haystacks: &[(&str, &str)]) -> Result<(), String> {
    for (name, text) in haystacks {
        if text.contains(needle) {
            return Err(format!("canary secret leaked into {name}"));
        }
    }
    Ok(())
}
