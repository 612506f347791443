//! The aggregator: the first server in the delegation chain. It owns the root
//! discovery documents (/api, /apis, in both the legacy and the aggregated
//! form) and the OpenAPI documents, assembled from what every server behind it
//! reports, and will proxy APIService-registered groups to their backends.
//! Everything it does not own goes to its delegate.

use generic_server::body;
use generic_server::discovery;
use generic_server::endpoints::respond;
use generic_server::handler::{DynHandler, Handler, Request, Response};
use generic_server::negotiation::{self, Output};
use generic_server::openapi::OpenApiCache;
use generic_server::status::StatusError;

pub struct Aggregator {
    delegate: DynHandler,
    openapi: OpenApiCache,
}

impl Aggregator {
    pub fn new(delegate: DynHandler) -> Self {
        Aggregator { delegate, openapi: OpenApiCache::new() }
    }

    /// /openapi/v2, /openapi/v3 and /openapi/v3/<group-version>, with ETags.
    fn openapi(&self, req: &Request) -> Option<Response> {
        let path = req.uri().path().trim_end_matches('/');
        if req.method() != http::Method::GET || !(path == "/openapi/v2" || path.starts_with("/openapi/v3")) {
            return None;
        }
        if path == "/openapi/v2" && !accepts_json(req) {
            // Only the JSON form is served; a client asking for the protobuf
            // form alone gets upstream's 406 and falls back.
            let accept = req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
            return Some(StatusError::not_acceptable(accept).into_response());
        }
        let rendered = self.openapi.render(&self.delegate.openapi_schemas());
        let (bytes, etag) = match path {
            "/openapi/v2" => (rendered.v2.clone(), rendered.v2_etag.clone()),
            "/openapi/v3" => (rendered.v3_index.clone(), rendered.v3_index_etag.clone()),
            p => match rendered.v3_document(p.trim_start_matches("/openapi/v3/")) {
                Some((b, e)) => (b.clone(), e.clone()),
                None => {
                    return Some(
                        StatusError::new(404, "NotFound", "the server could not find the requested resource")
                            .into_response(),
                    )
                }
            },
        };
        // The rendered ETags are already quoted, as HTTP wants them.
        let quoted = etag;
        let not_modified = req
            .headers()
            .get(http::header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == quoted));
        let versioned = req.uri().query().is_some_and(|q| q.contains("hash="));
        let builder = http::Response::builder()
            .header(http::header::ETAG, quoted)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CACHE_CONTROL, if versioned { "public, immutable" } else { "no-cache, private" });
        let resp = if not_modified {
            builder.status(304).body(body::empty())
        } else {
            builder.status(200).body(body::full(bytes))
        };
        Some(resp.unwrap_or_else(|_| http::Response::new(body::empty())))
    }

    fn root_discovery(&self, req: &Request) -> Option<Response> {
        let path = req.uri().path().trim_end_matches('/');
        if req.method() != http::Method::GET || !(path == "/api" || path == "/apis") {
            return None;
        }
        let accept = req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok());
        let output = match negotiation::negotiate(accept, false, true) {
            Some(o) => o,
            None => return Some(StatusError::not_acceptable(accept.unwrap_or("")).into_response()),
        };
        let groups = self.delegate.api_groups();
        let core = path == "/api";
        let value = match &output {
            Output::AggregatedDiscovery(v) => {
                let selected: Vec<_> = groups.into_iter().filter(|g| g.name.is_empty() == core).collect();
                discovery::aggregated(&selected, v)
            }
            _ if core => discovery::api_versions(),
            _ => discovery::group_list(&groups),
        };
        Some(respond(req, 200, &value, &[], &output))
    }
}

/// Whether the Accept header admits JSON (no header admits anything).
fn accepts_json(req: &Request) -> bool {
    match req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(a) => negotiation::parse_accept(a)
            .iter()
            .any(|m| matches!(m.essence.as_str(), "application/json" | "*/*" | "application/*")),
    }
}

#[async_trait::async_trait]
impl Handler for Aggregator {
    async fn handle(&self, req: Request) -> Response {
        if let Some(resp) = self.root_discovery(&req) {
            return resp;
        }
        if let Some(resp) = self.openapi(&req) {
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
