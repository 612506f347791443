//! What the listener and the filter chain note about a request for the
//! filters and handlers behind them, kept in one request extension: each
//! extension is a boxed entry in a map the request allocates and grows, and a
//! GET used to carry four.
//!
//! The caller's identity stays an extension of its own: impersonation
//! replaces it, and handlers outside this crate read it.

use std::sync::Arc;
use std::time::Instant;

use crate::authn::UserInfo;
use crate::registry::Notes;
use crate::request_info::RequestInfo;

/// When a request's head arrived (upstream's ReceivedTimestamp, from which
/// the request timeout and the latency metrics count), what its connection's
/// handshake established, and once the filters have run, its RequestInfo and
/// the notes admission leaves (upstream's warning recorder and audit
/// annotations).
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub arrived: Instant,
    pub peer: Arc<Peer>,
    info: Option<Arc<RequestInfo>>,
    notes: Option<Arc<Notes>>,
}

/// What a connection's TLS handshake established about the client, shared
/// by every request on it.
#[derive(Debug, Default)]
pub struct Peer {
    /// The subject of the verified client certificate.
    pub user: Option<Arc<UserInfo>>,
    /// The client certificate chain (leaf first) as presented, unverified:
    /// only from [`crate::serve::serve_tls_unverified_peers`].
    pub chain: Option<Vec<rustls_pki_types::CertificateDer<'static>>>,
    pub addr: Option<std::net::SocketAddr>,
}

impl RequestContext {
    /// A request whose head arrived at `arrived` on a connection from `peer`.
    pub fn new(arrived: Instant, peer: Arc<Peer>) -> RequestContext {
        RequestContext { arrived, peer, info: None, notes: None }
    }

    pub fn of<B>(req: &http::Request<B>) -> Option<&RequestContext> {
        req.extensions().get()
    }

    /// The context of `req`; a request that did not come through the listener
    /// (an in-process caller's) gets one: arrived now, from nobody in particular.
    pub(crate) fn of_mut<B>(req: &mut http::Request<B>) -> &mut RequestContext {
        req.extensions_mut().get_or_insert_with(|| RequestContext::new(Instant::now(), Arc::default()))
    }

    pub(crate) fn set_info(&mut self, info: Arc<RequestInfo>) {
        self.info = Some(info);
    }

    pub(crate) fn set_notes(&mut self, notes: Arc<Notes>) {
        self.notes = Some(notes);
    }
}

impl RequestInfo {
    /// What the filter chain parsed of `req`.
    pub fn of<B>(req: &http::Request<B>) -> Option<&Arc<RequestInfo>> {
        RequestContext::of(req)?.info.as_ref()
    }
}

/// The notes of the request being served, put into it by the filter chain;
/// a request that bypassed the chain (a test's) gets notes nobody reads.
pub fn notes_of<B>(req: &http::Request<B>) -> Arc<Notes> {
    RequestContext::of(req).and_then(|c| c.notes.clone()).unwrap_or_default()
}
