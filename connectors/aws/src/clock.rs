//! AWS's time, for session cut-offs.
//!
//! A cut-off taken from the host's clock is wrong by the host's skew: AWS accepts
//! requests signed up to 5 minutes off (and the SDK corrects its signatures for larger
//! skews), so a host clock running behind would write a cut-off in the past and leave
//! every session issued in the gap alive. cordon reads the time from AWS instead: the
//! `Date` header of a `sts:GetCallerIdentity` answer (a call no policy can deny), then
//! adds [`crate::AwsConfig::cutoff_margin`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::date_time::{DateTime, Format};
use cordon_connector::ConnectorError;

use crate::client::AccountClients;
use crate::error::classify;

/// Keeps the `Date` header of the response it sees.
#[derive(Debug, Clone, Default)]
struct DateHeader(Arc<Mutex<Option<String>>>);

impl Intercept for DateHeader {
    fn name(&self) -> &'static str {
        "cordon-aws-date-header"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(date) = context.response().headers().get("date") {
            if let Ok(mut slot) = self.0.lock() {
                *slot = Some(date.to_owned());
            }
        }
        Ok(())
    }
}

/// Where a time came from, said in change details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeSource {
    Aws,
    /// AWS's answer carried no usable `Date` (a proxy stripped it): the host's clock.
    Host,
}

/// AWS's current time as it answered `sts:GetCallerIdentity`; the host's clock
/// (`local`) only when the answer had no `Date`.
pub(crate) async fn aws_now(
    c: &AccountClients,
    local: SystemTime,
) -> Result<(DateTime, TimeSource), ConnectorError> {
    let seen = DateHeader::default();
    c.sts
        .get_caller_identity()
        .customize()
        .interceptor(seen.clone())
        .send()
        .await
        .map_err(|e| classify("sts:GetCallerIdentity", &e))?;
    let header = seen.0.lock().ok().and_then(|s| s.clone());
    Ok(
        match header.and_then(|h| DateTime::from_str(h.trim(), Format::HttpDate).ok()) {
            Some(at) => (at, TimeSource::Aws),
            None => (DateTime::from(local), TimeSource::Host),
        },
    )
}

/// How long a measured offset between this host's clock and AWS's is reused.
/// Clocks drift by milliseconds a minute; a cut-off has a margin of seconds.
pub(crate) const OFFSET_TTL: Duration = Duration::from_secs(60);

/// AWS's clock as an offset from this host's, per account, measured by
/// [`aws_now`] and reused for [`OFFSET_TTL`]: a thousand session cut-offs in one
/// run cost one `sts:GetCallerIdentity`, not a thousand round trips before their
/// kills. Only answers that carried a `Date` are kept.
#[derive(Debug, Default)]
pub(crate) struct Offsets(Mutex<std::collections::HashMap<String, (i128, std::time::Instant)>>);

impl Offsets {
    /// AWS's time now for `c`'s account: from a fresh offset when there is one
    /// (`local` is the host's clock now), else measured.
    pub(crate) async fn aws_now(
        &self,
        c: &AccountClients,
        local: impl Fn() -> SystemTime,
    ) -> Result<(DateTime, TimeSource), ConnectorError> {
        let fresh = self.0.lock().ok().and_then(|m| {
            m.get(&c.account)
                .filter(|(_, at)| at.elapsed() < OFFSET_TTL)
                .map(|(off, _)| *off)
        });
        if let Some(offset_ms) = fresh {
            return Ok((shift(local(), offset_ms), TimeSource::Aws));
        }
        let (aws, source) = aws_now(c, local()).await?;
        if source == TimeSource::Aws {
            // Measured against the host's clock when the answer was read.
            let offset_ms = millis(&aws) - millis(&DateTime::from(local()));
            if let Ok(mut m) = self.0.lock() {
                m.insert(c.account.clone(), (offset_ms, std::time::Instant::now()));
            }
        }
        Ok((aws, source))
    }
}

fn millis(t: &DateTime) -> i128 {
    i128::from(t.secs()) * 1000 + i128::from(t.subsec_nanos() / 1_000_000)
}

/// `local` moved by `offset_ms` (AWS's clock minus the host's).
fn shift(local: SystemTime, offset_ms: i128) -> DateTime {
    let ms = millis(&DateTime::from(local)).saturating_add(offset_ms);
    let secs = i64::try_from(ms.div_euclid(1000)).unwrap_or(i64::MAX / 2);
    let nanos = u32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0);
    DateTime::from_secs_and_nanos(secs, nanos)
}

/// The cut-off for sessions: `now + margin`, rounded *up* to the whole second (rounding
/// down would spare a session issued earlier in the same second).
pub(crate) fn cutoff(now: DateTime, margin: Duration) -> DateTime {
    let up = if now.subsec_nanos() > 0 { 1 } else { 0 };
    let margin = i64::try_from(margin.as_secs()).unwrap_or(i64::MAX / 2);
    DateTime::from_secs(now.secs().saturating_add(up).saturating_add(margin))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn cutoff_rounds_up_and_adds_the_margin() {
        let at = DateTime::from_secs_and_nanos(1_000, 1);
        assert_eq!(cutoff(at, Duration::from_secs(30)).secs(), 1_031);
        let at = DateTime::from_secs(1_000);
        assert_eq!(cutoff(at, Duration::from_secs(0)).secs(), 1_000);
    }

    #[test]
    fn an_offset_moves_the_host_clock_to_aws_time() {
        let local = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_500);
        // AWS runs 600.25 s ahead of this host.
        assert_eq!(millis(&shift(local, 600_250)), 1_600_750);
        // ...or behind it.
        assert_eq!(millis(&shift(local, -2_000)), 998_500);
    }

    #[test]
    fn http_dates_parse() {
        let d = DateTime::from_str("Tue, 01 Dec 2026 03:14:12 GMT", Format::HttpDate).unwrap();
        assert_eq!(
            d.fmt(Format::DateTime).unwrap(),
            "2026-12-01T03:14:12Z".to_owned()
        );
    }
}
