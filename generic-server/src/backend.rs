//! Talking to a backend the server calls out to over HTTPS: where a Service
//! resolves to (the clusterIP, a ready endpoint, or an ExternalName's
//! externalName), a TLS client verified against a caBundle, and one
//! exchange on a fresh connection. The aggregator's proxy and availability
//! controller and the admission webhooks share this, as upstream's
//! ServiceResolver and webhook client manager serve both.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

use crate::endpoints::ResourceServer;
use crate::registry::{ListOptions, Store};
use crate::storage::Freshness;

/// A reference to a Service port (an APIService's or a webhook's).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    pub port: u16,
}

/// How long a TCP connect plus TLS handshake may take before the backend
/// counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a request for an APIService goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// The name the serving certificate must carry: `<service>.<namespace>.svc`.
    pub server_name: String,
}

impl Target {
    pub fn url(&self, path: &str) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("https://{host}:{}{path}", self.port)
    }
}

/// Why a Service did not resolve: an Available condition's reason and message.
#[derive(Debug, Clone, PartialEq)]
pub struct Unresolved {
    pub reason: &'static str,
    pub message: String,
}

/// Resolves Services through the Stores of the server that holds them.
pub struct Resolver {
    pub core: Arc<ResourceServer>,
    /// --enable-aggregator-routing: go to an endpoint, not the clusterIP.
    pub routing: bool,
}

fn read_opts() -> ListOptions {
    // The watch cache answers: a few milliseconds stale is fine for routing.
    ListOptions { freshness: Freshness::Any, ..Default::default() }
}

impl Resolver {
    fn store(&self, group: &str, resource: &str) -> Option<Arc<Store>> {
        self.core.store(group, "v1", resource)
    }

    /// The backend of `svc`. With `check_endpoints`, a ClusterIP Service also
    /// needs a ready endpoint (the availability controller's rule).
    pub async fn resolve(&self, svc: &ServiceRef, check_endpoints: bool) -> Result<Target, Unresolved> {
        let server_name = format!("{}.{}.svc", svc.name, svc.namespace);
        let not_found = || Unresolved {
            reason: "ServiceNotFound",
            message: format!("service/{} in {:?} is not present", svc.name, svc.namespace),
        };
        let Some(services) = self.store("", "services") else { return Err(not_found()) };
        let service = match services.get_at(&svc.namespace, &svc.name, Freshness::Any).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() => return Err(not_found()),
            Err(e) => return Err(Unresolved { reason: "ServiceAccessError", message: e.message }),
        };
        let spec = service.get("spec").cloned().unwrap_or_default();
        let str_of = |k: &str| spec.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        if str_of("type") == "ExternalName" {
            return Ok(Target { host: str_of("externalName"), port: svc.port, server_name });
        }
        let port = spec
            .get("ports")
            .and_then(Value::as_array)
            .and_then(|ports| ports.iter().find(|p| p.get("port").and_then(Value::as_u64) == Some(svc.port as u64)));
        let Some(port) = port else {
            return Err(Unresolved {
                reason: "ServicePortError",
                message: format!("service/{} in {:?} is not listening on port {}", svc.name, svc.namespace, svc.port),
            });
        };
        let port_name = port.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        if self.routing || check_endpoints {
            match self.ready_endpoint(svc, &port_name).await {
                Some(Some((ip, p))) if self.routing => return Ok(Target { host: ip, port: p, server_name }),
                Some(Some(_)) => {}
                Some(None) => {
                    return Err(Unresolved {
                        reason: "MissingEndpoints",
                        message: format!(
                            "endpoints for service/{} in {:?} have no addresses with port name {:?}",
                            svc.name, svc.namespace, port_name
                        ),
                    })
                }
                // No endpoint resource is served: nothing to route to.
                None if self.routing => {
                    return Err(Unresolved {
                        reason: "MissingEndpoints",
                        message: format!("cannot find endpoints for service/{} in {:?}", svc.name, svc.namespace),
                    })
                }
                None => {}
            }
        }
        let cluster_ip = str_of("clusterIP");
        if cluster_ip.is_empty() || cluster_ip == "None" {
            return Err(Unresolved {
                reason: "ServiceNotFound",
                message: format!("service/{} in {:?} has no cluster IP", svc.name, svc.namespace),
            });
        }
        Ok(Target { host: cluster_ip, port: svc.port, server_name })
    }

    /// A ready address and port of the Service's port named `port_name`, from
    /// its EndpointSlices, else its Endpoints. `None` when neither resource
    /// is served; `Some(None)` when there is no ready address.
    async fn ready_endpoint(&self, svc: &ServiceRef, port_name: &str) -> Option<Option<(String, u16)>> {
        if let Some(slices) = self.store("discovery.k8s.io", "endpointslices") {
            let list = slices.list(&svc.namespace, &read_opts()).await.ok()?;
            let items = list.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
            for slice in items.iter().filter(|s| {
                s.pointer("/metadata/labels/kubernetes.io~1service-name").and_then(Value::as_str) == Some(&svc.name)
            }) {
                let port = named_port(slice.get("ports"), port_name);
                let endpoints = slice.get("endpoints").and_then(Value::as_array).cloned().unwrap_or_default();
                let ready = endpoints.iter().find(|e| {
                    e.pointer("/conditions/ready").and_then(Value::as_bool) != Some(false)
                        && e.pointer("/addresses/0").is_some()
                });
                if let (Some(p), Some(e)) = (port, ready) {
                    let ip = e.pointer("/addresses/0").and_then(Value::as_str).unwrap_or_default().to_string();
                    return Some(Some((ip, p)));
                }
            }
            return Some(None);
        }
        let endpoints = self.store("", "endpoints")?;
        let ep = match endpoints.get_at(&svc.namespace, &svc.name, Freshness::Any).await {
            Ok(ep) => ep,
            Err(_) => return Some(None),
        };
        let subsets = ep.get("subsets").and_then(Value::as_array).cloned().unwrap_or_default();
        for subset in subsets {
            let port = named_port(subset.get("ports"), port_name);
            let ip = subset.pointer("/addresses/0/ip").and_then(Value::as_str);
            if let (Some(p), Some(ip)) = (port, ip) {
                return Some(Some((ip.to_string(), p)));
            }
        }
        Some(None)
    }
}

fn named_port(ports: Option<&Value>, name: &str) -> Option<u16> {
    ports?
        .as_array()?
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str).unwrap_or_default() == name)?
        .get("port")?
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
}

/// An https URL split for dialing.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpsUrl {
    /// The host and port as the URL writes them, user info dropped: what Go's
    /// client sends as the Host header (no port when the URL has none).
    pub authority: String,
    /// The host to dial (a bracketed IPv6 host without its brackets).
    pub host: String,
    /// 443 when the URL has none.
    pub port: u16,
    pub path: String,
}

/// Splits an https URL for dialing.
pub fn split_https_url(url: &str) -> Result<HttpsUrl, String> {
    let rest = url.strip_prefix("https://").ok_or_else(|| format!("unsupported scheme in {url:?}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| format!("invalid host in {url:?}"))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| format!("invalid port in {url:?}"))?,
        None => 443,
    };
    Ok(HttpsUrl { authority: authority.to_string(), host: host.to_string(), port, path: path.to_string() })
}

/// A TLS client config trusting only `ca_bundle` (PEM), or verifying
/// nothing with `insecure`; `client` is the certificate and key to present.
pub fn client_tls(
    ca_bundle: &[u8],
    insecure: bool,
    client: Option<(&[CertificateDer<'static>], &PrivateKeyDer<'static>)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_bundle) {
            let c = c.map_err(|e| format!("reading the caBundle: {e}"))?;
            roots.add(c).map_err(|e| format!("the caBundle: {e}"))?;
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match client {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs.to_vec(), key.clone_key())
            .map_err(|e| format!("the client certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A dial error as Go's net package words it (clients compare the text).
pub fn dial_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => e.to_string(),
    }
}

/// Opens a connection to `target` and sends `req` on it, waiting for the
/// response head at most `head_timeout` (None for long-running requests).
/// The connection lives as long as the response body.
pub async fn send(
    target: &Target,
    tls: Arc<rustls::ClientConfig>,
    req: http::Request<Full<Bytes>>,
    head_timeout: Option<Duration>,
) -> Result<http::Response<hyper::body::Incoming>, String> {
    let server_name =
        ServerName::try_from(target.server_name.clone()).map_err(|e| format!("{}: {e}", target.server_name))?;
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("dial tcp {}:{}: {}", target.host, target.port, dial_error(&e)))?;
        let _ = tcp.set_nodelay(true);
        tokio_rustls::TlsConnector::from(tls).connect(server_name, tcp).await.map_err(|e| format!("tls: {e}"))
    };
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(r) => r?,
        Err(_) => return Err(format!("dial tcp {}:{}: i/o timeout", target.host, target.port)),
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("backend connection ended: {e}");
        }
    });
    let exchange = sender.send_request(req);
    let resp = match head_timeout {
        Some(t) => match tokio::time::timeout(t, exchange).await {
            Ok(r) => r,
            Err(_) => return Err("timeout awaiting response headers".into()),
        },
        None => exchange.await,
    };
    resp.map_err(|e| e.to_string())
}

/// insecureSkipTLSVerify: any certificate is accepted, signatures are still
/// checked so the handshake itself stays sound.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
