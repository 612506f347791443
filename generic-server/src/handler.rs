//! The one trait every server in the delegation chain implements.

use std::sync::Arc;

use bytes::Bytes;

use crate::body::Body;
use crate::discovery::ApiGroup;
use crate::request_info::RequestInfo;
use crate::status::StatusError;

/// A request whose body has been read in full (bounded by the body limit in the
/// filter chain). The filters put the caller's [`crate::authn::UserInfo`] and the
/// parsed [`RequestInfo`] into its extensions.
pub type Request = http::Request<Bytes>;
pub type Response = http::Response<Body>;

#[async_trait::async_trait]
pub trait Handler: Send + Sync {
    async fn handle(&self, req: Request) -> Response;

    /// The API groups served by this handler and by everything behind it, for the
    /// discovery documents the front of the chain serves. A server appends its own
    /// groups to its delegate's.
    fn api_groups(&self) -> Vec<ApiGroup> {
        Vec::new()
    }

    /// OpenAPI v3 component schemas of the types served here and behind, keyed by
    /// group-version ("" for core is "v1" -> "api/v1", else "apis/G/V").
    fn openapi_schemas(&self) -> Vec<crate::discovery::OpenApiPart> {
        Vec::new()
    }
}

/// The end of the chain: everything nobody claimed is a 404 Status.
pub struct NotFoundHandler;

#[async_trait::async_trait]
impl Handler for NotFoundHandler {
    async fn handle(&self, req: Request) -> Response {
        let err = match RequestInfo::of(&req) {
            Some(info) if info.is_resource_request => StatusError::no_route(),
            _ => StatusError::path_not_found(),
        };
        err.into_response()
    }
}

pub type DynHandler = Arc<dyn Handler>;
