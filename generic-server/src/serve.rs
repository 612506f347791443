//! The TLS listener: accepts connections (HTTP/1.1 or HTTP/2 by ALPN), holds
//! them to upstream's header, idle and header-size limits ([`crate::deadlines`]),
//! reads each request body within the 3 MiB limit and the request timeout,
//! records the verified client certificate's subject (or, for a server whose
//! authenticator verifies certificates itself, the presented chain), and hands
//! the request to the filter chain.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::authn::user_from_certificate;
use crate::context::{Peer, RequestContext};
pub use crate::deadlines::ServingLimits;
use crate::deadlines::{Activity, Watched};
use crate::filters::HttpService;
use crate::handler::Response;
use crate::status::StatusError;

/// Request bodies larger than this are refused with 413, as upstream (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Header fields one HTTP/1 request may carry. Go counts only bytes; hyper
/// also counts fields (100 unless told, beyond which it answers 431), so the
/// count is set well above what clients send, and low enough that the table
/// hyper allocates for each request head stays small (64 bytes a field).
const MAX_HTTP1_HEADERS: usize = 512;

async fn serve_one(
    service: HttpService,
    req: http::Request<Incoming>,
    peer: Arc<Peer>,
    activity: Arc<Activity>,
    body_timeout: std::time::Duration,
) -> Response {
    let in_flight = activity.begin();
    let head = req.method() == http::Method::HEAD;
    let mut resp = read_and_serve(service, req, peer, body_timeout).await;
    if head {
        // A HEAD answer has the GET's headers and no body (HTTP/2 forbids one).
        *resp.body_mut() = crate::body::empty();
    }
    // The request is in flight until hyper has sent (or dropped) the body.
    crate::body::hold_until_sent(resp, in_flight)
}

async fn read_and_serve(
    service: HttpService,
    req: http::Request<Incoming>,
    peer: Arc<Peer>,
    body_timeout: std::time::Duration,
) -> Response {
    let received = std::time::Instant::now();
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (parts, mut incoming) = req.into_parts();
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        tokio::spawn(drain(incoming));
        return StatusError::too_large().into_response();
    }
    // No body (a GET's headers end its stream): nothing to wait for, and no
    // timer to arm. The size hint is hyper's, so asking takes no lock.
    let read = if hyper::body::Body::size_hint(&incoming).exact() == Some(0) {
        Ok(Bytes::new())
    } else if body_timeout.is_zero() {
        read_body(&mut incoming).await
    } else {
        match tokio::time::timeout(body_timeout, read_body(&mut incoming)).await {
            Ok(r) => r,
            Err(_) => return body_timed_out(parts.version),
        }
    };
    let bytes = match read {
        Ok(b) => b,
        Err(resp) => {
            tokio::spawn(drain(incoming));
            return *resp;
        }
    };
    let mut req = http::Request::from_parts(parts, bytes);
    // The request timeout counts from the head's arrival, body read included.
    req.extensions_mut().insert(RequestContext::new(received, peer));
    service.serve(req).await
}

/// Reads a request body of at most [`MAX_BODY_BYTES`].
async fn read_body(incoming: &mut Incoming) -> Result<Bytes, Box<Response>> {
    let mut body = bytes::BytesMut::new();
    while let Some(frame) = incoming.frame().await {
        let data = match frame {
            Ok(f) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
            Err(e) => {
                return Err(Box::new(
                    StatusError::bad_request(format!("error reading request body: {e}")).into_response(),
                ))
            }
        };
        if body.len() + data.len() > MAX_BODY_BYTES {
            return Err(Box::new(StatusError::too_large().into_response()));
        }
        body.extend_from_slice(&data);
    }
    Ok(body.freeze())
}

/// A body still unread when the request timeout has passed gets the timeout
/// filter's 504 (upstream reads it inside that filter), and an HTTP/1
/// connection is closed: the rest of the body is never read. (An HTTP/2
/// stream is reset when its body is dropped.)
fn body_timed_out(version: http::Version) -> Response {
    let mut resp = crate::filters::request_timed_out().into_response();
    if version < http::Version::HTTP_2 {
        resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    resp
}

/// How much of a refused body is read and thrown away, so that the client
/// finishes sending and reads the 413 rather than seeing its stream reset.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

async fn drain(mut incoming: Incoming) {
    let _ = tokio::time::timeout(DRAIN_TIME, async move {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = incoming.frame().await {
            seen += frame.data_ref().map(|d| d.len()).unwrap_or(0);
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

/// Accepts TLS connections on `listener` and serves them within `limits`
/// until the process ends. The config verified any client certificate (see
/// [`tls_config`]), so its subject is the caller.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: HttpService,
    limits: ServingLimits,
) {
    serve_connections(listener, tls, service, limits, false).await
}

/// Like [`serve_tls`] for a config from [`tls_config_requesting_client_certs`]:
/// the handshake proved only that the client holds the certificate's key, so
/// the presented chain goes to the request (its [`Peer`]`::chain`) for an
/// authenticator that verifies it against its own CA (upstream's request-header
/// authenticator), and never as a user.
pub async fn serve_tls_unverified_peers(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: HttpService,
    limits: ServingLimits,
) {
    serve_connections(listener, tls, service, limits, true).await
}

async fn serve_connections(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: HttpService,
    limits: ServingLimits,
    unverified_peers: bool,
) {
    let acceptor = TlsAcceptor::from(tls);
    let limits = Arc::new(limits);
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
        let service = service.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            // Go bounds the handshake by the header timeout too.
            let stream = match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let certs = stream.get_ref().1.peer_certificates().filter(|c| !c.is_empty());
            let client = Arc::new(if unverified_peers {
                Peer {
                    user: None,
                    chain: certs.map(|c| c.iter().map(|d| d.clone().into_owned()).collect()),
                    addr: Some(peer),
                }
            } else {
                Peer {
                    user: certs.and_then(|c| c.first()).and_then(|c| user_from_certificate(c.as_ref())).map(Arc::new),
                    chain: None,
                    addr: Some(peer),
                }
            });
            let activity = Activity::new(stream.get_ref().1.alpn_protocol() == Some(b"h2"));
            let handler = {
                let activity = activity.clone();
                let body_timeout = limits.body_timeout;
                hyper::service::service_fn(move |req| {
                    let service = service.clone();
                    let client = client.clone();
                    let activity = activity.clone();
                    // The connection's own task makes this future and moves it
                    // into the stream's task, one request after another; the
                    // request's real state is allocated inside the stream's
                    // task, on first poll, so that serial part stays small.
                    async move {
                        let served = Box::pin(serve_one(service, req, client, activity, body_timeout));
                        Ok::<_, std::convert::Infallible>(served.await)
                    }
                })
            };
            let io = TokioIo::new(Watched::new(stream, activity.clone()));
            let mut expired = crate::deadlines::Watchdog::start(activity.clone(), limits.clone());
            // As Go's server: HTTP/2 only when ALPN chose it.
            let ended = if activity.is_http2() {
                let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                builder.max_header_list_size(limits.http2_max_header_list());
                let conn = builder.serve_connection(io, handler);
                tokio::pin!(conn);
                tokio::select! {
                    biased;
                    r = conn.as_mut() => r,
                    _ = &mut expired => {
                        tracing::debug!(%peer, "closing an HTTP/2 connection idle past its idle timeout");
                        conn.as_mut().graceful_shutdown();
                        tokio::time::timeout(std::time::Duration::from_secs(5), conn).await.unwrap_or(Ok(()))
                    }
                }
            } else {
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .max_header_size(limits.http1_max_head())
                    .max_buf_size(limits.http1_max_head())
                    .max_headers(MAX_HTTP1_HEADERS);
                let conn = builder.serve_connection(io, handler);
                tokio::select! {
                    biased;
                    r = conn => r,
                    // Closed as Go does it: no answer, the connection just ends.
                    _ = &mut expired => {
                        tracing::debug!(%peer, "closing an HTTP/1 connection past its header or idle timeout");
                        Ok(())
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

/// A rustls server config: the serving certificate, client certificates
/// verified against `client_ca` but optional (tokens and anonymous still work),
/// ALPN h2 and http/1.1.
pub fn tls_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<rustls::ServerConfig, String> {
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

/// A rustls server config that asks for a client certificate without
/// requiring one or checking who issued it, as Go's RequestClientCert: the
/// handshake still proves the client holds the certificate's key, and the
/// chain is verified later by the authenticator that knows which CA it trusts.
/// Serve it with [`serve_tls_unverified_peers`].
pub fn tls_config_requesting_client_certs(cert_pem: &[u8], key_pem: &[u8]) -> Result<rustls::ServerConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading serving certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("reading serving key: {e}"))?;
    let verifier = Arc::new(RequestClientCert { algorithms: provider.signature_verification_algorithms });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| format!("serving certificate: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts any client certificate (or none) at the handshake and checks only
/// the handshake signature made with its key.
#[derive(Debug)]
struct RequestClientCert {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::server::danger::ClientCertVerifier for RequestClientCert {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        // No hints: clients then send whatever certificate they hold.
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Resolves on SIGTERM or Ctrl-C: how a server is asked to stop.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs a server's main future on a multi-threaded runtime; a failure to
/// start the runtime or an error the future returns is printed after `name`
/// and ends the process with status 1.
pub fn run_to_exit(name: &str, main: impl std::future::Future<Output = Result<(), String>>) {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(main) {
        eprintln!("{name}: {e}");
        std::process::exit(1);
    }
}
