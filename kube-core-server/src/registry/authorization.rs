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
use super::label_selector::{validate_label_requirement, validate_operator_values, UnknownOperator};
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
/// when empty); selectors the review named but that could not be read
/// are said so in evaluationError, after the authorizer's own error.
fn status_of(v: Verdict, selectors: &Selectors) -> Value {
    let mut status = json!({"allowed": v.decision == Decision::Allow});
    if v.decision == Decision::Deny {
        status["denied"] = json!(true);
    }
    if !v.reason.is_empty() {
        status["reason"] = json!(v.reason);
    }
    let ignored = [("fieldSelector", selectors.field_ignored), ("labelSelector", selectors.label_ignored)];
    let errors: Vec<String> = v
        .error
        .into_iter()
        .chain(ignored.into_iter().filter_map(|(which, ignored)| {
            let how = match ignored? {
                Ignored::Partly => "partially ignored",
                Ignored::Wholly => "ignored",
            };
            Some(format!("spec.resourceAttributes.{which} {how} due to parse error"))
        }))
        .collect();
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join("; "));
    }
    status
}

/// How much of a selector could not be read.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ignored {
    /// Some requirements were, the rest still narrow the question.
    Partly,
    Wholly,
}

/// A review's resourceAttributes selectors as upstream's
/// ResourceAttributesFrom reads them (AuthorizeWithSelectors, on in 1.33):
/// the field selector the authorizer is given, in a query's form, and what
/// could not be read of either.
#[derive(Debug, Default, PartialEq)]
struct Selectors {
    field: String,
    field_ignored: Option<Ignored>,
    label_ignored: Option<Ignored>,
}

impl Selectors {
    fn of(attrs: &Value) -> Selectors {
        let mut out = Selectors::default();
        if let Some(f) = present(attrs, "/fieldSelector") {
            let raw = str_at(f, "/rawSelector");
            if !raw.is_empty() {
                match generic_server::selectors::FieldSelector::parse(raw) {
                    Ok(_) => out.field = raw.to_string(),
                    Err(_) => out.field_ignored = Some(Ignored::Wholly),
                }
            }
            let reqs = arr_at(f, "/requirements");
            if !reqs.is_empty() {
                // Only single-valued In and NotIn say anything a field
                // selector can; the rest is dropped, which only widens the
                // question asked.
                let read: Vec<Option<String>> = reqs
                    .iter()
                    .map(|r| {
                        let values = arr_at(r, "/values");
                        let [value] = values else { return None };
                        let op = match str_at(r, "/operator") {
                            "In" => "=",
                            "NotIn" => "!=",
                            _ => return None,
                        };
                        Some(format!("{}{op}{}", str_at(r, "/key"), value.as_str().unwrap_or_default()))
                    })
                    .collect();
                let kept: Vec<String> = read.iter().flatten().cloned().collect();
                out.field_ignored = ignored(kept.len(), read.len());
                out.field = kept.join(",");
            }
        }
        if let Some(l) = present(attrs, "/labelSelector") {
            let raw = str_at(l, "/rawSelector");
            if !raw.is_empty() && generic_server::selectors::LabelSelector::parse(raw).is_err() {
                out.label_ignored = Some(Ignored::Wholly);
            }
            let reqs = arr_at(l, "/requirements");
            if !reqs.is_empty() {
                let readable = reqs.iter().filter(|r| label_requirement_readable(r)).count();
                out.label_ignored = ignored(readable, reqs.len());
            }
        }
        out
    }
}

/// Whether `read` of `all` requirements is all, some or none of them.
fn ignored(read: usize, all: usize) -> Option<Ignored> {
    match read {
        _ if read == all => None,
        0 => Some(Ignored::Wholly),
        _ => Some(Ignored::Partly),
    }
}

/// Upstream's labels.NewRequirement on a review's requirement: a known
/// operator with the values it takes, a qualified key, label values.
fn label_requirement_readable(r: &Value) -> bool {
    let values = arr_at(r, "/values");
    let counted = match str_at(r, "/operator") {
        "In" | "NotIn" => !values.is_empty(),
        "Exists" | "DoesNotExist" => values.is_empty(),
        _ => false,
    };
    counted
        && generic_server::meta::qualified_name_problem(str_at(r, "/key")).is_none()
        && values.iter().all(|v| v.as_str().is_some_and(|v| generic_server::meta::label_value_problem(v).is_none()))
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
fn decide(authorizer: &dyn Authorizer, user: &UserInfo, review: &Value) -> Value {
    if let Some(r) = present(review, "/spec/resourceAttributes") {
        let version = str_at(r, "/version");
        let selectors = Selectors::of(r);
        let attrs = Attributes {
            subresource: str_at(r, "/subresource"),
            api_version: if version.is_empty() { "*" } else { version },
            field_selector: &selectors.field,
            ..Attributes::resource(
                user,
                str_at(r, "/verb"),
                str_at(r, "/group"),
                str_at(r, "/resource"),
                str_at(r, "/namespace"),
                str_at(r, "/name"),
            )
        };
        return status_of(authorizer.authorize(&attrs), &selectors);
    }
    let n = present(review, "/spec/nonResourceAttributes").cloned().unwrap_or(Value::Null);
    let verdict = authorizer.authorize(&Attributes::non_resource(user, str_at(&n, "/verb"), str_at(&n, "/path")));
    status_of(verdict, &Selectors::default())
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
    if let Some(r) = resource {
        validate_selector_attributes(r, causes);
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

/// validateFieldSelectorAttributes and validateLabelSelectorAttributes:
/// a raw selector or requirements, not both; each requirement as metav1's
/// validation has it, operators this server does not know allowed (a newer
/// client's).
fn validate_selector_attributes(attrs: &Value, causes: &mut Vec<Cause>) {
    for (which, label) in [("fieldSelector", false), ("labelSelector", true)] {
        let Some(sel) = present(attrs, &format!("/{which}")) else { continue };
        let path = format!("spec.resourceAttributes.{which}");
        let (raw, reqs) = (str_at(sel, "/rawSelector"), arr_at(sel, "/requirements"));
        if !raw.is_empty() && !reqs.is_empty() {
            causes.push(Cause::invalid(
                format!("{path}.rawSelector"),
                &json!(raw),
                "may not specified at the same time as requirements",
            ));
        }
        if raw.is_empty() && reqs.is_empty() {
            causes.push(Cause::required(
                format!("{path}.requirements"),
                &format!("when {path} is specified, requirements or rawSelector is required"),
            ));
        }
        for (i, r) in reqs.iter().enumerate() {
            let at = format!("{path}.requirements[{i}]");
            if label {
                validate_label_requirement(r, &at, UnknownOperator::Allowed, causes);
                continue;
            }
            // ValidateFieldSelectorRequirement: the key, then the operator.
            if str_at(r, "/key").is_empty() {
                causes.push(Cause::required(format!("{at}.key"), "must be specified"));
            }
            validate_operator_values(r, &at, causes);
        }
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
        Ok(answer(call.object, verdict))
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
    fn selector_attributes_are_validated_and_read_as_upstream() {
        let review = |attrs: Value| json!({"spec": {"user": "me", "resourceAttributes": attrs}});
        let first = |attrs: Value| msgs(review(attrs), Review::Subject).into_iter().next().unwrap_or_default();
        assert_eq!(
            first(json!({"fieldSelector": {}})),
            "spec.resourceAttributes.fieldSelector.requirements: Required value: when spec.resourceAttributes.fieldSelector is specified, requirements or rawSelector is required"
        );
        assert_eq!(
            first(json!({"fieldSelector": {"requirements": [{"key": ""}]}})),
            "spec.resourceAttributes.fieldSelector.requirements[0].key: Required value: must be specified"
        );
        assert_eq!(
            msgs(review(json!({"fieldSelector": {"requirements": [{"operator": "In"}]}})), Review::Subject),
            [
                "spec.resourceAttributes.fieldSelector.requirements[0].key: Required value: must be specified",
                "spec.resourceAttributes.fieldSelector.requirements[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
            ],
            "the key first, as upstream"
        );
        assert_eq!(
            first(json!({"labelSelector": {"rawSelector": "foo", "requirements": [{}]}})),
            "spec.resourceAttributes.labelSelector.rawSelector: Invalid value: \"foo\": may not specified at the same time as requirements"
        );
        assert_eq!(
            first(json!({"labelSelector": {"requirements": [{"key": ""}]}})),
            "spec.resourceAttributes.labelSelector.requirements[0].key: Invalid value: \"\": name part must be non-empty"
        );
        assert_eq!(
            first(json!({"labelSelector": {"requirements": [{"key": "k", "operator": "In", "values": []}]}})),
            "spec.resourceAttributes.labelSelector.requirements[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
        );
        assert_eq!(
            first(json!({"fieldSelector": {"requirements": [{"key": "k", "operator": "Exists", "values": ["v"]}]}})),
            "spec.resourceAttributes.fieldSelector.requirements[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
        );
        // Operators a newer client knows pass validation, and are dropped.
        let unknown = json!({"labelSelector": {"requirements": [{"key": "k", "operator": "Gt", "values": ["1"]}]}});
        assert!(msgs(review(unknown.clone()), Review::Subject).is_empty());
        assert_eq!(Selectors::of(&unknown).label_ignored, Some(Ignored::Wholly));
        let fields = json!({"fieldSelector": {"requirements": [
            {"key": "spec.nodeName", "operator": "In", "values": ["n1"]},
            {"key": "metadata.name", "operator": "NotIn", "values": ["x"]},
            {"key": "a", "operator": "In", "values": ["1", "2"]}]}});
        let read = Selectors::of(&fields);
        assert_eq!(
            (read.field.as_str(), read.field_ignored),
            ("spec.nodeName=n1,metadata.name!=x", Some(Ignored::Partly))
        );
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
