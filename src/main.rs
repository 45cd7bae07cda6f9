//! The `websockify` binary: the allocator, and [`websockify::run`]. Everything else lives in
//! the library.

use std::process::ExitCode;

/// jemalloc rather than glibc's malloc: after a burst of busy sessions glibc kept ~200 MiB of
/// freed buffers in its arenas for good (docs/reliability.md); jemalloc's background thread
/// returns them to the system within seconds.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    websockify::run()
}
