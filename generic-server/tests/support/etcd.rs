//! The e2e crate's etcd launcher: one way to run a private etcd in every test.
pub use e2e::etcd::*;
