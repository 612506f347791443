//! The HTTP client loadgen drives servers with: the admin client certificate
//! from a kubeconfig (or one issued by the server's CA for another user), TLS
//! by rustls, HTTP/2 by hyper, a few connections with every request
//! multiplexed on them (client-go keeps one HTTP/2 connection per host), in
//! JSON or in protobuf as client-go asks for it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Where a server is and how to authenticate to it.
#[derive(Clone)]
pub struct Creds {
    /// `https://host:port`, without a trailing slash.
    pub server: String,
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl Creds {
    /// The current context's cluster and user of a kubeconfig with a client
    /// certificate (what the server writes as DATA_DIR/admin.kubeconfig).
    pub fn from_kubeconfig(path: &std::path::Path) -> Result<Creds, String> {
        let kc = generic_server::kubeconfig::Context::read(path)?;
        let missing = |what: &str| format!("{}: the user has no {what}", path.display());
        Ok(Creds {
            server: kc.server.trim_end_matches('/').to_string(),
            ca_pem: kc.ca_pem,
            cert_pem: kc.client_cert_pem.ok_or_else(|| missing("client certificate"))?,
            key_pem: kc.client_key_pem.ok_or_else(|| missing("client key"))?,
        })
    }

    /// The same server and CA with a client certificate for `user` in
    /// `groups`, issued by the CA in `pki_dir` (the server's DATA_DIR/pki):
    /// how a non-admin identity authenticates without a token file.
    pub fn as_user(&self, pki_dir: &std::path::Path, user: &str, groups: &[&str]) -> Result<Creds, String> {
        let ca = generic_server::pki::read_pair(pki_dir, "ca")
            .ok_or_else(|| format!("no CA certificate and key in {}", pki_dir.display()))?;
        let pem = generic_server::pki::client_cert(&ca, user, groups)?;
        Ok(Creds { cert_pem: pem.cert.into_bytes(), key_pem: pem.key.into_bytes(), ..self.clone() })
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&self.ca_pem) {
            roots.add(c.map_err(|e| format!("CA: {e}"))?).map_err(|e| format!("CA: {e}"))?;
        }
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cert: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem).map_err(|e| format!("key: {e}"))?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("client certificate: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    fn host_port(&self) -> Result<(String, u16), String> {
        let rest = self.server.strip_prefix("https://").ok_or_else(|| format!("not an https URL: {}", self.server))?;
        let authority = rest.split('/').next().unwrap_or(rest);
        let bad_port = |_| format!("bad port in {}", self.server);
        if let Some(v6) = authority.strip_prefix('[') {
            let (host, port) = v6.split_once(']').ok_or_else(|| format!("bad address in {}", self.server))?;
            let port = match port.strip_prefix(':') {
                Some(p) => p.parse().map_err(bad_port)?,
                None => 443,
            };
            return Ok((host.to_string(), port));
        }
        match authority.rsplit_once(':') {
            Some((host, port)) => Ok((host.to_string(), port.parse().map_err(bad_port)?)),
            None => Ok((authority.to_string(), 443)),
        }
    }
}

/// What a request asks for in Accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    /// What client-go sends when configured for protobuf (kubectl 1.33 does
    /// for its typed clients): protobuf, JSON where a kind has no protobuf form.
    Protobuf,
}

impl Format {
    pub fn accept(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Protobuf => "application/vnd.kubernetes.protobuf, application/json",
        }
    }
}

/// One HTTP/2 connection.
#[derive(Clone)]
struct Conn {
    send: SendRequest<Full<Bytes>>,
}

/// A handful of HTTP/2 connections to one server; requests go round-robin.
#[derive(Clone)]
pub struct Client {
    base: String,
    conns: Arc<Vec<Conn>>,
    next: Arc<AtomicUsize>,
}

/// A response read whole.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Client {
    /// Opens `connections` HTTP/2 connections (TLS handshake included).
    pub async fn connect(creds: &Creds, connections: usize) -> Result<Client, String> {
        let tls = Arc::new(creds.tls_config()?);
        let (host, port) = creds.host_port()?;
        let name = ServerName::try_from(host.clone()).map_err(|e| format!("server name {host}: {e}"))?;
        let mut conns = Vec::new();
        for _ in 0..connections.max(1) {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))?;
            // Flow-control windows as Go's HTTP/2 transport opens them, so a
            // large list is not throttled by 64 KiB windows.
            let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(4 << 20)
                .initial_connection_window_size(1 << 30)
                .max_frame_size(1 << 20)
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP/2 handshake with {host}:{port}: {e}"))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            conns.push(Conn { send });
        }
        Ok(Client { base: creds.server.clone(), conns: Arc::new(conns), next: Arc::new(AtomicUsize::new(0)) })
    }

    /// Sends a request asking for `format` and returns the response with its
    /// body still streaming.
    pub async fn send_as(
        &self,
        format: Format,
        method: hyper::Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        let mut send = self.conns[i].send.clone();
        let mut req = hyper::Request::builder().method(method).uri(format!("{}{path}", self.base));
        req = req.header("accept", format.accept());
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default())).map_err(|e| e.to_string())?;
        send.ready().await.map_err(|e| format!("connection closed: {e}"))?;
        send.send_request(req).await.map_err(|e| format!("request failed: {e}"))
    }

    /// Sends a request and reads the whole response.
    pub async fn request(&self, method: hyper::Method, path: &str, body: Option<Bytes>) -> Result<Answer, String> {
        self.request_as(Format::Json, method, path, body).await
    }

    pub async fn request_as(
        &self,
        format: Format,
        method: hyper::Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer, String> {
        let resp = self.send_as(format, method, path, body).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map_err(|e| format!("reading the response: {e}"))?.to_bytes();
        Ok(Answer { status, body })
    }

    /// `request` that counts anything but 2xx as an error, quoting the body.
    pub async fn ok(&self, method: hyper::Method, path: &str, body: Option<Bytes>) -> Result<Bytes, String> {
        self.ok_as(Format::Json, method, path, body).await
    }

    /// `ok` asking for `format`; a protobuf request answered in another form
    /// is an error, so a fallback to JSON is never measured as protobuf.
    pub async fn ok_as(
        &self,
        format: Format,
        method: hyper::Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, String> {
        let what = format!("{method} {path}");
        let a = self.request_as(format, method, path, body).await?;
        if (200..300).contains(&a.status) {
            if format == Format::Protobuf && !a.body.starts_with(generic_server::protobuf::MAGIC) {
                return Err(format!("{what}: asked for protobuf, answered in another form"));
            }
            Ok(a.body)
        } else {
            let text = String::from_utf8_lossy(&a.body);
            Err(format!("{what}: HTTP {}: {}", a.status, text.chars().take(300).collect::<String>()))
        }
    }
}
