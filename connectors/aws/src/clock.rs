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
    fn http_dates_parse() {
        let d = DateTime::from_str("Tue, 01 Dec 2026 03:14:12 GMT", Format::HttpDate).unwrap();
        assert_eq!(
            d.fmt(Format::DateTime).unwrap(),
            "2026-12-01T03:14:12Z".to_owned()
        );
    }
}
