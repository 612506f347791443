//! authorization.k8s.io/v1's review kinds (upstream
//! pkg/registry/authorization/*/rest.go, validated as
//! pkg/apis/authorization/validation): created, answered, never stored.
//!
//! This server has no authorizer yet: every authenticated request is
//! allowed, so the reviews answer as upstream's AlwaysAllow authorizer does,
//! allowed with no reason, and every rule granted.

use serde_json::{json, Value};

use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview, SubjectAccessReview,
};

use generic_server::registry::{CreateCall, CreateOnly, Creater};
use generic_server::status::{Cause, StatusError};

use super::authentication::{answer, no_user};
use super::{arr_at, str_at};

pub fn create_only() -> Vec<CreateOnly> {
    vec![
        CreateOnly::of::<SubjectAccessReview>(AccessReviewer(Review::Subject)),
        CreateOnly::of::<LocalSubjectAccessReview>(AccessReviewer(Review::Local)),
        CreateOnly::of::<SelfSubjectAccessReview>(AccessReviewer(Review::SelfSubject)),
        CreateOnly::of::<SelfSubjectRulesReview>(RulesReviewer),
    ]
}

/// AlwaysAllow's decision: allowed, no reason.
fn always_allow() -> Value {
    json!({"allowed": true})
}

#[derive(Clone, Copy, PartialEq)]
enum Review {
    Subject,
    Local,
    SelfSubject,
}

impl Review {
    fn kind(self) -> &'static str {
        match self {
            Review::Subject => "SubjectAccessReview",
            Review::Local => "LocalSubjectAccessReview",
            Review::SelfSubject => "SelfSubjectAccessReview",
        }
    }
}

fn present<'a>(obj: &'a Value, pointer: &str) -> Option<&'a Value> {
    obj.pointer(pointer).filter(|v| !v.is_null())
}

/// ValidateSubjectAccessReviewSpec and ValidateSelfSubjectAccessReviewSpec.
fn validate_spec(review: &Value, who: Review, causes: &mut Vec<Cause>) {
    let resource = present(review, "/spec/resourceAttributes");
    let non_resource = present(review, "/spec/nonResourceAttributes");
    if let (Some(_), Some(n)) = (resource, non_resource) {
        causes.push(Cause::invalid(
            "spec.nonResourceAttributes",
            n,
            "cannot be specified in combination with resourceAttributes",
        ));
    }
    if resource.is_none() && non_resource.is_none() {
        causes.push(Cause::invalid(
            "spec.resourceAttributes",
            &json!("null"),
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    if who != Review::SelfSubject
        && str_at(review, "/spec/user").is_empty()
        && arr_at(review, "/spec/groups").is_empty()
    {
        causes.push(Cause::invalid("spec.user", &json!(""), "at least one of user or group must be specified"));
    }
}

/// The metadata a review may carry: nothing (a local review: its namespace).
fn validate_meta(review: &Value, who: Review, causes: &mut Vec<Cause>) {
    let mut meta = review.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    meta.remove("managedFields");
    meta.retain(|_, v| !v.is_null());
    if who == Review::Local {
        meta.remove("namespace");
    }
    if !meta.is_empty() {
        let detail = if who == Review::Local { "must be empty except for namespace" } else { "must be empty" };
        causes.push(Cause::invalid("metadata", &review["metadata"], detail));
    }
}

pub struct AccessReviewer(Review);

#[async_trait::async_trait]
impl Creater for AccessReviewer {
    async fn create(&self, call: CreateCall<'_>) -> Result<Value, StatusError> {
        let who = self.0;
        let review = &call.object;
        let mut causes = Vec::new();
        validate_spec(review, who, &mut causes);
        validate_meta(review, who, &mut causes);
        if who == Review::Local {
            let ns = generic_server::meta::namespace(review);
            if let Some(attrs) = present(review, "/spec/resourceAttributes") {
                let asked = str_at(attrs, "/namespace");
                if asked != ns {
                    causes.push(Cause::invalid(
                        "spec.resourceAttributes.namespace",
                        &json!(asked),
                        "must match metadata.namespace",
                    ));
                }
            }
            if let Some(n) = present(review, "/spec/nonResourceAttributes") {
                causes.push(Cause::invalid("spec.nonResourceAttributes", n, "disallowed on this kind of request"));
            }
        }
        if !causes.is_empty() {
            return Err(StatusError::invalid("authorization.k8s.io", who.kind(), "", causes));
        }
        if who == Review::Local && call.namespace != generic_server::meta::namespace(review) {
            return Err(StatusError::bad_request(format!(
                "spec.resourceAttributes.namespace must match namespace: {}",
                call.namespace
            )));
        }
        if who == Review::SelfSubject && call.user.is_none() {
            return Err(no_user());
        }
        Ok(answer(call.object, always_allow()))
    }
}

pub struct RulesReviewer;

#[async_trait::async_trait]
impl Creater for RulesReviewer {
    async fn create(&self, call: CreateCall<'_>) -> Result<Value, StatusError> {
        call.user.ok_or_else(no_user)?;
        if str_at(&call.object, "/spec/namespace").is_empty() {
            return Err(StatusError::bad_request("no namespace on request"));
        }
        // AlwaysAllow's RulesFor: everything, complete.
        let status = json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        });
        let review = json!({"kind": "SelfSubjectRulesReview", "apiVersion": "authorization.k8s.io/v1", "spec": {}});
        Ok(answer(review, status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(review: Value, who: Review) -> Vec<String> {
        let mut causes = Vec::new();
        validate_spec(&review, who, &mut causes);
        validate_meta(&review, who, &mut causes);
        causes.iter().map(Cause::full_message).collect()
    }

    #[test]
    fn validation_as_upstream() {
        assert_eq!(
            msgs(json!({"metadata": {}, "spec": {}}), Review::Subject),
            [
                "spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
                "spec.user: Invalid value: \"\": at least one of user or group must be specified",
            ]
        );
        assert!(msgs(json!({"spec": {"resourceAttributes": {"verb": "get"}}}), Review::SelfSubject).is_empty());
        let named = msgs(
            json!({"metadata": {"name": "x"}, "spec": {"nonResourceAttributes": {"path": "/"}}}),
            Review::SelfSubject,
        );
        assert_eq!(named.len(), 1);
        assert!(named[0].starts_with("metadata: Invalid value:") && named[0].ends_with("must be empty"), "{named:?}");
        assert!(msgs(
            json!({"metadata": {"namespace": "a"}, "spec": {"user": "u", "resourceAttributes": {}}}),
            Review::Local
        )
        .is_empty());
    }

    #[tokio::test]
    async fn answers_as_always_allow() {
        let user = generic_server::authn::UserInfo { name: "alice".into(), ..Default::default() };
        let call = CreateCall {
            namespace: "",
            object: json!({"kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": {"verb": "list", "resource": "pods"}}}),
            user: Some(&user),
            tokens: None,
            dry_run: false,
        };
        let out = AccessReviewer(Review::SelfSubject).create(call).await.unwrap();
        assert_eq!(out["status"], json!({"allowed": true}));
        assert_eq!(out["metadata"], json!({"creationTimestamp": null}));
        let call =
            CreateCall { namespace: "", object: json!({"spec": {}}), user: Some(&user), tokens: None, dry_run: false };
        assert_eq!(RulesReviewer.create(call).await.unwrap_err().message, "no namespace on request");
    }
}
