//! The crate's integration tests, one module a concern, linked into one test binary (a Burn
//! test binary is tens of MB: one per file would multiply the build's disk and link time).

mod changing;
mod commit;
mod common;
mod conv1d;
mod directions;
mod events;
mod layouts;
mod loader;
