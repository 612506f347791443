//! Upstream's RBAC post-start hook (pkg/registry/rbac/rest's
//! PolicyData.EnsureRBACPolicy over pkg/registry/rbac/reconciliation), run at
//! every start: a missing default object is created; an existing one gets the
//! default labels and annotations it lacks, the rules (broken down as
//! [`uncovered`] finds them) or aggregation selectors a role lacks, and the
//! subjects a binding lacks, never losing what was added to it; a binding
//! whose roleRef differs is recreated. An object annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "false"` is left alone.

use serde_json::{json, Value};

use generic_server::meta;
use generic_server::registry::store::DeleteOptions;
use generic_server::registry::{Store, WriteOptions};
use generic_server::status::StatusError;

use super::policy::Policy;
use super::rules::{rules_of, uncovered};

pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// Upstream's ReconcileOperation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    None,
    Create,
    Update,
    Recreate,
}

/// What reconciling one object decided.
#[derive(Debug)]
pub struct Reconciled {
    pub object: Value,
    pub operation: Operation,
    /// The stored object says autoupdate "false": it is not written.
    pub protected: bool,
}

fn is_protected(existing: &Value) -> bool {
    existing.pointer(&format!("/metadata/annotations/{}", AUTOUPDATE_ANNOTATION.replace('/', "~1")))
        == Some(&json!("false"))
}

/// Adds the expected labels and annotations the existing object lacks
/// (existing values win); true when anything was added.
fn merge_metadata(result: &mut Value, expected: &Value) -> bool {
    let mut changed = false;
    for key in ["annotations", "labels"] {
        let wanted = expected.pointer(&format!("/metadata/{key}")).and_then(Value::as_object);
        let Some(wanted) = wanted.filter(|w| !w.is_empty()) else { continue };
        let mut have =
            result.pointer(&format!("/metadata/{key}")).and_then(Value::as_object).cloned().unwrap_or_default();
        for (k, v) in wanted {
            if !have.contains_key(k) {
                have.insert(k.clone(), v.clone());
                changed = true;
            }
        }
        meta::set_meta(result, key, Value::Object(have));
    }
    changed
}

fn selectors(role: &Value) -> Option<&Vec<Value>> {
    let rule = role.get("aggregationRule").filter(|r| !r.is_null())?;
    static NONE: Vec<Value> = Vec::new();
    Some(rule.get("clusterRoleSelectors").and_then(Value::as_array).unwrap_or(&NONE))
}

/// Upstream's computeReconciledRole in its union form (extra permissions
/// are kept).
pub fn reconcile_role(existing: Option<&Value>, expected: &Value) -> Reconciled {
    let Some(existing) = existing else {
        return Reconciled { object: expected.clone(), operation: Operation::Create, protected: false };
    };
    let mut result = existing.clone();
    let mut changed = merge_metadata(&mut result, expected);
    let missing = uncovered(&rules_of(existing), &rules_of(expected));
    if !missing.is_empty() {
        let mut rules = existing.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
        rules.extend(missing.iter().map(|r| r.to_json()));
        result["rules"] = Value::Array(rules);
        changed = true;
    }
    match (selectors(expected), selectors(existing)) {
        (None, Some(_)) => {
            // Not an aggregated role by default: the aggregation goes.
            if let Some(m) = result.as_object_mut() {
                m.remove("aggregationRule");
            }
            changed = true;
        }
        (Some(wanted), have) => {
            let have = have.cloned().unwrap_or_default();
            let missing: Vec<Value> = wanted.iter().filter(|s| !have.contains(s)).cloned().collect();
            if !missing.is_empty() {
                let mut all = have;
                all.extend(missing);
                result["aggregationRule"] = json!({"clusterRoleSelectors": all});
                changed = true;
            }
        }
        (None, None) => {}
    }
    let operation = if changed { Operation::Update } else { Operation::None };
    Reconciled { object: result, operation, protected: is_protected(existing) }
}

/// A subject with every field present, so absent and empty compare equal
/// as Go's structs do.
fn subject_key(s: &Value) -> [&str; 4] {
    ["kind", "apiGroup", "name", "namespace"].map(|k| s.get(k).and_then(Value::as_str).unwrap_or(""))
}

/// Upstream's computeReconciledRoleBinding in its union form (extra subjects
/// are kept).
pub fn reconcile_binding(existing: Option<&Value>, expected: &Value) -> Reconciled {
    let Some(existing) = existing else {
        return Reconciled { object: expected.clone(), operation: Operation::Create, protected: false };
    };
    let protected = is_protected(existing);
    let role_ref = |b: &Value| ["apiGroup", "kind", "name"].map(|k| b.pointer(&format!("/roleRef/{k}")).cloned());
    if role_ref(existing) != role_ref(expected) {
        return Reconciled { object: expected.clone(), operation: Operation::Recreate, protected };
    }
    let mut result = existing.clone();
    let mut changed = merge_metadata(&mut result, expected);
    let have = existing.get("subjects").and_then(Value::as_array).cloned().unwrap_or_default();
    let have_keys: Vec<[&str; 4]> = have.iter().map(subject_key).collect();
    let missing: Vec<Value> = expected
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|s| !have_keys.contains(&subject_key(s)))
        .cloned()
        .collect();
    if !missing.is_empty() {
        let mut all = have.clone();
        all.extend(missing);
        result["subjects"] = Value::Array(all);
        changed = true;
    }
    let operation = if changed { Operation::Update } else { Operation::None };
    Reconciled { object: result, operation, protected }
}

/// The Stores the policy lives in.
pub struct RbacStores<'a> {
    pub cluster_roles: &'a Store,
    pub cluster_role_bindings: &'a Store,
    pub roles: &'a Store,
    pub role_bindings: &'a Store,
}

/// How often one object is tried when other writers keep changing it.
const ATTEMPTS: usize = 5;

/// Writes are recorded as the API server's own, as upstream's loopback client's.
fn write_options() -> WriteOptions {
    WriteOptions { field_manager: Some("kube-apiserver".into()), ..WriteOptions::default() }
}

type Reconcile = fn(Option<&Value>, &Value) -> Reconciled;

/// Reconciles one object against its stored state, again on a conflict.
async fn ensure_one(store: &Store, expected: &Value, reconcile: Reconcile) -> Result<(), StatusError> {
    let (namespace, name) = (meta::namespace(expected), meta::name(expected));
    let what = format!("{}.{}/{name}", store.info.kind.to_lowercase(), store.info.group);
    for _ in 0..ATTEMPTS {
        let existing = match store.get(namespace, name).await {
            Ok(obj) => Some(obj),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let r = reconcile(existing.as_ref(), expected);
        if r.operation == Operation::None {
            return Ok(());
        }
        if r.protected {
            tracing::warn!(object = %what, namespace, "skipped reconcile-protected object that differs from the default policy");
            return Ok(());
        }
        let written = match r.operation {
            Operation::Create => store.create(namespace, r.object, &write_options()).await.map(|_| ()),
            Operation::Update => store.update(namespace, name, r.object, None, &write_options()).await.map(|_| ()),
            Operation::Recreate => {
                let uid = existing.as_ref().map(|e| meta::uid(e).to_string());
                let opts = DeleteOptions { precondition_uid: uid, ..DeleteOptions::default() };
                match store.delete(namespace, name, &opts).await {
                    Ok(_) => store.create(namespace, r.object, &write_options()).await.map(|_| ()),
                    Err(e) => Err(e),
                }
            }
            Operation::None => Ok(()),
        };
        match written {
            Ok(()) => {
                tracing::info!(object = %what, namespace, operation = ?r.operation, "reconciled bootstrap RBAC object");
                return Ok(());
            }
            // Someone else wrote it meanwhile: compare again.
            Err(e) if e.code == 409 || e.is_not_found() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StatusError::conflict(
        &store.info.group,
        &store.info.plural,
        name,
        "too many conflicts while reconciling the default RBAC policy",
    ))
}

/// Reconciles every default object: roles before the bindings naming them.
/// The objects of one kind go at once, so the store commits them together
/// (one after another, they would cost the first start a commit each).
pub async fn ensure(policy: &Policy, stores: &RbacStores<'_>) -> Result<(), StatusError> {
    use futures::future::try_join_all;
    try_join_all(policy.cluster_roles.iter().map(|r| ensure_one(stores.cluster_roles, r, reconcile_role))).await?;
    try_join_all(
        policy.cluster_role_bindings.iter().map(|b| ensure_one(stores.cluster_role_bindings, b, reconcile_binding)),
    )
    .await?;
    try_join_all(policy.roles.iter().map(|r| ensure_one(stores.roles, r, reconcile_role))).await?;
    try_join_all(policy.role_bindings.iter().map(|b| ensure_one(stores.role_bindings, b, reconcile_binding))).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(annotations: Value, rules: Value) -> Value {
        json!({"metadata": {"name": "r", "annotations": annotations, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}}, "rules": rules})
    }

    #[test]
    fn missing_rules_are_added_broken_down_and_extra_kept() {
        let expected = role(
            json!({AUTOUPDATE_ANNOTATION: "true"}),
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]),
        );
        let extra = json!({"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]});
        let existing = role(
            json!({AUTOUPDATE_ANNOTATION: "true"}),
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, extra]),
        );
        let r = reconcile_role(Some(&existing), &expected);
        assert_eq!(r.operation, Operation::Update);
        assert!(!r.protected);
        assert_eq!(
            r.object["rules"],
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, extra,
                   {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}])
        );
        assert_eq!(reconcile_role(Some(&r.object), &expected).operation, Operation::None);
    }

    #[test]
    fn metadata_is_merged_and_protection_read() {
        let expected = role(json!({AUTOUPDATE_ANNOTATION: "true"}), json!([]));
        let mut existing = role(json!({AUTOUPDATE_ANNOTATION: "false", "mine": "x"}), json!([]));
        existing["metadata"]["labels"] = json!({"team": "a"});
        let r = reconcile_role(Some(&existing), &expected);
        assert!(r.protected);
        assert_eq!(r.operation, Operation::Update);
        assert_eq!(
            r.object["metadata"]["labels"],
            json!({"team": "a", "kubernetes.io/bootstrapping": "rbac-defaults"})
        );
        assert_eq!(r.object["metadata"]["annotations"][AUTOUPDATE_ANNOTATION], "false");
    }

    #[test]
    fn aggregation_selectors_are_unioned_or_removed() {
        let sel = json!({"matchLabels": {"a": "true"}});
        let other = json!({"matchLabels": {"b": "true"}});
        let expected = json!({"metadata": {"name": "r"}, "aggregationRule": {"clusterRoleSelectors": [sel]}});
        let existing = json!({"metadata": {"name": "r"}, "aggregationRule": {"clusterRoleSelectors": [other]}});
        let r = reconcile_role(Some(&existing), &expected);
        assert_eq!(r.object["aggregationRule"]["clusterRoleSelectors"], json!([other, sel]));
        let plain = json!({"metadata": {"name": "r"}});
        let r = reconcile_role(Some(&existing), &plain);
        assert_eq!((r.operation, r.object.get("aggregationRule")), (Operation::Update, None));
    }

    #[test]
    fn bindings_gain_subjects_or_are_recreated() {
        let sub = |n: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": n});
        let binding = |subjects: Value, role: &str| json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}, "subjects": subjects});
        let expected = binding(json!([sub("a"), sub("b")]), "r");
        let r = reconcile_binding(Some(&binding(json!([sub("c"), sub("a")]), "r")), &expected);
        assert_eq!((r.operation, &r.object["subjects"]), (Operation::Update, &json!([sub("c"), sub("a"), sub("b")])));
        let r = reconcile_binding(Some(&binding(json!([sub("a"), sub("b")]), "other")), &expected);
        assert_eq!((r.operation, &r.object), (Operation::Recreate, &expected));
        assert_eq!(reconcile_binding(None, &expected).operation, Operation::Create);
    }
}
