//! The aggregator's side of talking to an APIService's backend: the
//! front-proxy client certificate every connection presents and the identity
//! headers it sets. Service resolution and the exchange itself are
//! generic-server's `backend`, shared with the admission webhooks.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

pub use generic_server::backend::{send, Resolver, Target, Unresolved, CONNECT_TIMEOUT};

use crate::apiservice::ApiService;

/// The header names the caller's identity travels in (the first of each
/// --requestheader-* flag, as the backend reads them).
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityHeaders {
    pub username: String,
    pub group: String,
    pub extra_prefix: String,
}

/// The front-proxy client identity every backend connection presents.
pub struct FrontProxyClient {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    pub headers: IdentityHeaders,
}

impl FrontProxyClient {
    pub fn new(cert_pem: &[u8], key_pem: &[u8], headers: IdentityHeaders) -> Result<Self, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("reading the proxy client certificate: {e}"))?;
        if certs.is_empty() {
            return Err("the proxy client certificate file holds no certificate".into());
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("reading the proxy client key: {e}"))?;
        Ok(FrontProxyClient { certs, key, headers })
    }

    /// A TLS client config for one APIService: its caBundle as the only
    /// roots, or no verification with insecureSkipTLSVerify.
    pub fn tls_config(&self, api: &ApiService) -> Result<Arc<rustls::ClientConfig>, String> {
        generic_server::backend::client_tls(
            &api.ca_bundle,
            api.insecure_skip_tls_verify,
            Some((&self.certs, &self.key)),
        )
    }
}
