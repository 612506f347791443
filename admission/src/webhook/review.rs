//! The AdmissionReview exchanged with a webhook (upstream's
//! webhook/request): the request built from the admission attributes in
//! admission.k8s.io/v1 or v1beta1, and the response checked as upstream's
//! VerifyAdmissionResponse does.

use base64::Engine;
use serde_json::{json, Map, Value};

use generic_server::registry::{AdmissionAttributes, Operation};
use generic_server::status::{Reason, StatusError};

use crate::matching::{gvk_gvr, View};

/// The `request` of an AdmissionReview (also the `request` variable of
/// matchConditions): `kind`, `resource` and the objects as `view` has them
/// (the version the webhook matched, the object as admission sees it now),
/// `requestKind` and `requestResource` the request's own.
pub(crate) fn request(a: &AdmissionAttributes<'_>, view: View<'_>, uid: &str) -> Value {
    let (kind, resource) = gvk_gvr(a, view.resource);
    let (request_kind, request_resource) = gvk_gvr(a, a.info);
    let user = a.user.map_or_else(|| json!({}), |u| u.to_json());
    let mut r = Map::new();
    r.insert("uid".into(), json!(uid));
    r.insert("kind".into(), kind);
    r.insert("resource".into(), resource);
    if !a.subresource.is_empty() {
        r.insert("subResource".into(), json!(a.subresource));
    }
    r.insert("requestKind".into(), request_kind);
    r.insert("requestResource".into(), request_resource);
    if !a.subresource.is_empty() {
        r.insert("requestSubResource".into(), json!(a.subresource));
    }
    if !a.name.is_empty() {
        r.insert("name".into(), json!(a.name));
    }
    if !a.namespace.is_empty() {
        r.insert("namespace".into(), json!(a.namespace));
    }
    r.insert("operation".into(), json!(a.operation.as_str()));
    r.insert("userInfo".into(), user);
    r.insert("object".into(), view.object.filter(|o| !o.is_null()).cloned().unwrap_or(Value::Null));
    r.insert("oldObject".into(), view.old.cloned().unwrap_or(Value::Null));
    r.insert("dryRun".into(), json!(a.dry_run));
    r.insert("options".into(), options(a));
    Value::Object(r)
}

/// The operation's options object, as far as admission knows them.
fn options(a: &AdmissionAttributes<'_>) -> Value {
    let kind = match a.operation {
        Operation::Create => "CreateOptions",
        Operation::Update => "UpdateOptions",
        Operation::Delete => "DeleteOptions",
        Operation::Connect => return Value::Null,
    };
    let mut o = json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"});
    if a.dry_run {
        o["dryRun"] = json!(["All"]);
    }
    o
}

/// The whole AdmissionReview in `version`.
pub(crate) fn review(version: &str, request: Value) -> Value {
    json!({"kind": "AdmissionReview", "apiVersion": format!("admission.k8s.io/{version}"), "request": request})
}

/// What a webhook answered, checked.
#[derive(Debug, Default)]
pub(crate) struct Response {
    pub allowed: bool,
    /// The patch (mutating webhooks only), undecoded, and its type.
    pub patch: Vec<u8>,
    pub patch_type: String,
    pub result: Option<Value>,
    pub warnings: Vec<String>,
    pub audit_annotations: Vec<(String, String)>,
}

/// Upstream's VerifyAdmissionResponse on the decoded body. Errors are the
/// text upstream puts after "received invalid webhook response: ".
pub(crate) fn verify(uid: &str, version: &str, mutating: bool, review: &Value) -> Result<Response, String> {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let Some(resp) = review.get("response").filter(|r| r.is_object()) else {
        return Err("webhook response was absent".into());
    };
    let patch_bytes = match resp.get("patch").and_then(Value::as_str) {
        Some(p) => base64::engine::general_purpose::STANDARD
            .decode(p)
            .map_err(|e| format!("illegal base64 data in response.patch: {e}"))?,
        None => Vec::new(),
    };
    let patch_type = resp.get("patchType").and_then(Value::as_str);
    if version == "v1" {
        if s(resp, "uid") != uid {
            return Err(format!("expected response.uid={uid:?}, got {:?}", s(resp, "uid")));
        }
        let api_version = s(review, "apiVersion");
        let (group, v) = api_version.split_once('/').unwrap_or(("", &api_version));
        if group != "admission.k8s.io" || v != "v1" || s(review, "kind") != "AdmissionReview" {
            return Err(format!(
                "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {group}/{v}, Kind={}",
                s(review, "kind")
            ));
        }
        if mutating {
            if !patch_bytes.is_empty() && patch_type.is_none() {
                return Err("webhook returned response.patch but not response.patchType".into());
            }
            if patch_bytes.is_empty() && patch_type.is_some() {
                return Err("webhook returned response.patchType but not response.patch".into());
            }
            if patch_type == Some("") {
                return Err("webhook returned invalid response.patchType of \"\"".into());
            }
        } else {
            if !patch_bytes.is_empty() {
                return Err("validating webhook may not return response.patch".into());
            }
            if patch_type.is_some() {
                return Err("validating webhook may not return response.patchType".into());
            }
        }
    }
    // v1beta1 checked no patchType: a patch there is a JSONPatch.
    let (patch, patch_type) = match (mutating, patch_type) {
        (false, _) => (Vec::new(), String::new()),
        (true, Some(t)) => (patch_bytes, t.to_string()),
        (true, None) if !patch_bytes.is_empty() => (patch_bytes, "JSONPatch".to_string()),
        (true, None) => (patch_bytes, String::new()),
    };
    let strings = |k: &str| -> Vec<String> {
        resp.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
            .unwrap_or_default()
    };
    let audit_annotations = resp
        .get("auditAnnotations")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default();
    Ok(Response {
        allowed: resp.get("allowed").and_then(Value::as_bool).unwrap_or(false),
        patch,
        patch_type,
        result: resp.get("status").filter(|v| v.is_object()).cloned(),
        warnings: strings("warnings"),
        audit_annotations,
    })
}

/// A refusal in upstream's words (webhook/errors ToStatusErr): the webhook's
/// Status with its message prefixed by `admission webhook "NAME" denied the
/// request`, its code at least 400.
pub(crate) fn denied(hook: &str, result: Option<&Value>) -> StatusError {
    let empty = json!({});
    let result = result.unwrap_or(&empty);
    let text = |k: &str| result.get(k).and_then(Value::as_str).unwrap_or_default();
    let by = format!("admission webhook {hook:?} denied the request");
    let message = match (text("message"), text("reason")) {
        ("", "") => format!("{by} without explanation"),
        ("", reason) => format!("{by}: {reason}"),
        (message, _) => format!("{by}: {message}"),
    };
    let code = result.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok()).unwrap_or(0).max(400);
    // A reason upstream does not define becomes none (StatusReasonUnknown).
    let mut err = StatusError::new(code, Reason::named(text("reason")), message);
    if let Some(d) = result.get("details").filter(|d| d.is_object()) {
        err.details = Some(Box::new(d.clone()));
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_responses_are_checked_as_upstream() {
        let ok = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": "u", "allowed": true, "warnings": ["w"], "auditAnnotations": {"k": "v"}}});
        let r = verify("u", "v1", false, &ok).expect("a valid response");
        assert!(r.allowed);
        assert_eq!(r.warnings, ["w"]);
        assert_eq!(r.audit_annotations, [("k".to_string(), "v".to_string())]);
        assert_eq!(verify("x", "v1", false, &ok).unwrap_err(), "expected response.uid=\"x\", got \"u\"");
        assert_eq!(verify("u", "v1", false, &json!({})).unwrap_err(), "webhook response was absent");
        let v1beta1 = json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
            "response": {"uid": "u", "allowed": true}});
        assert_eq!(
            verify("u", "v1", false, &v1beta1).unwrap_err(),
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got admission.k8s.io/v1beta1, Kind=AdmissionReview"
        );
        assert!(verify("other", "v1beta1", false, &v1beta1).is_ok(), "v1beta1 checks no uid");
        let patch = base64::engine::general_purpose::STANDARD.encode(r#"[{"op":"add","path":"/x","value":1}]"#);
        let patched = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": "u", "allowed": true, "patch": patch}});
        assert_eq!(
            verify("u", "v1", true, &patched).unwrap_err(),
            "webhook returned response.patch but not response.patchType"
        );
        assert_eq!(verify("u", "v1", false, &patched).unwrap_err(), "validating webhook may not return response.patch");
        let mut typed = patched.clone();
        typed["response"]["patchType"] = json!("JSONPatch");
        let r = verify("u", "v1", true, &typed).expect("valid");
        assert_eq!((r.patch_type.as_str(), r.patch.len()), ("JSONPatch", 36));
    }

    #[test]
    fn refusals_are_worded_as_upstream() {
        let e = denied("deny.example.com", Some(&json!({"code": 403, "message": "no pods named bad"})));
        assert_eq!(
            (e.code, e.message.as_str()),
            (403, "admission webhook \"deny.example.com\" denied the request: no pods named bad")
        );
        let e = denied("d.io", None);
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "admission webhook \"d.io\" denied the request without explanation")
        );
        let e = denied("d.io", Some(&json!({"reason": "Forbidden", "code": 200})));
        assert_eq!(
            (e.code, e.reason, e.message.as_str()),
            (400, Reason::Forbidden, "admission webhook \"d.io\" denied the request: Forbidden")
        );
    }
}
