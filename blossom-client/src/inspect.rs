//! A window on the client's core, for the simulation's invariant checks and for diagnostics.

use pool_core::{Core, Time};

use crate::client::BlossomClient;

impl BlossomClient {
    /// HTTP/2 request senders that finished requests gave back, kept to be lent again.
    #[doc(hidden)]
    pub fn spare_senders(&self) -> usize {
        self.shared.spare_senders()
    }

    /// Runs `f` on the client's core, under its lock, with the client's clock reading.
    /// Whatever `f` changes is acted on afterwards (grants delivered, connections closed).
    #[doc(hidden)]
    pub fn with_core<R>(&self, f: impl FnOnce(&mut Core, Time) -> R) -> R {
        let mut inner = self.shared.lock();
        let now = self.shared.now();
        let result = f(&mut inner.core, now);
        inner.dirty = true;
        self.shared.settle(&mut inner);
        result
    }
}
