//! Classify SDK failures for the engine, which owns retries (the SDK's own retries are
//! off: one attempt per call).
//!
//! * throttling (HTTP 429, or a throttling error code) and 5xx: `Retryable`, with the
//!   provider's `Retry-After` when it sent one;
//! * a connection that could not be opened: `Retryable` (nothing was sent);
//! * a timeout or a connection lost after the request was sent, a response that could
//!   not be read: `Ambiguous` (the change may have been applied; the engine re-reads
//!   with `describe` before retrying);
//! * any other 4xx, invalid input, a request that could not be built: `Permanent`.
//!
//! Messages are built from the operation name, HTTP status, AWS error code and AWS's
//! message. None of them can hold a secret: AWS never echoes a secret key, and cordon
//! never puts one in a request other than in the signature.

use std::error::Error as StdError;
use std::time::Duration;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use cordon_connector::{ConnectorError, ErrorClass};

/// AWS error codes that mean "slow down" (across IAM, STS and the wider SDK family).
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// The AWS error code of a service error, if the response carried one.
pub(crate) fn error_code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    }
}

/// Turn an SDK failure of `op` (like `iam:UpdateAccessKey`) into a classified error.
/// For `map_err` on calls whose error code decides what happens next ("already
/// gone" vs a real failure): the code, and the classified error.
pub(crate) fn coded<E>(
    op: &'static str,
) -> impl Fn(SdkError<E, HttpResponse>) -> (Option<String>, ConnectorError)
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    move |e| (error_code(&e).map(str::to_owned), classify(op, &e))
}

pub(crate) fn classify<E>(op: &str, err: &SdkError<E, HttpResponse>) -> ConnectorError
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match err {
        SdkError::ServiceError(se) => {
            let raw = se.raw();
            let status = raw.status().as_u16();
            let code = se.err().code().unwrap_or("no error code");
            let message = se.err().message().unwrap_or("");
            from_status(op, status, Some(code), message, retry_after(raw))
        }
        SdkError::ResponseError(re) => {
            // A response came back but could not be parsed: judge by its status.
            let raw = re.raw();
            let status = raw.status().as_u16();
            if (200..300).contains(&status) {
                ConnectorError::ambiguous(format!(
                    "`{op}`: AWS answered HTTP {status} but the response could not be read; \
                     the change may have been applied: describe the target before retrying"
                ))
            } else {
                from_status(op, status, None, "unreadable error response", retry_after(raw))
            }
        }
        SdkError::TimeoutError(_) => ConnectorError::ambiguous(format!(
            "`{op}` timed out after the request was sent; it may have been applied: \
             describe the target before retrying"
        )),
        SdkError::DispatchFailure(df) => {
            if credentials_missing(err) {
                return ConnectorError::permanent(format!(
                    "`{op}`: cordon found no usable AWS credentials ({}): set AWS_PROFILE or \
                     AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, log in with `aws sso login`, or \
                     run where an instance or container role applies",
                    chain(err)
                ));
            }
            if df.is_user() {
                return ConnectorError::permanent(format!(
                    "`{op}` could not be sent: {}",
                    chain(err)
                ));
            }
            if connection_not_opened(err) {
                return ConnectorError::retryable(format!(
                    "`{op}`: could not connect to AWS ({}); nothing was sent, retry later",
                    chain(err)
                ));
            }
            ConnectorError::ambiguous(format!(
                "`{op}`: the connection failed after the request was sent ({}); it may have \
                 been applied: describe the target before retrying",
                chain(err)
            ))
        }
        SdkError::ConstructionFailure(_) => ConnectorError::permanent(format!(
            "`{op}` could not be built: {}; check the region, endpoint and credentials configuration",
            chain(err)
        )),
        _ => ConnectorError::ambiguous(format!("`{op}` failed: {}", chain(err))),
    }
}

fn from_status(
    op: &str,
    status: u16,
    code: Option<&str>,
    message: &str,
    retry_after: Option<Duration>,
) -> ConnectorError {
    let code_s = code.unwrap_or("no error code");
    let text = if message.is_empty() {
        format!("`{op}` failed: {code_s} (HTTP {status})")
    } else {
        format!("`{op}` failed: {code_s} (HTTP {status}): {message}")
    };
    let throttled = status == 429 || code.is_some_and(|c| THROTTLING_CODES.contains(&c));
    let class = if throttled || status >= 500 {
        ErrorClass::Retryable
    } else {
        ErrorClass::Permanent
    };
    let hint = match (class, code) {
        (ErrorClass::Retryable, _) => "; retry later".to_owned(),
        (_, Some("AccessDenied" | "AccessDeniedException")) => format!(
            "; cordon's credentials lack the permission `{op}`: grant it (policies/cordon-responder-iam.json lists every permission cordon uses)"
        ),
        (_, Some("InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken")) => {
            "; cordon's own AWS credentials were refused: refresh them".to_owned()
        }
        _ => String::new(),
    };
    ConnectorError {
        class,
        message: format!("{text}{hint}"),
        retry_after: if class == ErrorClass::Retryable {
            retry_after
        } else {
            None
        },
    }
}

fn retry_after(raw: &HttpResponse) -> Option<Duration> {
    raw.headers()
        .get("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// True when signing failed for want of credentials (nothing was sent).
fn credentials_missing(err: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<aws_credential_types::provider::error::CredentialsError>()
            .is_some()
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// True when the connection was refused or never established, so nothing was sent.
fn connection_not_opened(err: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused | AddrNotAvailable | NotConnected
            ) {
                return true;
            }
        }
        // hyper-util names connect failures ("client error (Connect)").
        let text = e.to_string();
        if text.contains("(Connect)") || text.contains("dns error") {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The error and its sources, joined: the SDK's top-level messages are terse.
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !s.is_empty() && parts.last() != Some(&s) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let t = from_status(
            "iam:X",
            400,
            Some("Throttling"),
            "Rate exceeded",
            Some(Duration::from_secs(2)),
        );
        assert_eq!(t.class, ErrorClass::Retryable);
        assert_eq!(t.retry_after, Some(Duration::from_secs(2)));
        assert_eq!(
            from_status("iam:X", 429, None, "", None).class,
            ErrorClass::Retryable
        );
        assert_eq!(
            from_status("iam:X", 503, Some("ServiceUnavailable"), "", None).class,
            ErrorClass::Retryable
        );
        let p = from_status(
            "iam:X",
            404,
            Some("NoSuchEntity"),
            "The user with name `x` cannot be found.",
            Some(Duration::from_secs(2)),
        );
        assert_eq!(p.class, ErrorClass::Permanent);
        assert_eq!(p.retry_after, None);
        let d = from_status("iam:X", 403, Some("AccessDenied"), "no", None);
        assert!(
            d.message.contains("lack the permission `iam:X`")
                && d.message.contains("cordon-responder-iam.json"),
            "{}",
            d.message
        );
    }
}
