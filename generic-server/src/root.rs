//! The root documents a standalone API server serves in front of its
//! resources: /api and /apis discovery (legacy and aggregated forms) and the
//! OpenAPI v2 and v3 documents, assembled from what the servers behind it
//! report (upstream's generic apiserver installs these for every server; in
//! kube-apiserver the aggregator serves them for the whole chain).

use crate::body;
use crate::discovery;
use crate::endpoints::respond;
use crate::handler::{DynHandler, Handler, Request, Response};
use crate::negotiation::{self, Output};
use crate::openapi::{v2proto, OpenApiCache};
use crate::status::StatusError;

pub struct RootHandler {
    delegate: DynHandler,
    openapi: OpenApiCache,
}

impl RootHandler {
    pub fn new(delegate: DynHandler) -> Self {
        RootHandler { delegate, openapi: OpenApiCache::new() }
    }
}

#[async_trait::async_trait]
impl Handler for RootHandler {
    async fn handle(&self, req: Request) -> Response {
        if let Some(resp) = root_discovery(self.delegate.as_ref(), &req) {
            return resp;
        }
        if let Some(resp) = openapi(&self.openapi, self.delegate.as_ref(), &req) {
            return resp;
        }
        self.delegate.handle(req).await
    }

    fn api_groups(&self) -> Vec<discovery::ApiGroup> {
        self.delegate.api_groups()
    }

    fn openapi_schemas(&self) -> Vec<discovery::OpenApiPart> {
        self.delegate.openapi_schemas()
    }
}

/// /api (when the core group is served behind) and /apis, in the form the
/// Accept header asks for.
pub fn root_discovery(chain: &dyn Handler, req: &Request) -> Option<Response> {
    let path = req.uri().path().trim_end_matches('/');
    if req.method() != http::Method::GET || !(path == "/api" || path == "/apis") {
        return None;
    }
    let groups = chain.api_groups();
    let core = path == "/api";
    if core && !groups.iter().any(|g| g.name.is_empty()) {
        return None;
    }
    let accept = req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok());
    let Some(output) = negotiation::negotiate(accept, false, true) else {
        return Some(StatusError::not_acceptable(accept.unwrap_or("")).into_response());
    };
    let value = match &output {
        Output::AggregatedDiscovery(v) => {
            let selected: Vec<_> = groups.into_iter().filter(|g| g.name.is_empty() == core).collect();
            discovery::aggregated(&selected, v)
        }
        _ if core => discovery::api_versions(),
        _ => discovery::group_list(&groups),
    };
    Some(respond(req, 200, &value, &output))
}

/// /openapi/v2 (JSON, or gnostic's protobuf form for its media types),
/// /openapi/v3 and /openapi/v3/<group-version>, with ETags.
pub fn openapi(cache: &OpenApiCache, chain: &dyn Handler, req: &Request) -> Option<Response> {
    let path = req.uri().path().trim_end_matches('/');
    if req.method() != http::Method::GET || !(path == "/openapi/v2" || path.starts_with("/openapi/v3")) {
        return None;
    }
    let v2_form = if path == "/openapi/v2" {
        match v2_form(req) {
            Some(f) => Some(f),
            None => {
                let accept = req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
                return Some(StatusError::not_acceptable(accept).into_response());
            }
        }
    } else {
        None
    };
    let rendered = cache.render(&chain.openapi_schemas());
    let (bytes, etag, content_type) = match (path, v2_form) {
        ("/openapi/v2", Some(V2Form::Protobuf)) => {
            if rendered.v2_protobuf.is_empty() {
                return Some(
                    StatusError::new(
                        503,
                        crate::status::Reason::ServiceUnavailable,
                        "the OpenAPI document could not be encoded",
                    )
                    .into_response(),
                );
            }
            (rendered.v2_protobuf.clone(), rendered.v2_protobuf_etag.clone(), v2proto::CONTENT_TYPE)
        }
        ("/openapi/v2", _) => (rendered.v2.clone(), rendered.v2_etag.clone(), "application/json"),
        ("/openapi/v3", _) => (rendered.v3_index.clone(), rendered.v3_index_etag.clone(), "application/json"),
        (p, _) => match rendered.v3_document(p.trim_start_matches("/openapi/v3/")) {
            Some((b, e)) => (b.clone(), e.clone(), "application/json"),
            None => return Some(StatusError::path_not_found().into_response()),
        },
    };
    // The rendered ETags are already quoted, as HTTP wants them.
    let not_modified = req
        .headers()
        .get(http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let versioned = req.uri().query().is_some_and(|q| q.contains("hash="));
    let mut builder =
        http::Response::builder().header(http::header::ETAG, etag).header(http::header::CONTENT_TYPE, content_type);
    if versioned {
        // Otherwise the filters' default (no-cache, private) applies.
        builder = builder.header(http::header::CACHE_CONTROL, "public, immutable");
    }
    if v2_form.is_some() {
        // One URL, two representations chosen by Accept (as upstream says).
        builder = builder.header(http::header::VARY, "Accept");
    }
    let resp = if not_modified {
        builder.status(304).body(body::empty())
    } else {
        builder.status(200).body(body::full(bytes))
    };
    Some(resp.unwrap_or_else(|_| http::Response::new(body::empty())))
}

/// The representations of /openapi/v2.
#[derive(Clone, Copy, PartialEq, Debug)]
enum V2Form {
    Json,
    Protobuf,
}

/// The form of /openapi/v2 the Accept header picks, as upstream's handler
/// picks it: media ranges by descending quality (then specificity), the first
/// that admits JSON or one of the two protobuf media types wins (JSON first
/// for wildcards). No header means JSON; `None` means nothing acceptable.
fn v2_form(req: &Request) -> Option<V2Form> {
    let Some(accept) = req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(V2Form::Json);
    };
    if accept.trim().is_empty() {
        return Some(V2Form::Json);
    }
    let mut ranges: Vec<(f32, u8, String)> = negotiation::parse_accept(accept)
        .into_iter()
        .map(|m| {
            let specificity = match (m.kind, m.subtype) {
                ("*", _) => 0,
                (_, "*") => 1,
                _ => 2,
            };
            (m.q as f32, specificity, format!("{}/{}", m.kind, m.subtype))
        })
        .filter(|(q, _, _)| *q > 0.0)
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
    ranges.iter().find_map(|(_, _, essence)| match essence.as_str() {
        "application/json" | "*/*" | "application/*" => Some(V2Form::Json),
        e if e == v2proto::CONTENT_TYPE || e == v2proto::CONTENT_TYPE_DEPRECATED => Some(V2Form::Protobuf),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(accept: Option<&str>) -> Option<V2Form> {
        let mut b = http::Request::builder().uri("/openapi/v2");
        if let Some(a) = accept {
            b = b.header(http::header::ACCEPT, a);
        }
        v2_form(&b.body(bytes::Bytes::new()).expect("request"))
    }

    #[test]
    fn v2_form_follows_accept() {
        assert_eq!(form(None), Some(V2Form::Json));
        assert_eq!(form(Some("*/*")), Some(V2Form::Json));
        assert_eq!(form(Some("application/com.github.proto-openapi.spec.v2@v1.0+protobuf")), Some(V2Form::Protobuf));
        assert_eq!(
            form(Some("application/json;q=0.5, application/com.github.proto-openapi.spec.v2.v1.0+protobuf")),
            Some(V2Form::Protobuf)
        );
        assert_eq!(form(Some("text/html")), None);
    }
}
