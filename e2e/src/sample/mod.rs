//! The pieces of `sample-apiserver` (upstream's kubernetes/sample-apiserver,
//! "wardle"), an aggregated API server built on generic-server as upstream's is
//! built on k8s.io/apiserver: the Flunder resource ([`flunder`]) and the
//! record of who called, which the aggregator's tests read back ([`caller`]).
//! Its self-signed serving certificate comes from `generic_server::pki`.

pub mod caller;
pub mod flunder;
