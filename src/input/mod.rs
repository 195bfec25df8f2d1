//! Placeholder until this module lands.
pub mod codes;
