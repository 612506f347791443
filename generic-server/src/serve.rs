//! The TLS listener and the filter chain in front of the first server
//! (upstream's DefaultBuildHandlerChain): panic recovery, the body limit,
//! authentication, RequestInfo, and the non-resource endpoints every API server
//! has (/healthz, /livez, /readyz, /version). Everything else goes to the chain.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::authn::{user_from_certificate, TokenFile, UserInfo};
use crate::body;
use crate::handler::{DynHandler, Response};
use crate::request_info;
use crate::status::StatusError;

/// Requests bodies larger than this are refused with 413, as upstream (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How callers are authenticated.
#[derive(Clone, Default)]
pub struct Authentication {
    pub tokens: Option<TokenFile>,
    pub anonymous: bool,
}

/// The /version answer.
#[derive(Clone, Debug)]
pub struct VersionInfo {
    pub major: String,
    pub minor: String,
    pub git_version: String,
}

impl VersionInfo {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "major": self.major,
            "minor": self.minor,
            "gitVersion": self.git_version,
            "gitCommit": "",
            "gitTreeState": "clean",
            "buildDate": "1970-01-01T00:00:00Z",
            "goVersion": "rust",
            "compiler": "rustc",
            "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        })
    }
}

/// The filter chain around the first server of the delegation chain.
pub struct Filters {
    pub chain: DynHandler,
    pub authn: Authentication,
    pub version: VersionInfo,
    /// Named readiness checks beyond "ping" (for /readyz/<name>).
    pub ready_checks: Vec<(String, Arc<dyn Fn() -> bool + Send + Sync>)>,
}

fn text(code: u16, s: impl Into<String>) -> Response {
    http::Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("X-Content-Type-Options", "nosniff")
        .body(body::full(s.into()))
        .unwrap_or_else(|_| http::Response::new(body::empty()))
}

fn json_response(code: u16, v: &serde_json::Value) -> Response {
    http::Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body::full(serde_json::to_vec(v).unwrap_or_default()))
        .unwrap_or_else(|_| http::Response::new(body::empty()))
}

impl Filters {
    /// The health endpoints: "ok", or with ?verbose each check's line.
    fn health(&self, path: &str, query: Option<&str>) -> Option<Response> {
        let (base, only) = match path.trim_end_matches('/') {
            p @ ("/healthz" | "/livez" | "/readyz") => (p, None),
            p => {
                let (b, rest) = p.rsplit_once('/')?;
                if !matches!(b, "/healthz" | "/livez" | "/readyz") {
                    return None;
                }
                (b, Some(rest.to_string()))
            }
        };
        let mut checks: Vec<(String, bool)> = vec![("ping".into(), true), ("log".into(), true)];
        if base != "/livez" {
            for (name, f) in &self.ready_checks {
                checks.push((name.clone(), f()));
            }
        }
        if let Some(one) = only {
            return Some(match checks.iter().find(|(n, _)| *n == one) {
                Some((_, true)) => text(200, "ok"),
                Some((n, false)) => text(500, format!("internal server error: {n} check failed")),
                None => text(404, "404 page not found"),
            });
        }
        let ok = checks.iter().all(|(_, ok)| *ok);
        let verbose = request_info::query_params(query).contains_key("verbose");
        if verbose || !ok {
            let mut s = String::new();
            for (n, good) in &checks {
                s.push_str(&format!("[{}]{n} {}\n", if *good { "+" } else { "-" }, if *good { "ok" } else { "failed" }));
            }
            let name = base.trim_start_matches('/');
            if ok {
                s.push_str(&format!("{name} check passed\n"));
            } else {
                s.push_str(&format!("{name} check failed\n"));
            }
            return Some(text(if ok { 200 } else { 500 }, s));
        }
        Some(text(200, "ok"))
    }

    /// Serves one request: authenticate, then the non-resource endpoints, then
    /// the chain.
    pub async fn serve(&self, req: http::Request<Incoming>, peer_user: Option<UserInfo>) -> Response {
        let (parts, incoming) = req.into_parts();
        let user = match self.authenticate(&parts, peer_user) {
            Ok(u) => u,
            Err(e) => return e.into_response(),
        };
        let bytes: Bytes = match Limited::new(incoming, MAX_BODY_BYTES).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    return StatusError::too_large().into_response();
                }
                return StatusError::bad_request(format!("error reading request body: {e}")).into_response();
            }
        };
        let mut req = http::Request::from_parts(parts, bytes);
        let path = req.uri().path().to_string();
        let query = req.uri().query().map(str::to_string);
        if let Some(resp) = self.health(&path, query.as_deref()) {
            return resp;
        }
        if path == "/version" || path == "/version/" {
            return json_response(200, &self.version.to_json());
        }
        let info = request_info::parse(req.method(), &path, query.as_deref());
        req.extensions_mut().insert(info);
        req.extensions_mut().insert(user);
        let chain = self.chain.clone();
        match std::panic::AssertUnwindSafe(chain.handle(req)).catch_unwind().await {
            Ok(resp) => resp,
            Err(_) => {
                tracing::error!(path, "handler panicked");
                StatusError::internal("the server could not complete the request").into_response()
            }
        }
    }

    fn authenticate(&self, parts: &http::request::Parts, peer: Option<UserInfo>) -> Result<UserInfo, StatusError> {
        if let Some(auth) = parts.headers.get(http::header::AUTHORIZATION) {
            let token = auth.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
            if let (Some(t), Some(tokens)) = (token, &self.authn.tokens) {
                if let Some(u) = tokens.authenticate(t) {
                    return Ok(u);
                }
            }
            // A presented credential that fails is refused even if a certificate
            // or anonymous access would have let the request through.
            if token.is_some() {
                return Err(StatusError::unauthorized());
            }
        }
        if let Some(u) = peer {
            return Ok(u);
        }
        if self.authn.anonymous {
            return Ok(UserInfo::anonymous());
        }
        Err(StatusError::unauthorized())
    }
}

/// Accepts TLS connections on `listener` and serves them with HTTP/1.1 or HTTP/2
/// (by ALPN) until the process ends.
pub async fn serve_tls(listener: TcpListener, tls: Arc<rustls::ServerConfig>, filters: Arc<Filters>) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer): (tokio::net::TcpStream, SocketAddr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let filters = filters.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let peer_user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|c| user_from_certificate(c.as_ref()));
            let service = hyper::service::service_fn(move |req| {
                let filters = filters.clone();
                let peer_user = peer_user.clone();
                async move { Ok::<_, std::convert::Infallible>(filters.serve(req, peer_user).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

/// A rustls server config: the serving certificate, client certificates
/// verified against `client_ca` but optional (tokens and anonymous still work),
/// ALPN h2 and http/1.1.
pub fn tls_config(cert_pem: &[u8], key_pem: &[u8], client_ca_pem: Option<&[u8]>) -> Result<rustls::ServerConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading serving certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("reading serving key: {e}"))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca_pem {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                roots.add(c.map_err(|e| format!("reading client CA: {e}"))?).map_err(|e| format!("client CA: {e}"))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("client CA: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| format!("serving certificate: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
