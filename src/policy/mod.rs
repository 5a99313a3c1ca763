//! The authority policy: Cedar rules, the roster, SSH-signed approvals.
