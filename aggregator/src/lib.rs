//! The aggregator: the first server in the delegation chain. It owns the root
//! discovery documents (/api, /apis, in both the legacy and the aggregated
//! form) and the OpenAPI documents, assembled from what every server behind it
//! reports, and will proxy APIService-registered groups to their backends.
//! Everything it does not own goes to its delegate.

use generic_server::discovery;
use generic_server::endpoints::respond;
use generic_server::handler::{DynHandler, Handler, Request, Response};
use generic_server::negotiation::{self, Output};
use generic_server::status::StatusError;

pub struct Aggregator {
    delegate: DynHandler,
}

impl Aggregator {
    pub fn new(delegate: DynHandler) -> Self {
        Aggregator { delegate }
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

#[async_trait::async_trait]
impl Handler for Aggregator {
    async fn handle(&self, req: Request) -> Response {
        if let Some(resp) = self.root_discovery(&req) {
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
