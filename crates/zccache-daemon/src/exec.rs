//! `zccache exec --input F --output G -- TOOL ARGS`: a generic deterministic tool whose inputs
//! and outputs are declared on the command line.

use crate::pipeline::Call;
use crate::Daemon;
use std::sync::Arc;
use zccache_protocol::Response;

impl Daemon {
    /// A declared tool call: served from the cache, or run and stored.
    pub(crate) fn run_exec(self: &Arc<Self>, call: &Call) -> Response {
        self.run_locally(call, "unsupported_tool")
    }
}
