//! The HTTP vocabulary the flow and its outputs (rejections, metrics)
//! share: which kind of client asked, and a response the filter sends itself.
//! A leaf module, so that output modules need not depend on the flow.

/// The proxy could not start a call (unknown cluster, bad headers …): what
/// it said, for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchError(pub String);

impl std::fmt::Display for DispatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "call not dispatched: {}", self.0)
    }
}

impl std::error::Error for DispatchError {}

/// Which kind of client the request came from; decides the error's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKind {
    /// No credential at all.
    Anonymous,
    Cookie,
    Bearer,
}

impl ClientKind {
    /// Stable name: logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Anonymous => "anonymous",
            ClientKind::Cookie => "cookie",
            ClientKind::Bearer => "bearer",
        }
    }
}

/// A response the filter sends itself instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}
