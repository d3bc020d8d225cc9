//! Analysers of one translation unit: clang-tidy and include-what-you-use.

use crate::pipeline::Call;
use crate::Daemon;
use std::sync::Arc;
use zccache_protocol::Response;

impl Daemon {
    pub(crate) fn run_clang_tidy(self: &Arc<Self>, call: &Call) -> Response {
        self.run_locally(call, "unsupported_tool")
    }

    pub(crate) fn run_iwyu(self: &Arc<Self>, call: &Call) -> Response {
        self.run_locally(call, "unsupported_tool")
    }
}
