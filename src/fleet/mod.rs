//! The fleet: running a compiled plan on the selected hosts, meeting only at barriers.

pub mod archive;
pub mod engine;
