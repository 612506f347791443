//! The TLS listener: accepts connections (HTTP/1.1 or HTTP/2 by ALPN), reads
//! each request body within the 3 MiB limit, records the verified client
//! certificate's subject (or, for a server whose authenticator verifies
//! certificates itself, the presented chain), and hands the request to the
//! filter chain.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::authn::{user_from_certificate, UserInfo};
use crate::filters::{HttpService, PeerCertificateUser, PeerCertificates, RemoteAddr};
use crate::handler::Response;
use crate::status::StatusError;

/// Request bodies larger than this are refused with 413, as upstream (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// What the handshake established about the client, for the request's extensions.
#[derive(Clone, Default)]
struct Peer {
    user: Option<UserInfo>,
    chain: Option<PeerCertificates>,
    addr: Option<SocketAddr>,
}

async fn serve_one(service: HttpService, req: http::Request<Incoming>, peer: Peer) -> Response {
    let head = req.method() == http::Method::HEAD;
    let mut resp = read_and_serve(service, req, peer).await;
    if head {
        // A HEAD answer has the GET's headers and no body (HTTP/2 forbids one).
        *resp.body_mut() = crate::body::empty();
    }
    resp
}

async fn read_and_serve(service: HttpService, req: http::Request<Incoming>, peer: Peer) -> Response {
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
    let mut body = bytes::BytesMut::new();
    while let Some(frame) = incoming.frame().await {
        let data = match frame {
            Ok(f) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
            Err(e) => return StatusError::bad_request(format!("error reading request body: {e}")).into_response(),
        };
        if body.len() + data.len() > MAX_BODY_BYTES {
            tokio::spawn(drain(incoming));
            return StatusError::too_large().into_response();
        }
        body.extend_from_slice(&data);
    }
    let bytes: Bytes = body.freeze();
    let mut req = http::Request::from_parts(parts, bytes);
    if let Some(u) = peer.user {
        req.extensions_mut().insert(PeerCertificateUser(u));
    }
    if let Some(c) = peer.chain {
        req.extensions_mut().insert(c);
    }
    if let Some(a) = peer.addr {
        req.extensions_mut().insert(RemoteAddr(a));
    }
    match service.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
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

/// Accepts TLS connections on `listener` and serves them until the process ends.
/// The config verified any client certificate (see [`tls_config`]), so its
/// subject is the caller.
pub async fn serve_tls(listener: TcpListener, tls: Arc<rustls::ServerConfig>, service: HttpService) {
    serve_connections(listener, tls, service, false).await
}

/// Like [`serve_tls`] for a config from [`tls_config_requesting_client_certs`]:
/// the handshake proved only that the client holds the certificate's key, so
/// the presented chain goes to the request as [`PeerCertificates`] for an
/// authenticator that verifies it against its own CA (upstream's request-header
/// authenticator), and never as a user.
pub async fn serve_tls_unverified_peers(listener: TcpListener, tls: Arc<rustls::ServerConfig>, service: HttpService) {
    serve_connections(listener, tls, service, true).await
}

async fn serve_connections(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: HttpService,
    unverified_peers: bool,
) {
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
        let service = service.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let certs = stream.get_ref().1.peer_certificates().filter(|c| !c.is_empty());
            let client = if unverified_peers {
                Peer {
                    user: None,
                    chain: certs.map(|c| PeerCertificates(c.iter().map(|d| d.clone().into_owned()).collect())),
                    addr: Some(peer),
                }
            } else {
                Peer {
                    user: certs.and_then(|c| c.first()).and_then(|c| user_from_certificate(c.as_ref())),
                    chain: None,
                    addr: Some(peer),
                }
            };
            let handler = hyper::service::service_fn(move |req| {
                let service = service.clone();
                let client = client.clone();
                async move { Ok::<_, std::convert::Infallible>(serve_one(service, req, client).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), handler).await {
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
