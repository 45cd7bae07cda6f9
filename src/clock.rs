//! Waiting on deadlines that may not be set: a session without an idle timeout, a drain
//! before its grace period starts.

use tokio::time::Instant;

/// Completes at `deadline`; never, when there is none (so a `select!` branch on it is idle).
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
