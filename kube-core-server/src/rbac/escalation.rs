//! Escalation prevention (upstream's role, clusterrole, rolebinding and
//! clusterrolebinding policybased storages and pkg/registry/rbac's
//! escalation_check.go): a client may write a role only with every rule it
//! grants (or the `escalate` verb on it), and a binding only with every rule
//! of the role it binds (or the `bind` verb on that role). Members of
//! system:masters and the server itself are exempt.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use generic_server::authn::UserInfo;
use generic_server::authz::{aggregate, Attributes, Authorizer, PRIVILEGED_GROUP};
use generic_server::meta;
use generic_server::registry::{AdmissionAttributes, Operation, Validating};
use generic_server::status::StatusError;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};

use generic_server::status::go_quoted;

use super::rules::{compact, rules_of, uncovered, PolicyRule};
use super::{Rbac, Unresolved};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The check, run as admission on the four rbac Stores.
pub struct EscalationCheck {
    rbac: Arc<Rbac>,
    /// The server's whole authorizer, for `escalate` and `bind`.
    authorizer: Arc<dyn Authorizer>,
}

impl EscalationCheck {
    pub fn new(rbac: Arc<Rbac>, authorizer: Arc<dyn Authorizer>) -> Self {
        EscalationCheck { rbac, authorizer }
    }

    /// Upstream's ConfirmNoEscalation: `user` must hold every one of `rules`
    /// in `namespace`; the error lists the missing ones.
    fn confirm(&self, user: &UserInfo, namespace: &str, rules: &[PolicyRule]) -> Result<(), String> {
        let (owned, errors) = self.rbac.policy_rules_for(user, namespace);
        let errors: Vec<String> = errors.iter().map(Unresolved::registry_message).collect();
        let missing = uncovered(&owned, rules);
        if missing.is_empty() {
            return Ok(());
        }
        let listed: BTreeSet<String> = compact(missing).iter().map(PolicyRule::compact_string).collect();
        let mut msg = format!(
            "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
            user.name,
            go_quoted(&user.groups),
            listed.into_iter().collect::<Vec<_>>().join("\n")
        );
        if let Some(e) = aggregate(&errors) {
            msg.push_str(&format!("; resolution errors: [{e}]"));
        }
        Err(msg)
    }

    fn allowed(&self, attrs: &Attributes<'_>) -> bool {
        self.authorizer.authorize(attrs).allowed()
    }
}

/// Everything on everything (upstream's fullAuthority), which setting an
/// aggregationRule requires.
fn full_authority() -> Vec<PolicyRule> {
    let all = || vec!["*".to_string()];
    vec![
        PolicyRule { verbs: all(), api_groups: all(), resources: all(), ..Default::default() },
        PolicyRule { verbs: all(), non_resource_urls: all(), ..Default::default() },
    ]
}

/// Upstream's IsOnlyMutatingGCFields: the update changes nothing but owner
/// references and finalizers (what the garbage collector writes).
fn only_gc_fields(new: &Value, old: Option<&Value>) -> bool {
    let Some(old) = old else { return false };
    let strip = |v: &Value| {
        let mut v = v.clone();
        for f in ["ownerReferences", "finalizers", "selfLink", "managedFields", "resourceVersion"] {
            meta::remove_meta(&mut v, f);
        }
        v
    };
    strip(new) == strip(old)
}

fn has_aggregation_rule(obj: Option<&Value>) -> bool {
    obj.and_then(|o| o.get("aggregationRule")).is_some_and(|r| !r.is_null())
}

#[async_trait::async_trait]
impl Validating for EscalationCheck {
    async fn validate(&self, a: &AdmissionAttributes<'_>) -> Result<(), StatusError> {
        let is_role = a.is::<Role>() || a.is::<ClusterRole>();
        let is_binding = a.is::<RoleBinding>() || a.is::<ClusterRoleBinding>();
        if !(is_role || is_binding) || !a.subresource.is_empty() || a.operation == Operation::Delete {
            return Ok(());
        }
        let (Some(user), Some(obj)) = (a.user, a.object) else { return Ok(()) };
        if user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
            return Ok(());
        }
        let forbidden = |why: String| a.forbidden(&why);
        if is_role {
            let mut escalate = Attributes::resource(user, "escalate", a.group(), a.resource(), a.namespace, a.name);
            escalate.api_version = "*";
            if self.allowed(&escalate) || only_gc_fields(obj, a.old) {
                return Ok(());
            }
            self.confirm(user, a.namespace, &rules_of(obj)).map_err(forbidden)?;
            if has_aggregation_rule(Some(obj)) || has_aggregation_rule(a.old) {
                self.confirm(user, a.namespace, &full_authority())
                    .map_err(|_| forbidden("must have cluster-admin privileges to use the aggregationRule".into()))?;
            }
            Ok(())
        } else {
            if only_gc_fields(obj, a.old) {
                return Ok(());
            }
            let at = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("");
            let (group, kind, name) = (at("/roleRef/apiGroup"), at("/roleRef/kind"), at("/roleRef/name"));
            let resource = match kind {
                "ClusterRole" => "clusterroles",
                "Role" => "roles",
                _ => return Err(forbidden(format!("unsupported role reference kind: {kind:?}"))),
            };
            if self.allowed(&Attributes::resource(user, "bind", group, resource, a.namespace, name)) {
                return Ok(());
            }
            let Some(rules) = self.rbac.role_reference_rules(kind, name, a.namespace) else {
                return Err(StatusError::not_found(RBAC_GROUP, resource, name));
            };
            self.confirm(user, a.namespace, &rules).map_err(forbidden)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::authorizer::Kind;
    use generic_server::authz::{AlwaysAllow, AlwaysDeny};
    use generic_server::informer::Change;
    use generic_server::registry::{Notes, ResourceInfo};
    use serde_json::json;

    fn alice() -> UserInfo {
        UserInfo { name: "alice".into(), groups: vec!["devs".into()], ..Default::default() }
    }

    /// alice may get pods in namespace "a".
    fn rbac() -> Arc<Rbac> {
        let r = Arc::new(Rbac::default());
        let role = json!({"metadata": {"name": "r", "namespace": "a"},
                          "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]});
        r.apply(Kind::Role, &Change::Added(&role));
        let b = json!({"metadata": {"name": "b", "namespace": "a"}, "roleRef": {"kind": "Role", "name": "r"},
                       "subjects": [{"kind": "User", "name": "alice"}]});
        r.apply(Kind::Binding, &Change::Added(&b));
        let big = json!({"metadata": {"name": "big"}, "rules": [{"verbs": ["*"], "apiGroups": [""], "resources": ["secrets"]}]});
        r.apply(Kind::ClusterRole, &Change::Added(&big));
        r
    }

    async fn admit(
        check: &EscalationCheck,
        resource: &str,
        obj: &Value,
        user: Option<&UserInfo>,
    ) -> Result<(), StatusError> {
        let info = match resource {
            "roles" => ResourceInfo::of::<Role>(),
            "clusterroles" => ResourceInfo::of::<ClusterRole>(),
            "rolebindings" => ResourceInfo::of::<RoleBinding>(),
            _ => ResourceInfo::of::<ClusterRoleBinding>(),
        };
        let notes = Notes::default();
        let attrs = AdmissionAttributes {
            operation: Operation::Create,
            info: &info,
            subresource: "",
            kind: None,
            namespace: "a",
            name: "x",
            object: Some(obj),
            old: None,
            user,
            dry_run: false,
            notes: &notes,
        };
        check.validate(&attrs).await
    }

    #[tokio::test]
    async fn writers_grant_only_what_they_hold() {
        let check = EscalationCheck::new(rbac(), Arc::new(AlwaysDeny));
        let u = alice();
        let held = json!({"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]});
        assert!(admit(&check, "roles", &held, Some(&u)).await.is_ok());
        let more = json!({"rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]});
        let e = admit(&check, "roles", &more, Some(&u)).await.unwrap_err();
        assert_eq!((e.code, e.reason), (403, generic_server::status::Reason::Forbidden));
        assert_eq!(
            e.message,
            "roles.rbac.authorization.k8s.io \"x\" is forbidden: user \"alice\" (groups=[\"devs\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"list\"]}"
        );
        // The server's own writes and system:masters are exempt.
        assert!(admit(&check, "roles", &more, None).await.is_ok());
        let admin = UserInfo { name: "admin".into(), groups: vec![PRIVILEGED_GROUP.into()], ..Default::default() };
        assert!(admit(&check, "roles", &more, Some(&admin)).await.is_ok());
        let bind_big = json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "big"}});
        assert_eq!(admit(&check, "rolebindings", &bind_big, Some(&u)).await.unwrap_err().code, 403);
        let bind_gone = json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "gone"}});
        let e = admit(&check, "rolebindings", &bind_gone, Some(&u)).await.unwrap_err();
        assert_eq!(e.message, "roles.rbac.authorization.k8s.io \"gone\" not found");
        // `bind` and `escalate` granted by the authorizer let anything through.
        let permissive = EscalationCheck::new(rbac(), Arc::new(AlwaysAllow));
        assert!(admit(&permissive, "rolebindings", &bind_big, Some(&u)).await.is_ok());
        assert!(admit(&permissive, "roles", &more, Some(&u)).await.is_ok());
    }
}
