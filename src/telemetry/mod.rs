//! What the proxy tells its operator: log lines, traces, metrics and the operations port.

pub mod admin;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod syslog;
