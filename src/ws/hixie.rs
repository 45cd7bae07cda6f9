//! Hixie-75 and Hixie-76 (being written).
