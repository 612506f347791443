//! rbac.authorization.k8s.io/v1 rolebindings and clusterrolebindings (upstream
//! pkg/registry/rbac/rolebinding and clusterrolebinding): roleRef and subject
//! defaults and rules, roleRef fixed once created, and the table with the
//! bound role and, wide, the subjects.

use serde_json::{json, Value};

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};

use generic_server::meta::{self, NameRule};
use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::{age, arr_at, child, invalid_raw, str_at};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Rolebindings may bind a Role or a ClusterRole; clusterrolebindings only a
/// ClusterRole, and their service account subjects must name a namespace.
pub struct RoleBindingStrategy {
    namespaced: bool,
}

pub fn registration() -> Registration {
    Registration::of::<RoleBinding>(RoleBindingStrategy { namespaced: true })
}

pub fn cluster_registration() -> Registration {
    Registration::of::<ClusterRoleBinding>(RoleBindingStrategy { namespaced: false })
}

/// Upstream's validateRoleBindingSubject for `subjects[i]`.
fn validate_subject(subject: &Value, namespaced: bool, path: &str, causes: &mut Vec<Cause>) {
    let name = str_at(subject, "/name");
    let group = str_at(subject, "/apiGroup");
    if name.is_empty() {
        causes.push(Cause::required(format!("{path}.name"), ""));
    }
    match str_at(subject, "/kind") {
        "ServiceAccount" => {
            if let Some(m) = meta::is_dns1123_subdomain(name).filter(|_| !name.is_empty()) {
                causes.push(Cause::invalid(format!("{path}.name"), &json!(name), &m));
            }
            if !group.is_empty() {
                causes.push(Cause::not_supported(format!("{path}.apiGroup"), &json!(group), &[""]));
            }
            if !namespaced && str_at(subject, "/namespace").is_empty() {
                causes.push(Cause::required(format!("{path}.namespace"), ""));
            }
        }
        kind @ ("User" | "Group") => {
            if name.is_empty() {
                let what = if kind == "User" { "user name cannot be empty" } else { "group name cannot be empty" };
                causes.push(Cause::invalid(format!("{path}.name"), &json!(name), what));
            }
            if group != RBAC_GROUP {
                causes.push(Cause::not_supported(format!("{path}.apiGroup"), &json!(group), &[RBAC_GROUP]));
            }
        }
        other => causes.push(Cause::not_supported(
            format!("{path}.kind"),
            &json!(other),
            &["ServiceAccount", "User", "Group"],
        )),
    }
}

/// The roleRef as Go's %#v prints upstream's internal rbac.RoleRef.
fn show_role_ref(obj: &Value) -> String {
    format!(
        "rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}",
        str_at(obj, "/roleRef/apiGroup"),
        str_at(obj, "/roleRef/kind"),
        str_at(obj, "/roleRef/name")
    )
}

impl Strategy for RoleBindingStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn default(&self, obj: &mut Value) {
        let role_ref = child(obj, "roleRef");
        if role_ref.get("apiGroup").and_then(Value::as_str).unwrap_or("").is_empty() {
            role_ref.insert("apiGroup".into(), json!(RBAC_GROUP));
        }
        for subject in obj.get_mut("subjects").and_then(Value::as_array_mut).into_iter().flatten() {
            let kind = str_at(subject, "/kind");
            if matches!(kind, "User" | "Group") && str_at(subject, "/apiGroup").is_empty() {
                if let Some(m) = subject.as_object_mut() {
                    m.insert("apiGroup".into(), json!(RBAC_GROUP));
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let group = str_at(obj, "/roleRef/apiGroup");
        if group != RBAC_GROUP {
            causes.push(Cause::not_supported("roleRef.apiGroup", &json!(group), &[RBAC_GROUP]));
        }
        let kinds: &[&str] = if self.namespaced { &["Role", "ClusterRole"] } else { &["ClusterRole"] };
        let kind = str_at(obj, "/roleRef/kind");
        if !kinds.contains(&kind) {
            causes.push(Cause::not_supported("roleRef.kind", &json!(kind), kinds));
        }
        let name = str_at(obj, "/roleRef/name");
        if name.is_empty() {
            causes.push(Cause::required("roleRef.name", ""));
        } else if let Some(m) = meta::path_segment_problem(name) {
            causes.push(Cause::invalid("roleRef.name", &json!(name), &m));
        }
        for (i, subject) in arr_at(obj, "/subjects").iter().enumerate() {
            validate_subject(subject, self.namespaced, &format!("subjects[{i}]"), &mut causes);
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        if new.get("roleRef") != old.get("roleRef") {
            causes.push(invalid_raw("roleRef", &show_role_ref(new), "cannot change roleRef"));
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error."),
            TableColumn::age_column(),
            TableColumn::new("Users", "string", "Users in the roleBinding").wide(),
            TableColumn::new("Groups", "string", "Groups in the roleBinding").wide(),
            TableColumn::new("ServiceAccounts", "string", "ServiceAccounts in the roleBinding").wide(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
        for s in arr_at(obj, "/subjects") {
            let name = str_at(s, "/name").to_string();
            match str_at(s, "/kind") {
                "User" => users.push(name),
                "Group" => groups.push(name),
                "ServiceAccount" => sas.push(format!("{}/{name}", str_at(s, "/namespace"))),
                _ => {}
            }
        }
        let role = format!("{}/{}", str_at(obj, "/roleRef/kind"), str_at(obj, "/roleRef/name"));
        vec![
            json!(meta::name(obj)),
            json!(role),
            age(obj),
            json!(users.join(", ")),
            json!(groups.join(", ")),
            json!(sas.join(", ")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(causes: Vec<Cause>) -> Vec<String> {
        causes.iter().map(Cause::full_message).collect()
    }

    #[test]
    fn defaults_fill_the_rbac_group() {
        let s = RoleBindingStrategy { namespaced: true };
        let mut b = json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [
            {"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}]});
        s.default(&mut b);
        assert_eq!(b["roleRef"]["apiGroup"], RBAC_GROUP);
        assert_eq!(b["subjects"][0]["apiGroup"], RBAC_GROUP);
        assert!(b["subjects"][1].get("apiGroup").is_none());
        assert!(s.validate(&b).is_empty(), "{:?}", s.validate(&b));
        let row = s.table_row(&b);
        assert_eq!((&row[1], &row[3], &row[5]), (&json!("Role/r"), &json!("u"), &json!("ns/sa")));
    }

    #[test]
    fn role_ref_and_subjects_are_checked() {
        let cluster = RoleBindingStrategy { namespaced: false };
        let b = json!({"roleRef": {"apiGroup": "x", "kind": "Role", "name": ""}, "subjects": [
            {"kind": "ServiceAccount", "name": "sa"}, {"kind": "Robot", "name": "r"}]});
        assert_eq!(
            messages(cluster.validate(&b)),
            [
                "roleRef.apiGroup: Unsupported value: \"x\": supported values: \"rbac.authorization.k8s.io\"",
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "roleRef.name: Required value",
                "subjects[0].namespace: Required value",
                "subjects[1].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
            ]
        );
    }

    #[test]
    fn role_ref_is_immutable() {
        let s = RoleBindingStrategy { namespaced: true };
        let old = json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "a"}});
        let mut new = old.clone();
        new["roleRef"]["name"] = json!("b");
        assert_eq!(
            messages(s.validate_update(&new, &old)),
            ["roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"Role\", Name:\"b\"}: cannot change roleRef"]
        );
    }
}
