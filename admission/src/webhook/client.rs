//! One call of a webhook over HTTPS: the endpoint resolved (a URL, or a
//! Service as the aggregator resolves APIService backends), TLS verified
//! against the caBundle with the name upstream verifies
//! (`<service>.<namespace>.svc` for a Service), the AdmissionReview posted
//! with upstream's `?timeout=` parameter, and the answer decoded. Errors are
//! worded as upstream's REST client's, after "failed to call webhook: ".

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use generic_server::backend::{self, Resolver, Target};

use super::config::{Endpoint, Hook};

/// The largest answer read from a webhook (upstream's REST client has no
/// limit; a bound keeps a misbehaving webhook from exhausting memory).
const MAX_RESPONSE: usize = 32 << 20;

/// Go's time.Duration text for whole seconds, as the `timeout` parameter.
fn go_seconds(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// Posts `body` to the webhook and returns the decoded answer, within the
/// webhook's timeout.
pub(crate) async fn post(hook: &Hook, resolver: Option<&Resolver>, body: Vec<u8>) -> Result<Value, String> {
    let endpoint = hook.endpoint.as_ref().map_err(Clone::clone)?;
    let url = format!("{}?timeout={}", endpoint.url(), go_seconds(hook.timeout));
    // Transport errors are Go's url.Error (`Post "URL": ...`); an answer
    // that does not decode is the REST client's own error, unprefixed.
    let exchange = async {
        let tls = hook.tls.clone().map_err(Transport)?;
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
            Endpoint::Service { service, .. } => format!("{}.{}.svc:{}", service.name, service.namespace, service.port),
            Endpoint::Url { .. } => format!("{}:{}", target.host, target.port),
        };
        let req = http::Request::post(format!("{path}?timeout={}", go_seconds(hook.timeout)))
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
    match tokio::time::timeout(hook.timeout, exchange).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(Transport(e))) => Err(format!("Post {url:?}: {e}")),
        Ok(Err(Answer(e))) => Err(e),
        Err(_) => Err(format!("Post {url:?}: context deadline exceeded")),
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
