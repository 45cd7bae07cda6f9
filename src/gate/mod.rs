//! The gate every request passes before it is served, whatever carried it.

pub mod admission;
pub mod token;
