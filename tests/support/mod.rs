//! Shared helpers for the integration tests; each test file pulls them in with `mod support;`.

// Every test crate compiles this whole module but uses only part of it (deploy tests never start
// sshd or nginx, the sshd smoke tests never build a project), so unused items are expected.
#![allow(dead_code)]

pub mod processes;
pub mod project;
pub mod sshd;
pub mod web;
