//! The Node authorizer (upstream's plugin/pkg/auth/authorizer/node,
//! `--authorization-mode=Node`): kubelets, users `system:node:<name>` in
//! group `system:nodes`, may read the secrets, configmaps, claims, volumes
//! and ServiceAccount tokens of the pods bound to their node and nothing
//! else of those kinds ([`graph`], kept current from the pod,
//! PersistentVolume and VolumeAttachment informers); their own Node, Lease
//! and CSINode by name; and otherwise what upstream's static node rules
//! (the `system:node` ClusterRole) allow. With AuthorizeNodeWithSelectors
//! (on in 1.33) pods are listed or watched only by `spec.nodeName`.
//!
//! Like upstream, it never denies: what it does not allow gets no opinion
//! and a reason, so a later mode (RBAC) may still allow it.

pub mod graph;

use std::sync::{Arc, RwLock};

use generic_server::authn::UserInfo;
use generic_server::authz::{Attributes, Authorizer, Rules, Verdict};
use generic_server::informer::{Change, Informer};
use generic_server::meta;
use generic_server::registry::Store;
use generic_server::selectors::FieldSelector;

use crate::rbac::rules::{rules_of, PolicyRule};
use graph::{Graph, Kind};

const NODE_USER_PREFIX: &str = "system:node:";
const NODES_GROUP: &str = "system:nodes";
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Upstream's default NodeIdentifier: the node a user speaks for, "" when it
/// is a node of unknown name, None when it is no node.
pub fn node_identity(user: &UserInfo) -> Option<&str> {
    let name = user.name.strip_prefix(NODE_USER_PREFIX)?;
    user.groups.iter().any(|g| g == NODES_GROUP).then_some(name)
}

pub struct NodeAuthorizer {
    graph: RwLock<Graph>,
    /// Upstream's NodeRules: the rules of the default `system:node` ClusterRole.
    rules: Vec<PolicyRule>,
}

impl Default for NodeAuthorizer {
    fn default() -> Self {
        let policy = crate::rbac::policy();
        let role = policy.cluster_roles.iter().find(|r| meta::name(r) == "system:node");
        NodeAuthorizer { graph: RwLock::default(), rules: role.map(rules_of).unwrap_or_default() }
    }
}

/// The Stores whose objects relate other objects to nodes.
pub struct NodeAuthorizerStores {
    pub pods: Arc<Store>,
    pub persistent_volumes: Arc<Store>,
    pub volume_attachments: Arc<Store>,
}

#[derive(Clone, Copy)]
enum Source {
    Pod,
    PersistentVolume,
    VolumeAttachment,
}

fn no_opinion(reason: impl Into<String>) -> Verdict {
    Verdict::no_opinion(reason)
}

fn allow() -> Verdict {
    Verdict::allow("")
}

/// Whether the field selector requires `field` to equal `value` (upstream
/// looks for that requirement among the parsed ones; an unparsable
/// selector has none).
fn selects(attrs: &Attributes<'_>, field: &str, value: &str) -> bool {
    FieldSelector::parse(attrs.field_selector)
        .is_ok_and(|s| s.0.iter().any(|(k, eq, v)| *eq && k == field && v == value))
}

impl NodeAuthorizer {
    /// Follows the Stores and returns once the first list of each is in the graph.
    pub async fn start(self: &Arc<Self>, stores: NodeAuthorizerStores) {
        let sources = vec![
            (stores.pods, Source::Pod),
            (stores.persistent_volumes, Source::PersistentVolume),
            (stores.volume_attachments, Source::VolumeAttachment),
        ];
        let me = self.clone();
        Informer::follow_all(sources, move |source, change| me.apply(source, &change)).await;
    }

    fn apply(&self, source: Source, change: &Change<'_>) {
        let obj = change.object();
        let mut graph = self.graph.write().unwrap_or_else(|e| e.into_inner());
        match (source, change) {
            (Source::Pod, Change::Deleted(_)) => graph.remove_pod(meta::namespace(obj), meta::name(obj)),
            (Source::Pod, _) => graph.put_pod(obj),
            (Source::PersistentVolume, Change::Deleted(_)) => graph.remove_pv(meta::name(obj)),
            (Source::PersistentVolume, _) => graph.put_pv(obj),
            (Source::VolumeAttachment, Change::Deleted(_)) => graph.remove_attachment(meta::name(obj)),
            (Source::VolumeAttachment, _) => graph.put_attachment(obj),
        }
    }

    /// Upstream's authorize: a named object related to the node.
    fn related(&self, node: &str, kind: Kind, attrs: &Attributes<'_>) -> Verdict {
        if attrs.name.is_empty() {
            return no_opinion("No Object name found");
        }
        let graph = self.graph.read().unwrap_or_else(|e| e.into_inner());
        if graph.reaches(node, kind, attrs.namespace, attrs.name) {
            allow()
        } else {
            no_opinion(format!("no relationship found between node '{node}' and this object"))
        }
    }

    fn get(&self, node: &str, kind: Kind, attrs: &Attributes<'_>) -> Verdict {
        if attrs.verb != "get" {
            return no_opinion("can only get individual resources of this type");
        }
        if !attrs.subresource.is_empty() {
            return no_opinion("cannot get subresource");
        }
        self.related(node, kind, attrs)
    }

    fn read_namespaced(&self, node: &str, kind: Kind, attrs: &Attributes<'_>) -> Verdict {
        if !matches!(attrs.verb, "get" | "list" | "watch") {
            return no_opinion("can only read resources of this type");
        }
        if !attrs.subresource.is_empty() {
            return no_opinion("cannot read subresource");
        }
        if attrs.namespace.is_empty() {
            return no_opinion("can only read namespaced object of this type");
        }
        self.related(node, kind, attrs)
    }

    fn status_update(&self, node: &str, kind: Kind, attrs: &Attributes<'_>) -> Verdict {
        if !matches!(attrs.verb, "update" | "patch") {
            return no_opinion("can only get/update/patch this type");
        }
        self.related(node, kind, attrs)
    }

    fn create_token(&self, node: &str, attrs: &Attributes<'_>) -> Verdict {
        if attrs.verb != "create" || attrs.name.is_empty() {
            return no_opinion("can only create tokens for individual service accounts");
        }
        if attrs.subresource != "token" {
            return no_opinion("can only create token subresource of serviceaccount");
        }
        self.related(node, Kind::ServiceAccount, attrs)
    }

    /// Leases and CSINodes: a node's own, by name (creation is left to the
    /// NodeRestriction admission plugin, which sees the object).
    fn own_object(node: &str, attrs: &Attributes<'_>, what: &str) -> Verdict {
        if !matches!(attrs.verb, "get" | "create" | "update" | "patch" | "delete") {
            return no_opinion(format!("can only get, create, update, patch, or delete a {what}"));
        }
        if what == "node lease" && attrs.namespace != NODE_LEASE_NAMESPACE {
            return no_opinion(format!("can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"));
        }
        if what == "CSINode" && !attrs.subresource.is_empty() {
            return no_opinion("cannot authorize CSINode subresources");
        }
        if attrs.verb != "create" && attrs.name != node {
            return no_opinion(format!("can only access {what} with the same name as the requesting node"));
        }
        allow()
    }

    fn resource_slice(&self, node: &str, attrs: &Attributes<'_>) -> Verdict {
        if !attrs.subresource.is_empty() {
            return no_opinion("cannot authorize ResourceSlice subresources");
        }
        match attrs.verb {
            "create" => allow(),
            "get" | "update" | "patch" | "delete" => self.related(node, Kind::ResourceSlice, attrs),
            "watch" | "list" | "deletecollection" if selects(attrs, "nodeName", node) => allow(),
            "watch" | "list" | "deletecollection" => {
                no_opinion("can only list/watch/deletecollection resourceslices with nodeName field selector")
            }
            _ => no_opinion(
                "only the following verbs are allowed for a ResourceSlice: get, watch, list, create, update, patch, delete, deletecollection",
            ),
        }
    }

    fn node(node: &str, attrs: &Attributes<'_>) -> Verdict {
        match (attrs.subresource, attrs.verb) {
            // NodeRestriction limits a node to its own object.
            ("", "create" | "update" | "patch") | ("status", "update" | "patch") => allow(),
            // By name rather than the graph, so a kubelet may look for its
            // Node before creating it.
            ("", "get" | "list" | "watch") if attrs.name == node => allow(),
            ("", "get" | "list" | "watch") if attrs.name.is_empty() => {
                no_opinion(format!("node '{node}' cannot read all nodes, only its own Node object"))
            }
            ("", "get" | "list" | "watch") => {
                no_opinion(format!("node '{node}' cannot read '{}', only its own Node object", attrs.name))
            }
            _ => no_opinion(""),
        }
    }

    fn pod(&self, node: &str, attrs: &Attributes<'_>) -> Verdict {
        match (attrs.subresource, attrs.verb) {
            ("", "get") => self.get(node, Kind::Pod, attrs),
            ("", "list" | "watch") if selects(attrs, "spec.nodeName", node) => allow(),
            ("", "list" | "watch") if !attrs.name.is_empty() => self.related(node, Kind::Pod, attrs),
            ("", "list" | "watch") => no_opinion("can only list/watch pods with spec.nodeName field selector"),
            // Mirror pods, pod status and evictions: NodeRestriction limits
            // them to the node's own pods.
            ("", "create" | "delete") | ("status", "update" | "patch") | ("eviction", "create") => allow(),
            _ => no_opinion(""),
        }
    }
}

impl Authorizer for NodeAuthorizer {
    fn authorize(&self, attrs: &Attributes<'_>) -> Verdict {
        let Some(node) = node_identity(attrs.user) else { return no_opinion("") };
        if node.is_empty() {
            return no_opinion(format!("unknown node for user {:?}", attrs.user.name));
        }
        if attrs.resource_request {
            match (attrs.api_group, attrs.resource) {
                ("", "secrets") => return self.read_namespaced(node, Kind::Secret, attrs),
                ("", "configmaps") => return self.read_namespaced(node, Kind::ConfigMap, attrs),
                ("", "persistentvolumeclaims") if attrs.subresource == "status" => {
                    return self.status_update(node, Kind::PersistentVolumeClaim, attrs)
                }
                ("", "persistentvolumeclaims") => return self.get(node, Kind::PersistentVolumeClaim, attrs),
                ("", "persistentvolumes") => return self.get(node, Kind::PersistentVolume, attrs),
                ("resource.k8s.io", "resourceclaims") => return self.get(node, Kind::ResourceClaim, attrs),
                ("storage.k8s.io", "volumeattachments") => return self.get(node, Kind::VolumeAttachment, attrs),
                ("", "serviceaccounts") => return self.create_token(node, attrs),
                ("coordination.k8s.io", "leases") => return Self::own_object(node, attrs, "node lease"),
                ("storage.k8s.io", "csinodes") => return Self::own_object(node, attrs, "CSINode"),
                ("resource.k8s.io", "resourceslices") => return self.resource_slice(node, attrs),
                ("", "nodes") => return Self::node(node, attrs),
                ("", "pods") => return self.pod(node, attrs),
                _ => {}
            }
        }
        if self.rules.iter().any(|r| r.allows(attrs)) {
            allow()
        } else {
            no_opinion("")
        }
    }

    fn rules_for(&self, user: &UserInfo, _namespace: &str) -> Rules {
        match node_identity(user) {
            // A node's permissions depend on the graph: not listable.
            Some(_) => Rules {
                incomplete: true,
                error: Some("node authorizer does not support user rule resolution".into()),
                ..Rules::default()
            },
            None => Rules::default(),
        }
    }
}

#[cfg(test)]
mod tests;
