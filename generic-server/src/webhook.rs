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
    /// A URL, split for dialing; `url` is as configured (no query, no fragment).
    Url { url: String, host: String, port: u16, path: String },
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
        let (host, port, path) = backend::split_https_url(url)?;
        Ok(Endpoint::Url { url: url.to_string(), host, port, path })
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
                Endpoint::Url { host, port, path, .. } => {
                    (Target { host: host.clone(), port: *port, server_name: host.clone() }, path.clone())
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
                Endpoint::Url { .. } => format!("{}:{}", target.host, target.port),
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
        let Ok(Endpoint::Url { host, port, path, .. }) = Endpoint::of_url("https://127.0.0.1:8443/validate") else {
            panic!("a valid URL")
        };
        assert_eq!((host.as_str(), port, path.as_str()), ("127.0.0.1", 8443, "/validate"));
        let Ok(Endpoint::Url { host, port, path, .. }) = Endpoint::of_url("https://[::1]/x") else {
            panic!("a valid URL")
        };
        assert_eq!((host.as_str(), port, path.as_str()), ("::1", 443, "/x"));
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
}
