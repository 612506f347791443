//! Calling a webhook, as upstream's k8s.io/apiserver/pkg/util/webhook does
//! for admission webhooks and CRD conversion webhooks alike: a clientConfig
//! (an https URL, or a Service port and path) compiled once with a TLS
//! client trusting its caBundle; then JSON posted to it, the Service resolved
//! as the aggregator resolves APIService backends and verified as
//! `<service>.<namespace>.svc`, and the answer decoded as upstream's REST
//! client decodes it. Errors are worded as that client's.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use crate::backend::{self, Resolver, ServiceRef, Target};
use crate::meta::str_at;

/// The largest answer read from a webhook (upstream's REST client has no
/// limit; a bound keeps a misbehaving webhook from exhausting memory).
const MAX_RESPONSE: usize = 32 << 20;

/// Where a webhook is called.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// A URL as configured (no query, no fragment), and split for dialing.
    Url { url: String, split: backend::HttpsUrl },
    /// A Service port and the path on it.
    Service { service: ServiceRef, path: String },
}

impl Endpoint {
    /// The URL as upstream's client names it in errors: a Service is addressed
    /// as `https://<name>.<namespace>.svc:<port><path>`.
    pub fn url(&self) -> String {
        match self {
            Endpoint::Url { url, .. } => url.clone(),
            Endpoint::Service { service, path } => {
                format!("https://{}.{}.svc:{}{path}", service.name, service.namespace, service.port)
            }
        }
    }

    /// The endpoint of an https URL (validation already refused other
    /// schemes, queries and fragments).
    pub fn of_url(url: &str) -> Result<Endpoint, String> {
        Ok(Endpoint::Url { url: url.to_string(), split: backend::split_https_url(url)? })
    }
}

/// A compiled clientConfig. What cannot be compiled is kept as the error a
/// call reports, so a bad configuration fails each call rather than the
/// object holding it.
#[derive(Clone)]
pub struct Client {
    pub endpoint: Result<Endpoint, String>,
    pub tls: Result<Arc<rustls::ClientConfig>, String>,
}

impl std::fmt::Debug for Client {
    // The TLS client has no useful text; what it trusts came from the
    // caBundle beside the endpoint.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("endpoint", &self.endpoint).field("tls", &self.tls.as_ref().map(|_| ())).finish()
    }
}

impl Client {
    /// From a clientConfig: `url`, or `service` (namespace, name, port 443
    /// by default, path "/" by default), and `caBundle`.
    pub fn from_client_config(config: &Value) -> Client {
        let endpoint = match (config.get("url").and_then(Value::as_str), config.get("service")) {
            (Some(url), _) => Endpoint::of_url(url),
            (None, Some(svc)) if svc.is_object() => Ok(Endpoint::Service {
                service: ServiceRef {
                    namespace: str_at(svc, "/namespace").to_string(),
                    name: str_at(svc, "/name").to_string(),
                    port: svc.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).unwrap_or(443),
                },
                path: match str_at(svc, "/path") {
                    "" => "/".to_string(),
                    p => p.to_string(),
                },
            }),
            _ => Err("no url or service in clientConfig".to_string()),
        };
        let tls = base64::engine::general_purpose::STANDARD
            .decode(str_at(config, "/caBundle"))
            .map_err(|e| format!("the caBundle: {e}"))
            .and_then(|ca| backend::client_tls(&ca, false, None));
        Client { endpoint, tls }
    }

    /// Posts `body` (JSON) with `query` appended to the path and returns the
    /// decoded answer, all within `timeout`. Transport errors are Go's
    /// url.Error (`Post "URL": ...`); an answer that does not decode is the
    /// REST client's own error, unprefixed.
    pub async fn post(
        &self,
        resolver: Option<&Resolver>,
        query: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Value, String> {
        let endpoint = self.endpoint.as_ref().map_err(Clone::clone)?;
        let url = format!("{}{query}", endpoint.url());
        let exchange = async {
            let tls = self.tls.clone().map_err(Transport)?;
            let (target, path) = match endpoint {
                Endpoint::Url { split, .. } => {
                    let target = Target { host: split.host.clone(), port: split.port, server_name: split.host.clone() };
                    (target, split.path.clone())
                }
                Endpoint::Service { service, path } => {
                    let resolver = resolver.ok_or(Transport("no service resolver".into()))?;
                    let target = resolver.resolve(service, false).await.map_err(|u| {
                        // Upstream's resolver reads a Service lister: its NotFound.
                        Transport(if u.message.ends_with("is not present") {
                            format!("service {:?} not found", service.name)
                        } else {
                            u.message
                        })
                    })?;
                    (target, path.clone())
                }
            };
            let host_header = match endpoint {
                Endpoint::Service { service, .. } => {
                    format!("{}.{}.svc:{}", service.name, service.namespace, service.port)
                }
                Endpoint::Url { split, .. } => split.authority.clone(),
            };
            let req = http::Request::post(format!("{path}{query}"))
                .header(http::header::HOST, host_header)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::ACCEPT, "application/json, */*")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| Transport(e.to_string()))?;
            let resp = backend::send(&target, tls, req, None).await.map_err(Transport)?;
            let status = resp.status();
            let content_type =
                resp.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let limited = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE);
            let bytes = limited.collect().await.map_err(|e| Transport(e.to_string()))?.to_bytes();
            decode(status, &content_type, &bytes).map_err(Answer)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(Transport(e))) => Err(format!("Post {url:?}: {e}")),
            Ok(Err(Answer(e))) => Err(e),
            Err(_) => Err(format!("Post {url:?}: context deadline exceeded")),
        }
    }
}

/// Where a call failed: on the way, or in what came back.
enum CallError {
    Transport(String),
    Answer(String),
}
use CallError::{Answer, Transport};

/// The answer as upstream's REST client reads it: a body it has no decoder
/// for is an error, an error status is the Status it carries.
fn decode(status: http::StatusCode, content_type: &str, body: &[u8]) -> Result<Value, String> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let json = media.is_empty() || media == "application/json";
    if !status.is_success() {
        let parsed: Option<Value> = if json { serde_json::from_slice(body).ok() } else { None };
        if let Some(m) = parsed.as_ref().and_then(|s| s.get("message")).and_then(Value::as_str) {
            return Err(m.to_string());
        }
        let text = String::from_utf8_lossy(body);
        return Err(format!("an error on the server ({:?}) has prevented the request from succeeding", text.trim()));
    }
    if !json {
        return Err(format!("serializer for {content_type} doesn't exist"));
    }
    serde_json::from_slice(body).map_err(|e| format!("couldn't get version/kind; json parse error: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_for_dialing() {
        let split = |url: &str| match Endpoint::of_url(url) {
            Ok(Endpoint::Url { split: s, .. }) => (s.authority, s.host, s.port, s.path),
            other => panic!("{url}: {other:?}"),
        };
        let owned = |a: &str, h: &str, port: u16, p: &str| (a.to_string(), h.to_string(), port, p.to_string());
        assert_eq!(split("https://127.0.0.1:8443/validate"), owned("127.0.0.1:8443", "127.0.0.1", 8443, "/validate"));
        // The Host header is the authority as written: brackets kept, no
        // port added, user info dropped.
        assert_eq!(split("https://[::1]/x"), owned("[::1]", "::1", 443, "/x"));
        assert_eq!(split("https://u@[::1]:9443/x"), owned("[::1]:9443", "::1", 9443, "/x"));
        assert_eq!(split("https://hook.example"), owned("hook.example", "hook.example", 443, ""));
        assert!(Endpoint::of_url("http://a/").is_err());
        assert!(Endpoint::of_url("https://a:port/").is_err());
        let svc = Client::from_client_config(&serde_json::json!({"service": {"namespace": "n", "name": "s"}}));
        assert_eq!(svc.endpoint.map(|e| e.url()), Ok("https://s.n.svc:443/".to_string()));
    }

    #[test]
    fn answers_are_decoded_as_upstream() {
        let ok = http::StatusCode::OK;
        assert_eq!(decode(ok, "text/plain", b"hi").unwrap_err(), "serializer for text/plain doesn't exist");
        assert!(decode(ok, "application/json", b"garbage")
            .unwrap_err()
            .starts_with("couldn't get version/kind; json parse error: "));
        assert_eq!(decode(ok, "", b"{}").expect("JSON"), serde_json::json!({}));
        let bad = http::StatusCode::INTERNAL_SERVER_ERROR;
        assert_eq!(
            decode(bad, "text/plain", b"boom\n").unwrap_err(),
            "an error on the server (\"boom\") has prevented the request from succeeding"
        );
    }

    /// A real HTTPS webhook on the IPv6 loopback answers with the Host header
    /// it was sent: the URL's authority, brackets and all.
    #[tokio::test]
    async fn an_ipv6_webhook_is_sent_a_bracketed_host() {
        use base64::Engine;
        let ca = crate::pki::new_ca("webhook-ca").unwrap();
        let serving = crate::pki::serving_cert(&ca, "webhook", &["::1".to_string()]).unwrap();
        let tls = crate::serve::tls_config(serving.cert.as_bytes(), serving.key.as_bytes(), None).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("[::1]:0").await.expect("the IPv6 loopback");
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let Ok(stream) = acceptor.accept(tcp).await else { return };
            let echo = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                let host = req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
                let body = serde_json::json!({"host": host}).to_string();
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Full::new(Bytes::from(body)))
                        .unwrap(),
                )
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, echo).await;
        });
        let url = format!("https://[::1]:{port}/validate");
        let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca.cert.as_bytes());
        let client = Client::from_client_config(&serde_json::json!({"url": url, "caBundle": ca_bundle}));
        let answer = client.post(None, "", b"{}".to_vec(), Duration::from_secs(10)).await.unwrap();
        assert_eq!(answer, serde_json::json!({"host": format!("[::1]:{port}")}));
    }
}
