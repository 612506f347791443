//! The API machinery shared by every server in the delegation chain.
//!
//! A server (aggregator, kube-core-server, apiextensions) is a [`Handler`] that
//! serves what it owns and hands everything else to its delegate. This crate owns
//! what they have in common: parsing a request into [`RequestInfo`], the
//! `metav1.Status` error type, content negotiation, the generic registry
//! [`registry::Store`] driven by a per-resource [`registry::Strategy`], the
//! [`storage::Storage`] contract and its backends, discovery documents,
//! authentication, and the TLS listener. It knows nothing about any particular
//! resource: built-in types live in kube-core-server, CRDs in apiextensions.

pub mod audit;
pub mod authn;
pub mod authz;
pub mod backend;
pub mod body;
pub mod context;
pub mod deadlines;
pub mod delegation;
pub mod depth;
pub mod discovery;
pub mod duration;
pub mod endpoints;
pub mod fieldmanager;
pub mod filters;
pub mod handler;
pub mod impersonation;
pub mod informer;
pub mod kubeconfig;
pub mod meta;
pub mod metrics;
pub mod negotiation;
pub mod openapi;
pub mod patch;
pub mod pki;
pub mod protobuf;
pub mod registry;
pub mod request_info;
pub mod root;
pub mod selectors;
pub mod serve;
pub mod serviceaccount;
pub mod status;
pub mod storage;
pub mod webhook;
pub mod wire;

pub use handler::{Handler, NotFoundHandler, Request, Response};
pub use request_info::RequestInfo;
pub use status::StatusError;
