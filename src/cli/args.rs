//! Range checks for every flag that takes a number, so that clap refuses a
//! value cordon cannot run with (exit 2, a clear message) before anything is
//! done: `--rate 0`, `NaN` or `1e-30` would block forever after the intent
//! was written, `--concurrency 18446744073709551615` would panic allocating.

/// Steps in flight at once: 1 to this.
pub const MAX_CONCURRENCY: usize = 1024;
/// Operations per second: at least this (one operation every 1,000 s)...
pub const MIN_RATE: f64 = 0.001;
/// ...and at most this.
pub const MAX_RATE: f64 = 100_000.0;

fn parse_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if !v.is_finite() {
        return Err(format!("`{s}` is not a finite number"));
    }
    Ok(v)
}

fn parse_usize(s: &str) -> Result<usize, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))
}

/// `--concurrency`: 1 to [`MAX_CONCURRENCY`].
pub fn concurrency(s: &str) -> Result<usize, String> {
    let v = parse_usize(s)?;
    if !(1..=MAX_CONCURRENCY).contains(&v) {
        return Err(format!(
            "steps in flight must be from 1 to {MAX_CONCURRENCY}, not {v}"
        ));
    }
    Ok(v)
}

/// `--rate`: operations per second, [`MIN_RATE`] to [`MAX_RATE`].
pub fn rate(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if !(MIN_RATE..=MAX_RATE).contains(&v) {
        return Err(format!(
            "operations per second must be from {MIN_RATE} to {MAX_RATE}, not {s}"
        ));
    }
    Ok(v)
}

/// `status --interval`: seconds, 0.05 to 3,600.
pub fn interval(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if !(0.05..=3600.0).contains(&v) {
        return Err(format!(
            "the interval must be from 0.05 to 3600 seconds, not {s}"
        ));
    }
    Ok(v)
}

/// `agent --max-body`: bytes, 1 KiB to 64 MiB.
pub fn max_body(s: &str) -> Result<usize, String> {
    let v = parse_usize(s)?;
    if !(1024..=64 * 1024 * 1024).contains(&v) {
        return Err(format!(
            "the largest body must be from 1024 to 67108864 bytes, not {v}"
        ));
    }
    Ok(v)
}

/// `agent --max-queue`: 1 to 1,000,000 events.
pub fn max_queue(s: &str) -> Result<usize, String> {
    let v = parse_usize(s)?;
    if !(1..=1_000_000).contains(&v) {
        return Err(format!(
            "the queue must hold from 1 to 1000000 events, not {v}"
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_that_would_hang_are_refused() {
        for bad in ["0", "NaN", "nan", "inf", "-1", "1e-30", "1e300", "x", ""] {
            assert!(rate(bad).is_err(), "{bad}");
        }
        assert_eq!(rate("10"), Ok(10.0));
        assert_eq!(rate("0.5"), Ok(0.5));
    }

    #[test]
    fn concurrency_that_would_panic_is_refused() {
        for bad in ["0", "18446744073709551615", "1025", "-1", "x"] {
            assert!(concurrency(bad).is_err(), "{bad}");
        }
        assert_eq!(concurrency("16"), Ok(16));
    }

    #[test]
    fn other_numeric_flags_are_bounded() {
        assert!(interval("0").is_err() && interval("NaN").is_err());
        assert!(max_body("0").is_err() && max_queue("0").is_err());
        assert!(interval("2").is_ok() && max_body("1048576").is_ok() && max_queue("10").is_ok());
    }
}
