//! Process control: starting (`start`: what the binary runs), the shutdown signal every task
//! watches, `-D`, and wrap mode.

pub mod daemon;
pub mod sessions;
pub mod shutdown;
mod start;
pub mod wrap;

pub use start::run;
