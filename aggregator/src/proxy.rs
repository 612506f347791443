//! Proxying a remote APIService's group-version (upstream's handler_proxy):
//! the request goes to the backend the Service resolves to, over TLS verified
//! with the caBundle, authenticated with the front-proxy client certificate,
//! the caller's identity in the request headers and its own credentials
//! stripped. The response, streaming ones (watch) included, comes back as the
//! backend sends it; a backend that cannot be reached is a 503 Status.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};

use generic_server::authn::UserInfo;
use generic_server::body::BoxError;
use generic_server::handler::{Request, Response};
use generic_server::request_info::{query_param, RequestInfo};
use generic_server::status::StatusError;

use crate::apiservice::ApiService;
use crate::backend::{self, FrontProxyClient, IdentityHeaders, Resolver};

/// How long a short request waits for the backend's response head (upstream's
/// default request timeout). Watches wait as long as the backend streams.
const RESPONSE_HEAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Hop-by-hop headers (RFC 9110 7.6.1) that a proxy never forwards.
const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

pub struct Proxy {
    pub client: Arc<FrontProxyClient>,
    pub resolver: Arc<Resolver>,
}

fn unavailable(message: impl Into<String>) -> Response {
    StatusError::service_unavailable(message).into_response()
}

/// Whether the request streams for as long as the client stays (a watch):
/// no deadline on the backend's answer then.
fn long_running(req: &Request) -> bool {
    let watch_param = matches!(query_param(req.uri().query(), "watch").as_deref(), Some("true" | "1"));
    watch_param || RequestInfo::of(req).is_some_and(|i| i.verb == "watch")
}

impl Proxy {
    pub async fn serve(&self, api: &ApiService, req: Request) -> Response {
        if !api.available {
            return unavailable("service unavailable");
        }
        let Some(svc) = &api.service else { return unavailable("service unavailable") };
        let target = match self.resolver.resolve(svc, false).await {
            Ok(t) => t,
            Err(e) => return unavailable(format!("service unavailable: {}", e.message)),
        };
        let tls = match self.client.tls_config(api) {
            Ok(t) => t,
            Err(e) => return unavailable(format!("error trying to reach service: {e}")),
        };
        let head_timeout = (!long_running(&req)).then_some(RESPONSE_HEAD_TIMEOUT);
        let outgoing = match self.outgoing(req, &target) {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        };
        match backend::send(&target, tls, outgoing, head_timeout).await {
            Ok(resp) => incoming_response(resp),
            Err(e) => unavailable(format!("error trying to reach service: {e}")),
        }
    }

    /// The request as the backend gets it: same method, path, query and body;
    /// hop-by-hop headers, the caller's credentials and any identity headers
    /// the caller sent dropped; the authenticated identity added.
    fn outgoing(&self, req: Request, target: &backend::Target) -> Result<http::Request<Full<Bytes>>, StatusError> {
        let user = req
            .extensions()
            .get::<std::sync::Arc<UserInfo>>()
            .map(|u| UserInfo::clone(u))
            .unwrap_or_else(UserInfo::anonymous);
        let (parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
        let mut builder = http::Request::builder().method(parts.method.clone()).uri(path);
        let headers = builder.headers_mut().ok_or_else(|| StatusError::internal("building the proxied request"))?;
        for (name, value) in parts.headers.iter() {
            if drop_request_header(name, &self.client.headers) {
                continue;
            }
            headers.append(name.clone(), value.clone());
        }
        let host = if target.port == 443 {
            target.server_name.clone()
        } else {
            format!("{}:{}", target.server_name, target.port)
        };
        if let Ok(v) = HeaderValue::from_str(&host) {
            headers.insert(header::HOST, v);
        }
        set_identity(headers, &self.client.headers, &user);
        builder.body(Full::new(body)).map_err(StatusError::internal)
    }
}

fn drop_request_header(name: &HeaderName, ids: &IdentityHeaders) -> bool {
    let n = name.as_str();
    HOP_BY_HOP.contains(&n)
        || n == "authorization"
        || n == "host"
        || n.starts_with("proxy-")
        || n.eq_ignore_ascii_case(&ids.username)
        || n.eq_ignore_ascii_case(&ids.group)
        || (!ids.extra_prefix.is_empty() && n.starts_with(&ids.extra_prefix.to_ascii_lowercase()))
        || n.starts_with("impersonate-")
}

/// Upstream's request-header form: one user header, one group header per
/// group, one extra header per value (key percent-encoded).
fn set_identity(headers: &mut http::HeaderMap, ids: &IdentityHeaders, user: &UserInfo) {
    let name = |s: &str| HeaderName::from_bytes(s.as_bytes()).ok();
    if let (Some(h), Ok(v)) = (name(&ids.username), HeaderValue::from_str(&user.name)) {
        headers.insert(h, v);
    }
    if let Some(h) = name(&ids.group) {
        for g in &user.groups {
            if let Ok(v) = HeaderValue::from_str(g) {
                headers.append(h.clone(), v);
            }
        }
    }
    for (key, values) in &user.extra {
        let Some(h) = name(&format!("{}{}", ids.extra_prefix, escape_extra_key(key))) else { continue };
        for value in values {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.append(h.clone(), v);
            }
        }
    }
}

/// Extra keys travel in header names, so anything beyond a token's
/// characters is percent-encoded (as upstream's headerKeyEscape).
fn escape_extra_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&'*+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The backend's response as ours: status, end-to-end headers, and the body
/// streamed frame by frame.
pub fn incoming_response(resp: http::Response<hyper::body::Incoming>) -> Response {
    let (parts, incoming) = resp.into_parts();
    let mut out = http::Response::new(incoming.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync());
    *out.status_mut() = parts.status;
    for (name, value) in parts.headers.iter() {
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        out.headers_mut().append(name.clone(), value.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_keys_are_escaped() {
        assert_eq!(escape_extra_key("scopes"), "scopes");
        assert_eq!(escape_extra_key("example.com/key"), "example.com%2Fkey");
    }

    #[test]
    fn identity_headers_replace_the_callers() {
        let ids = IdentityHeaders {
            username: "X-Remote-User".into(),
            group: "X-Remote-Group".into(),
            extra_prefix: "X-Remote-Extra-".into(),
        };
        for h in ["authorization", "x-remote-user", "x-remote-group", "x-remote-extra-foo", "connection"] {
            assert!(drop_request_header(&HeaderName::from_static(h), &ids), "{h}");
        }
        assert!(!drop_request_header(&HeaderName::from_static("accept"), &ids));
        let mut headers = http::HeaderMap::new();
        let user = UserInfo {
            name: "alice".into(),
            groups: vec!["dev".into(), "system:authenticated".into()],
            extra: [("scopes".to_string(), vec!["a".to_string(), "b".to_string()])].into_iter().collect(),
            ..Default::default()
        };
        set_identity(&mut headers, &ids, &user);
        assert_eq!(headers["x-remote-user"], "alice");
        assert_eq!(headers.get_all("x-remote-group").iter().count(), 2);
        assert_eq!(headers.get_all("x-remote-extra-scopes").iter().count(), 2);
    }
}
