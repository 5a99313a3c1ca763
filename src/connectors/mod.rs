//! The connectors cordon can drive, registered in one readable list.

// The test connector: in unit tests, and in builds with the
// `test-connector` feature (scripts/test, drills); never in a release build.
#[cfg(any(test, feature = "test-connector"))]
pub mod test;

use std::sync::Arc;

use cordon_connector::{Action, Connector};

/// The connectors available to one run. Registration is explicit (see
/// `Workspace::registry_for`), not hidden behind inventory macros.
#[derive(Default, Clone)]
pub struct Registry {
    connectors: Vec<Arc<dyn Connector>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    pub fn register(&mut self, c: Arc<dyn Connector>) {
        self.connectors.push(c);
    }

    pub fn for_action(&self, action: Action) -> Option<Arc<dyn Connector>> {
        self.connectors.iter().find(|c| c.supports(action)).cloned()
    }
}
