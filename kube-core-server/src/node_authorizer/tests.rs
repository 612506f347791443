//! Decisions and reasons as upstream's node authorizer gives them.

use serde_json::json;

use super::*;
use generic_server::authz::Decision;

fn node_user(name: &str) -> UserInfo {
    UserInfo {
        name: format!("{NODE_USER_PREFIX}{name}"),
        groups: vec![NODES_GROUP.into(), "system:authenticated".into()],
        ..Default::default()
    }
}

fn authorizer() -> NodeAuthorizer {
    let a = NodeAuthorizer::default();
    let pod = json!({"metadata": {"namespace": "ns", "name": "p1"}, "spec": {"nodeName": "n1",
        "serviceAccountName": "sa",
        "volumes": [{"name": "s", "secret": {"secretName": "s1"}},
                    {"name": "c", "configMap": {"name": "c1"}},
                    {"name": "d", "persistentVolumeClaim": {"claimName": "claim"}}]}});
    a.apply(Source::Pod, &Change::Added(&pod));
    let pv = json!({"metadata": {"name": "pv1"}, "spec": {"claimRef": {"namespace": "ns", "name": "claim"}}});
    a.apply(Source::PersistentVolume, &Change::Added(&pv));
    let va = json!({"metadata": {"name": "va1"}, "spec": {"nodeName": "n1"}});
    a.apply(Source::VolumeAttachment, &Change::Added(&va));
    a
}

struct Ask<'a> {
    verb: &'a str,
    group: &'a str,
    resource: &'a str,
    subresource: &'a str,
    namespace: &'a str,
    name: &'a str,
    field_selector: &'a str,
}

const ASK: Ask<'static> =
    Ask { verb: "get", group: "", resource: "", subresource: "", namespace: "", name: "", field_selector: "" };

fn decide(a: &NodeAuthorizer, user: &UserInfo, ask: Ask<'_>) -> (Decision, String) {
    let attrs = Attributes {
        subresource: ask.subresource,
        field_selector: ask.field_selector,
        ..Attributes::resource(user, ask.verb, ask.group, ask.resource, ask.namespace, ask.name)
    };
    let v = a.authorize(&attrs);
    (v.decision, v.reason)
}

fn allowed() -> (Decision, String) {
    (Decision::Allow, String::new())
}

fn denied(reason: &str) -> (Decision, String) {
    (Decision::NoOpinion, reason.to_string())
}

#[test]
fn graph_restricted_reads() {
    let a = authorizer();
    let (n1, n2) = (node_user("n1"), node_user("n2"));
    let none = |node: &str| denied(&format!("no relationship found between node '{node}' and this object"));
    let secret = Ask { resource: "secrets", namespace: "ns", name: "s1", ..ASK };
    assert_eq!(decide(&a, &n1, Ask { ..secret }), allowed());
    assert_eq!(decide(&a, &n2, Ask { ..secret }), none("n2"));
    assert_eq!(decide(&a, &n1, Ask { name: "other", ..secret }), none("n1"));
    // A single-object watch names the object (the field selector's metadata.name).
    assert_eq!(decide(&a, &n1, Ask { verb: "watch", ..secret }), allowed());
    assert_eq!(decide(&a, &n1, Ask { verb: "list", name: "", ..secret }), denied("No Object name found"));
    assert_eq!(decide(&a, &n1, Ask { verb: "delete", ..secret }), denied("can only read resources of this type"));
    assert_eq!(decide(&a, &n1, Ask { subresource: "x", ..secret }), denied("cannot read subresource"));
    assert_eq!(
        decide(&a, &n1, Ask { namespace: "", ..secret }),
        denied("can only read namespaced object of this type")
    );
    let cm = Ask { resource: "configmaps", namespace: "ns", name: "c1", ..ASK };
    assert_eq!(decide(&a, &n1, cm), allowed());
    let pvc = Ask { resource: "persistentvolumeclaims", namespace: "ns", name: "claim", ..ASK };
    assert_eq!(decide(&a, &n1, Ask { ..pvc }), allowed());
    assert_eq!(decide(&a, &n1, Ask { verb: "list", ..pvc }), denied("can only get individual resources of this type"));
    assert_eq!(decide(&a, &n1, Ask { verb: "patch", subresource: "status", ..pvc }), allowed());
    assert_eq!(
        decide(&a, &n1, Ask { verb: "get", subresource: "status", ..pvc }),
        denied("can only get/update/patch this type")
    );
    let pv = Ask { resource: "persistentvolumes", name: "pv1", ..ASK };
    assert_eq!(decide(&a, &n1, Ask { ..pv }), allowed());
    assert_eq!(decide(&a, &n2, pv), none("n2"));
    let va = Ask { group: "storage.k8s.io", resource: "volumeattachments", name: "va1", ..ASK };
    assert_eq!(decide(&a, &n1, va), allowed());
    let token =
        Ask { verb: "create", resource: "serviceaccounts", subresource: "token", namespace: "ns", name: "sa", ..ASK };
    assert_eq!(decide(&a, &n1, Ask { ..token }), allowed());
    assert_eq!(decide(&a, &n2, Ask { ..token }), none("n2"));
    assert_eq!(
        decide(&a, &n1, Ask { subresource: "", ..token }),
        denied("can only create token subresource of serviceaccount")
    );
    assert_eq!(
        decide(&a, &n1, Ask { verb: "get", ..token }),
        denied("can only create tokens for individual service accounts")
    );
    // The pod going away takes its relationships with it.
    let pod = json!({"metadata": {"namespace": "ns", "name": "p1"}});
    a.apply(Source::Pod, &Change::Deleted(&pod));
    assert_eq!(decide(&a, &n1, secret), none("n1"));
    assert_eq!(decide(&a, &n1, Ask { resource: "persistentvolumes", name: "pv1", ..ASK }), none("n1"));
}

#[test]
fn own_node_pods_leases_and_static_rules() {
    let a = authorizer();
    let n1 = node_user("n1");
    let nodes = Ask { resource: "nodes", name: "n1", ..ASK };
    assert_eq!(decide(&a, &n1, Ask { ..nodes }), allowed());
    assert_eq!(
        decide(&a, &n1, Ask { name: "n2", ..nodes }),
        denied("node 'n1' cannot read 'n2', only its own Node object")
    );
    assert_eq!(
        decide(&a, &n1, Ask { verb: "list", name: "", ..nodes }),
        denied("node 'n1' cannot read all nodes, only its own Node object")
    );
    assert_eq!(decide(&a, &n1, Ask { verb: "create", name: "", ..nodes }), allowed());
    assert_eq!(decide(&a, &n1, Ask { verb: "patch", subresource: "status", name: "n2", ..nodes }), allowed());
    assert_eq!(decide(&a, &n1, Ask { verb: "delete", ..nodes }), denied(""));
    let pods = Ask { verb: "list", resource: "pods", ..ASK };
    assert_eq!(decide(&a, &n1, Ask { field_selector: "spec.nodeName=n1", ..pods }), allowed());
    assert_eq!(decide(&a, &n1, Ask { field_selector: "spec.nodeName==n1", ..pods }), allowed());
    let only_node = denied("can only list/watch pods with spec.nodeName field selector");
    assert_eq!(decide(&a, &n1, Ask { field_selector: "spec.nodeName=n2", ..pods }), only_node);
    assert_eq!(decide(&a, &n1, Ask { field_selector: "spec.nodeName!=n2", ..pods }), only_node);
    assert_eq!(decide(&a, &n1, Ask { ..pods }), only_node);
    assert_eq!(decide(&a, &n1, Ask { verb: "get", namespace: "ns", name: "p1", ..pods }), allowed());
    assert_eq!(
        decide(&a, &n1, Ask { verb: "get", namespace: "ns", name: "p2", ..pods }),
        denied("no relationship found between node 'n1' and this object")
    );
    assert_eq!(decide(&a, &n1, Ask { verb: "create", namespace: "ns", ..pods }), allowed());
    assert_eq!(
        decide(&a, &n1, Ask { verb: "create", subresource: "eviction", namespace: "ns", name: "x", ..pods }),
        allowed()
    );
    assert_eq!(decide(&a, &n1, Ask { verb: "update", namespace: "ns", name: "p1", ..pods }), denied(""));
    let lease =
        Ask { group: "coordination.k8s.io", resource: "leases", namespace: "kube-node-lease", name: "n1", ..ASK };
    assert_eq!(decide(&a, &n1, Ask { verb: "update", ..lease }), allowed());
    assert_eq!(
        decide(&a, &n1, Ask { name: "n2", ..lease }),
        denied("can only access node lease with the same name as the requesting node")
    );
    assert_eq!(
        decide(&a, &n1, Ask { namespace: "default", ..lease }),
        denied("can only access leases in the \"kube-node-lease\" system namespace")
    );
    assert_eq!(
        decide(&a, &n1, Ask { verb: "list", ..lease }),
        denied("can only get, create, update, patch, or delete a node lease")
    );
    let csinode = Ask { group: "storage.k8s.io", resource: "csinodes", name: "n2", ..ASK };
    assert_eq!(decide(&a, &n1, csinode), denied("can only access CSINode with the same name as the requesting node"));
    // The rest by the system:node rules alone.
    assert_eq!(decide(&a, &n1, Ask { verb: "watch", resource: "services", ..ASK }), allowed());
    assert_eq!(decide(&a, &n1, Ask { verb: "create", resource: "events", namespace: "ns", ..ASK }), allowed());
    assert_eq!(decide(&a, &n1, Ask { verb: "delete", resource: "services", namespace: "ns", ..ASK }), denied(""));
    let csr = Ask { verb: "create", group: "certificates.k8s.io", resource: "certificatesigningrequests", ..ASK };
    assert_eq!(decide(&a, &n1, csr), allowed());
}

#[test]
fn only_nodes_are_its_business() {
    let a = authorizer();
    let not_in_group = UserInfo { name: "system:node:n1".into(), ..Default::default() };
    let ask = || Ask { resource: "secrets", namespace: "ns", name: "s1", ..ASK };
    assert_eq!(decide(&a, &not_in_group, ask()), denied(""));
    let nameless = node_user("");
    assert_eq!(decide(&a, &nameless, ask()), denied("unknown node for user \"system:node:\""));
    assert!(a.rules_for(&not_in_group, "ns") == Rules::default());
    let rules = a.rules_for(&node_user("n1"), "ns");
    assert!(rules.incomplete);
    assert_eq!(rules.error.as_deref(), Some("node authorizer does not support user rule resolution"));
}
