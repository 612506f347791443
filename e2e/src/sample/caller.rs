//! Records who created each object, in annotations of the stored object, so
//! a test behind the aggregator can see what arrived through its proxy: the
//! user, the groups (comma-joined) and whether an Authorization header came
//! along. A mutating step in front of the resource server, as upstream's
//! wardle has admission plugins in front of its storage.

use serde_json::{json, Value};

use generic_server::authn::UserInfo;
use generic_server::endpoints::decode_body;
use generic_server::handler::{DynHandler, Handler, Request, Response};
use generic_server::RequestInfo;

pub const USER: &str = "wardle.example.com/user";
pub const GROUPS: &str = "wardle.example.com/groups";
pub const AUTHORIZATION: &str = "wardle.example.com/authorization";

pub struct RecordCaller {
    delegate: DynHandler,
}

impl RecordCaller {
    pub fn new(delegate: DynHandler) -> Self {
        RecordCaller { delegate }
    }
}

/// The create body with the caller's annotations, as JSON; None leaves the
/// request alone (the resource server then reports what is wrong with it).
fn annotated(req: &Request) -> Option<Vec<u8>> {
    let mut obj = decode_body(req).ok()?;
    let user = req.extensions().get::<std::sync::Arc<UserInfo>>()?;
    let authorization = if req.headers().contains_key(http::header::AUTHORIZATION) { "present" } else { "absent" };
    let meta = obj.as_object_mut()?.entry("metadata").or_insert_with(|| json!({}));
    let annotations = meta.as_object_mut()?.entry("annotations").or_insert_with(|| json!({}));
    if annotations.is_null() {
        *annotations = json!({});
    }
    let a = annotations.as_object_mut()?;
    a.insert(USER.into(), Value::String(user.name.clone()));
    a.insert(GROUPS.into(), Value::String(user.groups.join(",")));
    a.insert(AUTHORIZATION.into(), Value::String(authorization.into()));
    serde_json::to_vec(&obj).ok()
}

#[async_trait::async_trait]
impl Handler for RecordCaller {
    async fn handle(&self, req: Request) -> Response {
        let is_create = RequestInfo::of(&req).is_some_and(|i| i.is_resource_request && i.verb == "create");
        if !is_create {
            return self.delegate.handle(req).await;
        }
        let Some(body) = annotated(&req) else {
            return self.delegate.handle(req).await;
        };
        let (mut parts, _) = req.into_parts();
        parts.headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        parts.headers.remove(http::header::CONTENT_LENGTH);
        self.delegate.handle(http::Request::from_parts(parts, body.into())).await
    }

    fn api_groups(&self) -> Vec<generic_server::discovery::ApiGroup> {
        self.delegate.api_groups()
    }

    fn openapi_schemas(&self) -> Vec<generic_server::discovery::OpenApiPart> {
        self.delegate.openapi_schemas()
    }
}
