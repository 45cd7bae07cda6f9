//! The --web directory (being written).
