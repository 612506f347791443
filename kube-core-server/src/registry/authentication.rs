//! authentication.k8s.io/v1's review kinds (upstream
//! pkg/registry/authentication/tokenreview and selfsubjectreview): created,
//! answered, never stored. A TokenReview checks its token with the server's
//! own token authenticators; a SelfSubjectReview tells callers who the server
//! takes them for (`kubectl auth whoami`).

use serde_json::{json, Value};

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenReview};

use generic_server::registry::{CreateCall, CreateOnly, Creater};
use generic_server::status::StatusError;

use super::str_at;

pub fn create_only() -> Vec<CreateOnly> {
    vec![CreateOnly::of::<TokenReview>(TokenReviewer), CreateOnly::of::<SelfSubjectReview>(SelfSubjectReviewer)]
}

/// The answer to a review: the posted object with `status`, and the
/// creationTimestamp upstream's zero ObjectMeta prints.
pub(crate) fn answer(mut review: Value, status: Value) -> Value {
    if let Some(m) = review.as_object_mut() {
        let meta = m.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.entry("creationTimestamp").or_insert(Value::Null);
        }
        m.insert("status".into(), status);
    }
    review
}

pub(crate) fn no_user() -> StatusError {
    StatusError::bad_request("no user present on request")
}

pub struct TokenReviewer;

#[async_trait::async_trait]
impl Creater for TokenReviewer {
    async fn create(&self, call: CreateCall<'_>) -> Result<Value, StatusError> {
        let token = str_at(&call.object, "/spec/token");
        if token.is_empty() {
            return Err(StatusError::bad_request("token is required for TokenReview in authentication"));
        }
        let audiences: Vec<String> = super::arr_at(&call.object, "/spec/audiences")
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let outcome = match call.tokens {
            Some(t) => t.authenticate(token, &audiences).await,
            None => Err(generic_server::authn::INVALID_BEARER_TOKEN.to_string()),
        };
        // Upstream's status: the user and the audiences it is good for, or
        // the authenticators' error.
        let status = match outcome {
            Ok(a) => json!({"authenticated": true, "user": a.user.to_json(), "audiences": a.audiences}),
            Err(e) => json!({"user": {}, "error": e}),
        };
        Ok(answer(call.object, status))
    }
}

pub struct SelfSubjectReviewer;

#[async_trait::async_trait]
impl Creater for SelfSubjectReviewer {
    async fn create(&self, call: CreateCall<'_>) -> Result<Value, StatusError> {
        let user = call.user.ok_or_else(no_user)?;
        Ok(json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": generic_server::meta::now_rfc3339()},
            "status": {"userInfo": user.to_json()},
        }))
    }
}
