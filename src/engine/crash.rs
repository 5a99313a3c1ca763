//! Crash points for the resume tests: `CORDON_CRASHPOINT=after-intent:s3`
//! makes the process SIGKILL itself at that point of that step, exactly as
//! a power cut or an OOM kill would stop it. Points: `before-intent`,
//! `after-intent` (after its fsync), `after-call` (the API returned),
//! `before-outcome`, `after-outcome`.
//!
//! Only a build with the `crashpoints` feature reads the variable
//! (`scripts/test` enables it for the crash tests); a release build ignores
//! it, so no environment variable can make a deployed cordon kill itself.

#[derive(Debug, Clone, Default)]
pub struct CrashPoints {
    at: Option<(String, String)>,
}

impl CrashPoints {
    pub fn from_env() -> CrashPoints {
        if !cfg!(feature = "crashpoints") {
            return CrashPoints::none();
        }
        let at = std::env::var("CORDON_CRASHPOINT").ok().and_then(|v| {
            let (p, s) = v.split_once(':')?;
            Some((p.to_owned(), s.to_owned()))
        });
        CrashPoints { at }
    }

    pub fn none() -> CrashPoints {
        CrashPoints { at: None }
    }

    pub fn hit(&self, point: &str, step: &str) {
        if let Some((p, s)) = &self.at {
            if p == point && s == step {
                tracing::warn!(
                    point,
                    step,
                    "CORDON_CRASHPOINT reached: killing the process"
                );
                // SAFETY: getpid/kill have no memory-safety preconditions.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
        }
    }
}
