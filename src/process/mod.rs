//! Process control: the shutdown signal every task watches, `-D`, and wrap mode.

pub mod daemon;
pub mod shutdown;
pub mod wrap;
