//! authorization.k8s.io/v1's review kinds (upstream
//! pkg/registry/authorization/*/rest.go, validated as
//! pkg/apis/authorization/validation): created, answered by the server's
//! authorizer (the one `--authorization-mode` built), never stored.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use generic_server::authn::UserInfo;
use generic_server::authz::{Attributes, Authorizer, Decision, Rules, Verdict};

use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview, SubjectAccessReview,
};

use generic_server::registry::{CreateCall, CreateOnly, Creater};
use generic_server::status::{Cause, StatusError};

use super::authentication::{answer, no_user};
use super::{arr_at, str_at};

pub fn create_only(authorizer: Arc<dyn Authorizer>) -> Vec<CreateOnly> {
    let access = |who| AccessReviewer(who, authorizer.clone());
    vec![
        CreateOnly::of::<SubjectAccessReview>(access(Review::Subject)),
        CreateOnly::of::<LocalSubjectAccessReview>(access(Review::Local)),
        CreateOnly::of::<SelfSubjectAccessReview>(access(Review::SelfSubject)),
        CreateOnly::of::<SelfSubjectRulesReview>(RulesReviewer(authorizer)),
    ]
}

/// A review's status from the authorizer's verdict (upstream's
/// SubjectAccessReviewStatus: denied, reason and evaluationError omitted
/// when empty).
fn status_of(v: Verdict) -> Value {
    let mut status = json!({"allowed": v.decision == Decision::Allow});
    if v.decision == Decision::Deny {
        status["denied"] = json!(true);
    }
    if !v.reason.is_empty() {
        status["reason"] = json!(v.reason);
    }
    if let Some(e) = v.error {
        status["evaluationError"] = json!(e);
    }
    status
}

/// The user a (Local)SubjectAccessReview asks about, from its spec.
fn spec_user(review: &Value) -> UserInfo {
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let extra: HashMap<String, Vec<String>> = review
        .pointer("/spec/extra")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(Some(v)))).collect())
        .unwrap_or_default();
    UserInfo {
        name: str_at(review, "/spec/user").to_string(),
        uid: str_at(review, "/spec/uid").to_string(),
        groups: strings(review.pointer("/spec/groups")),
        extra,
    }
}

/// Upstream's ResourceAttributesFrom / NonResourceAttributesFrom: what a
/// review's spec asks of `authorizer` for `user`.
fn decide(authorizer: &dyn Authorizer, user: &UserInfo, review: &Value) -> Verdict {
    if let Some(r) = present(review, "/spec/resourceAttributes") {
        let version = str_at(r, "/version");
        let attrs = Attributes {
            subresource: str_at(r, "/subresource"),
            api_version: if version.is_empty() { "*" } else { version },
            ..Attributes::resource(
                user,
                str_at(r, "/verb"),
                str_at(r, "/group"),
                str_at(r, "/resource"),
                str_at(r, "/namespace"),
                str_at(r, "/name"),
            )
        };
        return authorizer.authorize(&attrs);
    }
    let n = present(review, "/spec/nonResourceAttributes").cloned().unwrap_or(Value::Null);
    authorizer.authorize(&Attributes::non_resource(user, str_at(&n, "/verb"), str_at(&n, "/path")))
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

pub struct AccessReviewer(Review, Arc<dyn Authorizer>);

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
        let verdict = match who {
            Review::SelfSubject => decide(self.1.as_ref(), call.user.ok_or_else(no_user)?, review),
            _ => decide(self.1.as_ref(), &spec_user(review), review),
        };
        Ok(answer(call.object, status_of(verdict)))
    }
}

pub struct RulesReviewer(Arc<dyn Authorizer>);

/// A SubjectRulesReviewStatus: the rules, whether they are all, and any
/// evaluation error.
fn rules_status(rules: Rules) -> Value {
    let mut status = json!({
        "resourceRules": rules.resource,
        "nonResourceRules": rules.non_resource,
        "incomplete": rules.incomplete,
    });
    if let Some(e) = rules.error {
        status["evaluationError"] = json!(e);
    }
    status
}

#[async_trait::async_trait]
impl Creater for RulesReviewer {
    async fn create(&self, call: CreateCall<'_>) -> Result<Value, StatusError> {
        let user = call.user.ok_or_else(no_user)?;
        let namespace = str_at(&call.object, "/spec/namespace");
        if namespace.is_empty() {
            return Err(StatusError::bad_request("no namespace on request"));
        }
        let status = rules_status(self.0.rules_for(user, namespace));
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
    async fn answers_as_the_authorizer_does() {
        let user = generic_server::authn::UserInfo { name: "alice".into(), ..Default::default() };
        let call = CreateCall {
            namespace: "",
            object: json!({"kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": {"verb": "list", "resource": "pods"}}}),
            user: Some(&user),
            tokens: None,
            dry_run: false,
        };
        let allow: Arc<dyn Authorizer> = Arc::new(generic_server::authz::AlwaysAllow);
        let out = AccessReviewer(Review::SelfSubject, allow.clone()).create(call).await.unwrap();
        assert_eq!(out["status"], json!({"allowed": true}));
        assert_eq!(out["metadata"], json!({"creationTimestamp": null}));
        let call =
            CreateCall { namespace: "", object: json!({"spec": {}}), user: Some(&user), tokens: None, dry_run: false };
        assert_eq!(RulesReviewer(allow).create(call).await.unwrap_err().message, "no namespace on request");
        let deny: Arc<dyn Authorizer> = Arc::new(generic_server::authz::AlwaysDeny);
        let call = CreateCall {
            namespace: "",
            object: json!({"spec": {"user": "bob", "nonResourceAttributes": {"verb": "get", "path": "/x"}}}),
            user: Some(&user),
            tokens: None,
            dry_run: false,
        };
        let out = AccessReviewer(Review::Subject, deny.clone()).create(call).await.unwrap();
        assert_eq!(out["status"], json!({"allowed": false, "reason": "Everything is forbidden."}));
        let call = CreateCall {
            namespace: "",
            object: json!({"spec": {"namespace": "ns"}}),
            user: Some(&user),
            tokens: None,
            dry_run: false,
        };
        let out = RulesReviewer(deny).create(call).await.unwrap();
        assert_eq!(out["status"], json!({"resourceRules": [], "nonResourceRules": [], "incomplete": false}));
    }
}
