//! rbac.authorization.k8s.io/v1 roles and clusterroles (upstream
//! pkg/registry/rbac/role and clusterrole): names are only path segments, and
//! every policy rule names verbs and either resources or, cluster-wide only,
//! non-resource URLs; a clusterrole's aggregationRule needs a valid
//! selector. Upstream prints them with its default table (Name, Created At).

use serde_json::Value;

use k8s_openapi::api::rbac::v1::{ClusterRole, Role};

use generic_server::meta::NameRule;
use generic_server::registry::{table, Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::label_selector::validate_label_selector;
use super::{arr_at, go_string_slice};

/// Roles and clusterroles differ only in where non-resource URLs may appear.
pub struct RoleStrategy {
    namespaced: bool,
}

pub fn registration() -> Registration {
    Registration::of::<Role>(RoleStrategy { namespaced: true })
}

pub fn cluster_registration() -> Registration {
    Registration::of::<ClusterRole>(RoleStrategy { namespaced: false })
}

/// Upstream's validatePolicyRule for `rules[i]`.
fn validate_rule(rule: &Value, namespaced: bool, path: &str, causes: &mut Vec<Cause>) {
    if arr_at(rule, "/verbs").is_empty() {
        causes.push(Cause::required(format!("{path}.verbs"), "verbs must contain at least one value"));
    }
    let urls = arr_at(rule, "/nonResourceURLs");
    let (groups, resources, names) =
        (arr_at(rule, "/apiGroups"), arr_at(rule, "/resources"), arr_at(rule, "/resourceNames"));
    if !urls.is_empty() {
        let shown = go_string_slice(urls);
        if namespaced {
            causes.push(super::invalid_raw(
                format!("{path}.nonResourceURLs"),
                &shown,
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if !groups.is_empty() || !resources.is_empty() || !names.is_empty() {
            causes.push(super::invalid_raw(
                format!("{path}.nonResourceURLs"),
                &shown,
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return;
    }
    if groups.is_empty() {
        causes.push(Cause::required(format!("{path}.apiGroups"), "resource rules must supply at least one api group"));
    }
    if resources.is_empty() {
        causes.push(Cause::required(format!("{path}.resources"), "resource rules must supply at least one resource"));
    }
    if !names.is_empty() && resources.len() > 1 {
        causes.push(Cause::required(
            format!("{path}.resourceNames"),
            "resource names cannot apply to multiple resources",
        ));
    }
}

impl Strategy for RoleStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        for (i, rule) in arr_at(obj, "/rules").iter().enumerate() {
            validate_rule(rule, self.namespaced, &format!("rules[{i}]"), &mut causes);
        }
        if let Some(aggregation) = obj.get("aggregationRule").filter(|a| !self.namespaced && !a.is_null()) {
            let selectors = arr_at(aggregation, "/clusterRoleSelectors");
            if selectors.is_empty() {
                causes.push(Cause::required(
                    "aggregationRule.clusterRoleSelectors",
                    "at least one clusterRoleSelector required if aggregationRule is non-nil",
                ));
            }
            for (i, selector) in selectors.iter().enumerate() {
                validate_label_selector(selector, &format!("aggregationRule.clusterRoleSelectors[{i}]"), &mut causes);
            }
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        table::created_at_columns()
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        table::created_at_row(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(s: &RoleStrategy, obj: Value) -> Vec<String> {
        s.validate(&obj).iter().map(Cause::full_message).collect()
    }

    #[test]
    fn rules_need_verbs_and_resources() {
        let role = RoleStrategy { namespaced: true };
        assert!(messages(&role, json!({"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}))
            .is_empty());
        assert_eq!(
            messages(&role, json!({"rules": [{"resourceNames": ["a"], "resources": ["pods", "secrets"]}]})),
            [
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[0].resourceNames: Required value: resource names cannot apply to multiple resources",
            ]
        );
    }

    #[test]
    fn non_resource_urls_only_cluster_wide_and_alone() {
        let rule = json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"], "resources": ["pods"]}]});
        assert_eq!(
            messages(&RoleStrategy { namespaced: true }, rule.clone()),
            [
                "rules[0].nonResourceURLs: Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs",
                "rules[0].nonResourceURLs: Invalid value: []string{\"/healthz\"}: rules cannot apply to both regular resources and non-resource URLs",
            ]
        );
        let cluster = RoleStrategy { namespaced: false };
        assert_eq!(messages(&cluster, rule).len(), 1);
        assert!(messages(&cluster, json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]})).is_empty());
    }

    #[test]
    fn aggregation_rules_need_valid_selectors() {
        let cluster = RoleStrategy { namespaced: false };
        assert_eq!(
            messages(&cluster, json!({"aggregationRule": {}})),
            ["aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"]
        );
        let bad = json!({"aggregationRule": {"clusterRoleSelectors": [{"matchExpressions": [{"key": "a", "operator": "In"}]}]}});
        assert_eq!(
            messages(&cluster, bad),
            ["aggregationRule.clusterRoleSelectors[0].matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"]
        );
        let good = json!({"aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "true"}}]}});
        assert!(messages(&cluster, good).is_empty());
    }
}
