//! Authorization under `--authorization-mode=Node,RBAC` (kubeadm's): a decision matrix of
//! subjects (the admin certificate in system:masters, token-file users, an
//! anonymous caller, impersonated users and ServiceAccounts) by verbs by
//! resources (namespaced, cluster-scoped, subresources, named objects,
//! non-resource URLs) under a fixed policy, each denial with upstream's exact
//! message; escalation prevention; the access reviews behind
//! `kubectl auth can-i`; the Node authorizer limiting kubelets to what their
//! pods use; and the mode flag's checks. One server serves the
//! file: the policy is created once and the tests only read it, or write
//! objects no other test reads.
//!
//! The bootstrap policy is not assumed: the fixture's own roles stand in for
//! upstream's system:public-info-viewer, system:discovery and
//! system:basic-user.

use std::sync::OnceLock;

use e2e::{Cred, Server};
use serde_json::{json, Value};

const TOKENS: &str = "alice-token,alice,1001,\"devs\"\nbob-token,bob,1002\n\
    n1-token,system:node:n1,n1,system:nodes\nn2-token,system:node:n2,n2,system:nodes\n";

/// The policy every test reads. In rbac-b a binding for the devs group names
/// a ClusterRole that does not exist, so alice's denials there carry RBAC's
/// reason, as upstream's do.
const POLICY: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: rbac-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: rbac-b}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-public-info}
rules:
- {verbs: [get], nonResourceURLs: [/healthz, /livez, /readyz, /version, /version/]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-public-info}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-public-info}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: system:authenticated}
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: system:unauthenticated}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-discovery}
rules:
- {verbs: [get], nonResourceURLs: [/api, /api/*, /apis, /apis/*, /openapi, /openapi/*]}
- {verbs: [create], apiGroups: [authorization.k8s.io], resources: [selfsubjectaccessreviews, selfsubjectrulesreviews]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-discovery}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-discovery}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: system:authenticated}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: rbac-a}
rules:
- {verbs: [get, list, watch], apiGroups: [""], resources: [pods]}
- {verbs: [get], apiGroups: [""], resources: [pods/log]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: devs-read, namespace: rbac-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: devs}
- {kind: ServiceAccount, name: robot}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cm-editor}
rules:
- {verbs: [create, update, patch, delete, deletecollection, get], apiGroups: [""], resources: [configmaps]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-cm, namespace: rbac-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cm-editor}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: node-viewer}
rules:
- {verbs: [get, list, watch], apiGroups: [""], resources: [nodes]}
- {verbs: [get], apiGroups: [""], resources: [namespaces], resourceNames: [rbac-a]}
- {verbs: [get], nonResourceURLs: [/metrics]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-nodes}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: node-viewer}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: scaler}
rules:
- {verbs: [get, update, patch], apiGroups: [apps], resources: ["*/scale"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-scale, namespace: rbac-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: scaler}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: secret-named, namespace: rbac-a}
rules:
- {verbs: [get, update], apiGroups: [""], resources: [secrets], resourceNames: [allowed]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-secret, namespace: rbac-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: secret-named}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: impersonator}
rules:
- {verbs: [impersonate], apiGroups: [""], resources: [users], resourceNames: [dave]}
- {verbs: [impersonate], apiGroups: [""], resources: [groups], resourceNames: [qa]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bob-impersonate}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonator}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: qa-pods}
rules:
- {verbs: [list], apiGroups: [""], resources: [pods]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: qa-pods, namespace: rbac-b}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: qa-pods}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: qa}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dangling, namespace: rbac-b}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: missing}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: devs}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: role-admin, namespace: rbac-b}
rules:
- {verbs: [create, update, get], apiGroups: [rbac.authorization.k8s.io], resources: [roles, rolebindings]}
- {verbs: [escalate], apiGroups: [rbac.authorization.k8s.io], resources: [roles], resourceNames: [escalated]}
- {verbs: [bind], apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles], resourceNames: [qa-pods]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-role-admin, namespace: rbac-b}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: role-admin}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}
---
apiVersion: v1
kind: Secret
metadata: {name: allowed, namespace: rbac-a}
stringData: {k: v}
"#;

/// Alice's denials in rbac-b: RBAC's reason for the dangling binding.
const DANGLING: &str = r#": RBAC: clusterrole.rbac.authorization.k8s.io "missing" not found"#;

fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens.csv");
        std::fs::write(&tokens, TOKENS).unwrap();
        let s = Server::start_with(&[
            "--authorization-mode=Node,RBAC",
            "--anonymous-auth=true",
            "--token-auth-file",
            tokens.to_str().unwrap(),
        ]);
        // The server has read the file; it may go.
        drop(dir);
        s.apply(POLICY);
        wait_for_policy(&s);
        s
    })
}

/// Waits until the authorizer has indexed the last object of each rbac kind
/// in POLICY (each kind's informer applies its events in order).
fn wait_for_policy(s: &Server) {
    let checks = [
        json!({"user": "alice", "resourceAttributes": {"namespace": "rbac-b", "verb": "create", "group": "rbac.authorization.k8s.io", "resource": "roles"}}),
        json!({"user": "bob", "resourceAttributes": {"verb": "impersonate", "resource": "users", "name": "dave"}}),
        json!({"user": "x", "groups": ["qa"], "resourceAttributes": {"namespace": "rbac-b", "verb": "list", "resource": "pods"}}),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for spec in checks {
        let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec});
        loop {
            let r = s.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", Some(&review));
            if r.json()["status"]["allowed"] == true {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the policy was not indexed: {}", r.text());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Who {
    Admin,
    Alice,
    Bob,
    Anonymous,
    Node1,
    Node2,
}

impl Who {
    fn cred(self) -> Cred {
        match self {
            Who::Admin => Cred::Admin,
            Who::Alice => Cred::Token("alice-token".into()),
            Who::Bob => Cred::Token("bob-token".into()),
            Who::Anonymous => Cred::None,
            Who::Node1 => Cred::Token("n1-token".into()),
            Who::Node2 => Cred::Token("n2-token".into()),
        }
    }
}

/// What a row expects: served with this code, or upstream's 403 message.
enum Expect {
    Served(u16),
    Forbidden(String),
}
use Expect::{Forbidden, Served};

fn denied(msg: &str) -> Expect {
    Forbidden(msg.to_string())
}

struct Row {
    who: Who,
    /// Impersonation headers the request carries.
    acting: &'static [(&'static str, &'static str)],
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    expect: Expect,
}

fn row(who: Who, method: &'static str, path: &'static str, expect: Expect) -> Row {
    Row { who, acting: &[], method, path, body: None, expect }
}

/// A row sent with impersonation headers.
fn imp(
    who: Who,
    acting: &'static [(&'static str, &'static str)],
    method: &'static str,
    path: &'static str,
    expect: Expect,
) -> Row {
    Row { acting, ..row(who, method, path, expect) }
}

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "b"}})
}

fn role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name}, "rules": rules})
}

fn binding(name: &str, kind: &str, role: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
           "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]})
}

/// Upstream's escalation refusal for alice, whose rbac-b bindings include
/// the dangling one (the registry words its NotFound with the plural).
fn escalation(what: &str, missing: &[&str]) -> Expect {
    Forbidden(format!(
        "{what} is forbidden: user \"alice\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{}; resolution errors: [clusterroles.rbac.authorization.k8s.io \"missing\" not found]",
        missing.join("\n")
    ))
}

fn run(s: &Server, rows: Vec<Row>) {
    let mut failures = Vec::new();
    for r in rows {
        let body = r.body.as_ref().map(|b| serde_json::to_vec(b).unwrap());
        let content_type = if r.method == "PATCH" { "application/merge-patch+json" } else { "application/json" };
        let mut headers = vec![("Content-Type", content_type)];
        headers.extend(r.acting.iter().copied());
        let resp = s.curl(r.method, r.path, r.who.cred(), &headers, body.as_deref());
        let what = format!("{:?} {:?} {} {}", r.who, r.acting, r.method, r.path);
        match &r.expect {
            Served(code) if resp.status == *code => {}
            Served(code) => failures.push(format!("{what}: want {code}, got {}: {}", resp.status, resp.text())),
            Forbidden(msg) => {
                let got = serde_json::from_slice::<Value>(&resp.body).unwrap_or(Value::Null);
                let ok = resp.status == 403
                    && got["reason"] == "Forbidden"
                    && got["code"] == 403
                    && got["kind"] == "Status"
                    && got["message"] == msg.as_str();
                if !ok {
                    failures.push(format!("{what}: want 403 {msg:?}, got {}: {}", resp.status, resp.text()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} rows differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn decision_matrix() {
    let s = server();
    let ns_a = "/api/v1/namespaces/rbac-a";
    let mut rows = vec![
        // Namespaced reads through a Role bound to a group.
        row(Who::Alice, "GET", "/api/v1/namespaces/rbac-a/pods", Served(200)),
        row(Who::Alice, "GET", "/api/v1/namespaces/rbac-a/pods/p", Served(404)),
        row(Who::Alice, "GET", "/api/v1/namespaces/rbac-a/pods?watch=true&timeoutSeconds=1", Served(200)),
        row(
            Who::Alice,
            "GET",
            "/api/v1/pods",
            denied(
                r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" at the cluster scope"#,
            ),
        ),
        row(
            Who::Alice,
            "GET",
            "/api/v1/namespaces/rbac-b/pods/p",
            denied(&format!(
                r#"pods "p" is forbidden: User "alice" cannot get resource "pods" in API group "" in the namespace "rbac-b"{DANGLING}"#
            )),
        ),
        row(
            Who::Bob,
            "GET",
            "/api/v1/namespaces/rbac-a/pods",
            denied(
                r#"pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "rbac-a""#,
            ),
        ),
        row(
            Who::Bob,
            "GET",
            "/api/v1/namespaces/rbac-a/pods?watch=1",
            denied(
                r#"pods is forbidden: User "bob" cannot watch resource "pods" in API group "" in the namespace "rbac-a""#,
            ),
        ),
        row(
            Who::Anonymous,
            "GET",
            "/api/v1/namespaces/rbac-a/pods",
            denied(
                r#"pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group "" in the namespace "rbac-a""#,
            ),
        ),
        // Subresources: pods/log by name, */scale for any resource.
        row(Who::Alice, "GET", "/api/v1/namespaces/rbac-a/pods/p/log", Served(404)),
        row(
            Who::Alice,
            "GET",
            "/api/v1/namespaces/rbac-a/pods/p/exec",
            denied(
                r#"pods "p" is forbidden: User "alice" cannot get resource "pods/exec" in API group "" in the namespace "rbac-a""#,
            ),
        ),
        row(
            Who::Bob,
            "GET",
            "/api/v1/namespaces/rbac-a/pods/p/log",
            denied(
                r#"pods "p" is forbidden: User "bob" cannot get resource "pods/log" in API group "" in the namespace "rbac-a""#,
            ),
        ),
        row(Who::Bob, "GET", "/apis/apps/v1/namespaces/rbac-a/deployments/d/scale", Served(404)),
        row(Who::Bob, "GET", "/apis/apps/v1/namespaces/rbac-a/statefulsets/s/scale", Served(404)),
        row(
            Who::Bob,
            "GET",
            "/apis/apps/v1/namespaces/rbac-a/deployments/d",
            denied(
                r#"deployments.apps "d" is forbidden: User "bob" cannot get resource "deployments" in API group "apps" in the namespace "rbac-a""#,
            ),
        ),
        row(
            Who::Bob,
            "GET",
            "/apis/apps/v1/namespaces/rbac-b/deployments/d/scale",
            denied(
                r#"deployments.apps "d" is forbidden: User "bob" cannot get resource "deployments/scale" in API group "apps" in the namespace "rbac-b""#,
            ),
        ),
        // Named resources: only the names the rule lists, never a list.
        row(Who::Bob, "GET", "/api/v1/namespaces/rbac-a/secrets/allowed", Served(200)),
        row(
            Who::Bob,
            "GET",
            "/api/v1/namespaces/rbac-a/secrets/other",
            denied(
                r#"secrets "other" is forbidden: User "bob" cannot get resource "secrets" in API group "" in the namespace "rbac-a""#,
            ),
        ),
        row(
            Who::Bob,
            "GET",
            "/api/v1/namespaces/rbac-a/secrets",
            denied(
                r#"secrets is forbidden: User "bob" cannot list resource "secrets" in API group "" in the namespace "rbac-a""#,
            ),
        ),
        row(
            Who::Bob,
            "DELETE",
            "/api/v1/namespaces/rbac-a/secrets/allowed",
            denied(
                r#"secrets "allowed" is forbidden: User "bob" cannot delete resource "secrets" in API group "" in the namespace "rbac-a""#,
            ),
        ),
        // Cluster-scoped resources, and a namespace by name.
        row(Who::Alice, "GET", "/api/v1/nodes", Served(200)),
        row(
            Who::Alice,
            "POST",
            "/api/v1/nodes",
            denied(
                r#"nodes is forbidden: User "alice" cannot create resource "nodes" in API group "" at the cluster scope"#,
            ),
        ),
        row(
            Who::Bob,
            "GET",
            "/api/v1/nodes/n1",
            denied(
                r#"nodes "n1" is forbidden: User "bob" cannot get resource "nodes" in API group "" at the cluster scope"#,
            ),
        ),
        row(Who::Alice, "GET", ns_a, Served(200)),
        row(
            Who::Alice,
            "GET",
            "/api/v1/namespaces/rbac-b",
            denied(&format!(
                r#"namespaces "rbac-b" is forbidden: User "alice" cannot get resource "namespaces" in API group "" in the namespace "rbac-b"{DANGLING}"#
            )),
        ),
        row(
            Who::Alice,
            "GET",
            "/api/v1/namespaces",
            denied(
                r#"namespaces is forbidden: User "alice" cannot list resource "namespaces" in API group "" at the cluster scope"#,
            ),
        ),
        // Non-resource URLs, with a trailing * and without.
        row(Who::Anonymous, "GET", "/healthz", Served(200)),
        row(Who::Anonymous, "GET", "/version", Served(200)),
        row(Who::Anonymous, "GET", "/apis", denied(r#"forbidden: User "system:anonymous" cannot get path "/apis""#)),
        row(
            Who::Anonymous,
            "GET",
            "/healthz/ping",
            denied(r#"forbidden: User "system:anonymous" cannot get path "/healthz/ping""#),
        ),
        row(Who::Bob, "GET", "/apis/apps/v1", Served(200)),
        row(Who::Bob, "GET", "/api", Served(200)),
        row(Who::Alice, "GET", "/metrics", Served(200)),
        row(Who::Bob, "GET", "/metrics", denied(r#"forbidden: User "bob" cannot get path "/metrics""#)),
        row(Who::Bob, "POST", "/healthz", denied(r#"forbidden: User "bob" cannot post path "/healthz""#)),
        // The admin certificate (system:masters) is allowed everything,
        // though no binding names it.
        row(Who::Admin, "GET", "/api/v1/nodes", Served(200)),
        row(Who::Admin, "GET", "/metrics", Served(200)),
        row(Who::Admin, "GET", "/api/v1/namespaces/rbac-b/secrets", Served(200)),
    ];
    // Writes: create, update, patch, delete, deletecollection.
    let cms = "/api/v1/namespaces/rbac-a/configmaps";
    rows.extend([
        Row { body: Some(cm("m1")), ..row(Who::Alice, "POST", cms, Served(201)) },
        Row { body: Some(cm("m1")), ..row(Who::Alice, "PUT", "/api/v1/namespaces/rbac-a/configmaps/m1", Served(200)) },
        Row {
            body: Some(json!({"data": {"c": "d"}})),
            ..row(Who::Alice, "PATCH", "/api/v1/namespaces/rbac-a/configmaps/m1", Served(200))
        },
        Row {
            body: Some(json!({"data": {"c": "d"}})),
            ..row(
                Who::Bob,
                "PATCH",
                "/api/v1/namespaces/rbac-a/configmaps/m1",
                denied(r#"configmaps "m1" is forbidden: User "bob" cannot patch resource "configmaps" in API group "" in the namespace "rbac-a""#),
            )
        },
        Row {
            body: Some(cm("m1")),
            ..row(
                Who::Bob,
                "PUT",
                "/api/v1/namespaces/rbac-a/configmaps/m1",
                denied(r#"configmaps "m1" is forbidden: User "bob" cannot update resource "configmaps" in API group "" in the namespace "rbac-a""#),
            )
        },
        Row {
            body: Some(cm("m2")),
            ..row(
                Who::Alice,
                "POST",
                "/api/v1/namespaces/rbac-b/configmaps",
                denied(&format!(
                    r#"configmaps is forbidden: User "alice" cannot create resource "configmaps" in API group "" in the namespace "rbac-b"{DANGLING}"#
                )),
            )
        },
        row(
            Who::Bob,
            "DELETE",
            "/api/v1/namespaces/rbac-a/configmaps/m1",
            denied(r#"configmaps "m1" is forbidden: User "bob" cannot delete resource "configmaps" in API group "" in the namespace "rbac-a""#),
        ),
        row(Who::Alice, "DELETE", "/api/v1/namespaces/rbac-a/configmaps/m1", Served(200)),
        row(
            Who::Bob,
            "DELETE",
            cms,
            denied(r#"configmaps is forbidden: User "bob" cannot deletecollection resource "configmaps" in API group "" in the namespace "rbac-a""#),
        ),
        row(Who::Alice, "DELETE", "/api/v1/namespaces/rbac-a/configmaps?labelSelector=none%3Dnone", Served(200)),
        Row {
            body: Some(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "allowed"}, "stringData": {"k": "w"}})),
            ..row(Who::Bob, "PUT", "/api/v1/namespaces/rbac-a/secrets/allowed", Served(200))
        },
    ]);
    // Impersonation: each user, group, uid and extra is authorized on its own.
    rows.extend([
        imp(Who::Bob, &[("Impersonate-User", "dave"), ("Impersonate-Group", "qa")], "GET", "/api/v1/namespaces/rbac-b/pods", Served(200)),
        imp(
            Who::Bob,
            &[("Impersonate-User", "dave")],
            "GET",
            "/api/v1/namespaces/rbac-b/pods",
            denied(r#"pods is forbidden: User "dave" cannot list resource "pods" in API group "" in the namespace "rbac-b""#),
        ),
        imp(
            Who::Bob,
            &[("Impersonate-User", "eve")],
            "GET",
            "/api/v1/namespaces/rbac-b/pods",
            denied(r#"users "eve" is forbidden: User "bob" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        ),
        imp(
            Who::Bob,
            &[("Impersonate-User", "dave"), ("Impersonate-Group", "admins")],
            "GET",
            "/api/v1/namespaces/rbac-b/pods",
            denied(r#"groups "admins" is forbidden: User "bob" cannot impersonate resource "groups" in API group "" at the cluster scope"#),
        ),
        imp(
            Who::Bob,
            &[("Impersonate-User", "dave"), ("Impersonate-Uid", "u1")],
            "GET",
            "/api/v1/namespaces/rbac-b/pods",
            denied(r#"uids.authentication.k8s.io "u1" is forbidden: User "bob" cannot impersonate resource "uids" in API group "authentication.k8s.io" at the cluster scope"#),
        ),
        imp(
            Who::Bob,
            &[("Impersonate-User", "dave"), ("Impersonate-Extra-Scopes", "view")],
            "GET",
            "/api/v1/namespaces/rbac-b/pods",
            denied(r#"userextras.authentication.k8s.io "view" is forbidden: User "bob" cannot impersonate resource "userextras/scopes" in API group "authentication.k8s.io" at the cluster scope"#),
        ),
        imp(
            Who::Bob,
            &[("Impersonate-User", "system:serviceaccount:rbac-a:robot")],
            "GET",
            "/api/v1/namespaces/rbac-a/pods",
            denied(r#"serviceaccounts "robot" is forbidden: User "bob" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "rbac-a""#),
        ),
        imp(
            Who::Alice,
            &[("Impersonate-User", "dave")],
            "GET",
            "/api/v1/namespaces/rbac-b/pods",
            denied(r#"users "dave" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        ),
        imp(
            Who::Anonymous,
            &[("Impersonate-User", "dave")],
            "GET",
            "/api/v1/namespaces/rbac-b/pods",
            denied(r#"users "dave" is forbidden: User "system:anonymous" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        ),
        // The admin may impersonate anyone; a ServiceAccount brings its groups,
        // and a RoleBinding's ServiceAccount subject defaults to its namespace.
        imp(Who::Admin, &[("Impersonate-User", "system:serviceaccount:rbac-a:robot")], "GET", "/api/v1/namespaces/rbac-a/pods", Served(200)),
        imp(
            Who::Admin,
            &[("Impersonate-User", "system:serviceaccount:rbac-b:robot")],
            "GET",
            "/api/v1/namespaces/rbac-a/pods",
            denied(r#"pods is forbidden: User "system:serviceaccount:rbac-b:robot" cannot list resource "pods" in API group "" in the namespace "rbac-a""#),
        ),
        imp(
            Who::Admin,
            &[("Impersonate-User", "dave"), ("Impersonate-Group", "qa")],
            "DELETE",
            "/api/v1/namespaces/rbac-b/pods/x",
            denied(r#"pods "x" is forbidden: User "dave" cannot delete resource "pods" in API group "" in the namespace "rbac-b""#),
        ),
    ]);
    // escalate and bind: writing roles and bindings in rbac-b.
    let roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/rbac-b/roles";
    let bindings = "/apis/rbac.authorization.k8s.io/v1/namespaces/rbac-b/rolebindings";
    let secrets_all = json!([{"verbs": ["*"], "apiGroups": [""], "resources": ["secrets"]}]);
    rows.extend([
        // `escalate` on the role by name lets alice grant what she lacks.
        Row { body: Some(role("escalated", secrets_all.clone())), ..row(Who::Alice, "POST", roles, Served(201)) },
        Row {
            body: Some(role("sneaky", json!([{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["secrets", "pods"]}]))),
            ..row(
                Who::Alice,
                "POST",
                roles,
                escalation(
                    r#"roles.rbac.authorization.k8s.io "sneaky""#,
                    &[
                        r#"{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}"#,
                        r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}"#,
                    ],
                ),
            )
        },
        // Rules she holds (node-viewer's, cluster-wide) she may grant.
        Row {
            body: Some(role("held", json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["nodes"]}]))),
            ..row(Who::Alice, "POST", roles, Served(201))
        },
        Row {
            body: Some(role("held", secrets_all.clone())),
            ..row(
                Who::Alice,
                "PUT",
                "/apis/rbac.authorization.k8s.io/v1/namespaces/rbac-b/roles/held",
                escalation(
                    r#"roles.rbac.authorization.k8s.io "held""#,
                    &[r#"{APIGroups:[""], Resources:["secrets"], Verbs:["*"]}"#],
                ),
            )
        },
        // `bind` on qa-pods, coverage of node-viewer, neither for cm-editor
        // (hers only in rbac-a).
        Row { body: Some(binding("qa", "ClusterRole", "qa-pods")), ..row(Who::Alice, "POST", bindings, Served(201)) },
        Row { body: Some(binding("nodes", "ClusterRole", "node-viewer")), ..row(Who::Alice, "POST", bindings, Served(201)) },
        Row {
            body: Some(binding("cm", "ClusterRole", "cm-editor")),
            ..row(
                Who::Alice,
                "POST",
                bindings,
                escalation(
                    r#"rolebindings.rbac.authorization.k8s.io "cm""#,
                    &[r#"{APIGroups:[""], Resources:["configmaps"], Verbs:["create" "update" "patch" "delete" "deletecollection" "get"]}"#],
                ),
            )
        },
        Row {
            body: Some(binding("ghost", "Role", "ghost")),
            ..row(Who::Alice, "POST", bindings, Served(404))
        },
        Row {
            body: Some(role("bobs", json!([]))),
            ..row(
                Who::Bob,
                "POST",
                roles,
                denied(r#"roles.rbac.authorization.k8s.io is forbidden: User "bob" cannot create resource "roles" in API group "rbac.authorization.k8s.io" in the namespace "rbac-b""#),
            )
        },
        // system:masters may grant anything.
        Row { body: Some(role("from-admin", secrets_all)), ..row(Who::Admin, "POST", roles, Served(201)) },
    ]);
    run(s, rows);
    // Refused writes left nothing behind.
    for name in ["sneaky", "cm", "ghost"] {
        let kind = if name == "sneaky" { "role" } else { "rolebinding" };
        s.kubectl_err(&["get", kind, name, "-n", "rbac-b"], None, &["NotFound"]);
    }
    // The binding alice made through `bind` now lets bob list pods in rbac-b.
    let r = s.curl("GET", "/api/v1/namespaces/rbac-b/pods", Who::Bob.cred(), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A kubeconfig for a token user (the admin's cluster, a bearer token).
fn token_kubeconfig(s: &Server, name: &str, token: &str) -> String {
    let (ca, _, _) = s.admin_pem_paths();
    let body = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: u\n  user: {{token: {token}}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
        s.url,
        ca.display()
    );
    s.write_file(&format!("{name}.kubeconfig"), body).to_str().unwrap().to_string()
}

#[test]
fn kubectl_auth_can_i() {
    let s = server();
    let alice = token_kubeconfig(s, "alice", "alice-token");
    let as_alice = |args: &[&str]| s.run_env(args, None, &[("KUBECONFIG", &alice)]);
    for (args, code, out) in [
        (vec!["auth", "can-i", "list", "pods", "-n", "rbac-a"], 0, "yes\n"),
        (vec!["auth", "can-i", "get", "pods", "--subresource=log", "-n", "rbac-a"], 0, "yes\n"),
        (vec!["auth", "can-i", "create", "pods", "-n", "rbac-a"], 1, "no\n"),
        (
            vec!["auth", "can-i", "create", "pods", "-n", "rbac-b"],
            1,
            "no - RBAC: clusterrole.rbac.authorization.k8s.io \"missing\" not found\n",
        ),
        (vec!["auth", "can-i", "get", "namespaces/rbac-a"], 0, "yes\n"),
        (vec!["auth", "can-i", "get", "/metrics"], 0, "yes\n"),
        (vec!["auth", "can-i", "escalate", "roles/escalated", "-n", "rbac-b"], 0, "yes\n"),
        (vec!["auth", "can-i", "bind", "clusterroles/qa-pods", "-n", "rbac-b"], 0, "yes\n"),
        (
            vec!["auth", "can-i", "bind", "clusterroles/cm-editor", "-n", "rbac-b"],
            1,
            "no - RBAC: clusterrole.rbac.authorization.k8s.io \"missing\" not found\n",
        ),
    ] {
        let r = as_alice(&args);
        assert_eq!((r.code, r.stdout.as_str()), (code, out), "{args:?}: {r:?}");
    }
    // --as: the admin asks as bob, whose rules name one secret.
    for (args, code, out) in [
        (vec!["auth", "can-i", "get", "secrets/allowed", "-n", "rbac-a", "--as", "bob"], 0, "yes\n"),
        (vec!["auth", "can-i", "get", "secrets/other", "-n", "rbac-a", "--as", "bob"], 1, "no\n"),
        (vec!["auth", "can-i", "list", "pods", "-n", "rbac-b", "--as", "dave", "--as-group", "qa"], 0, "yes\n"),
        (vec!["auth", "can-i", "list", "pods", "-n", "rbac-b", "--as", "dave"], 1, "no\n"),
        (vec!["auth", "can-i", "delete", "nodes"], 0, "yes\n"),
    ] {
        let r = s.run(&args, None);
        assert_eq!((r.code, r.stdout.as_str()), (code, out), "{args:?}: {r:?}");
    }
    // bob may not impersonate eve: kubectl shows upstream's refusal.
    let bob = token_kubeconfig(s, "bob", "bob-token");
    let r = s.run_env(&["auth", "can-i", "list", "pods", "--as", "eve"], None, &[("KUBECONFIG", &bob)]);
    assert!(
        r.code != 0
            && r.stderr.contains(r#"users "eve" is forbidden: User "bob" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{r:?}"
    );
    // --list: every rule alice holds in rbac-a, through every binding.
    let r = as_alice(&["auth", "can-i", "--list", "-n", "rbac-a"]);
    assert_eq!(r.code, 0, "{r:?}");
    let rows: Vec<(String, String, String, String)> = e2e::table(&r.stdout)
        .into_iter()
        .map(|m| {
            (m["Resources"].clone(), m["Non-Resource URLs"].clone(), m["Resource Names"].clone(), m["Verbs"].clone())
        })
        .collect();
    let want = |res: &str, urls: &str, names: &str, verbs: &str| {
        let row = (res.to_string(), urls.to_string(), names.to_string(), verbs.to_string());
        assert!(rows.contains(&row), "--list lacks {row:?}:\n{}", r.stdout);
    };
    want("pods", "[]", "[]", "[get list watch]");
    want("pods/log", "[]", "[]", "[get]");
    want("configmaps", "[]", "[]", "[create update patch delete deletecollection get]");
    want("nodes", "[]", "[]", "[get list watch]");
    want("namespaces", "[]", "[rbac-a]", "[get]");
    want("", "[/metrics]", "[]", "[get]");
    want("", "[/healthz]", "[]", "[get]");
    assert!(!r.stdout.contains("secrets"), "bob's rules are not alice's:\n{}", r.stdout);
    // In rbac-b the dangling binding is reported, the rest still listed.
    let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": "rbac-b"}});
    let r = s.curl(
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        Who::Alice.cred(),
        &[("Content-Type", "application/json")],
        Some(review.to_string().as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let status = &r.json()["status"];
    assert_eq!(status["incomplete"], false);
    assert_eq!(status["evaluationError"], "clusterrole.rbac.authorization.k8s.io \"missing\" not found");
    assert!(status["resourceRules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["resources"] == json!(["roles", "rolebindings"])));
}

#[test]
fn subject_access_reviews_answer_for_the_subject_named() {
    let s = server();
    let cluster = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
    let local = "/apis/authorization.k8s.io/v1/namespaces/rbac-a/localsubjectaccessreviews";
    let allowed_by = |source: &str| json!({"allowed": true, "reason": format!("RBAC: allowed by {source}")});
    for (path, spec, want) in [
        (
            cluster,
            json!({"user": "carol", "groups": ["devs"], "resourceAttributes": {"namespace": "rbac-a", "verb": "list", "resource": "pods"}}),
            allowed_by(r#"RoleBinding "devs-read/rbac-a" of Role "pod-reader" to Group "devs""#),
        ),
        (
            cluster,
            json!({"user": "alice", "nonResourceAttributes": {"verb": "get", "path": "/metrics"}}),
            allowed_by(r#"ClusterRoleBinding "alice-nodes" of ClusterRole "node-viewer" to User "alice""#),
        ),
        (
            cluster,
            json!({"user": "alice", "groups": ["devs"], "resourceAttributes": {"namespace": "rbac-b", "verb": "get", "resource": "pods"}}),
            json!({"allowed": false, "reason": "RBAC: clusterrole.rbac.authorization.k8s.io \"missing\" not found"}),
        ),
        // The spec's user is all there is: no system:authenticated is added.
        (
            cluster,
            json!({"user": "bob", "nonResourceAttributes": {"verb": "get", "path": "/healthz"}}),
            json!({"allowed": false}),
        ),
        (
            local,
            json!({"user": "system:serviceaccount:rbac-a:robot", "resourceAttributes": {"namespace": "rbac-a", "verb": "watch", "resource": "pods"}}),
            allowed_by(r#"RoleBinding "devs-read/rbac-a" of Role "pod-reader" to ServiceAccount "robot/rbac-a""#),
        ),
    ] {
        let body = if path == local {
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview", "metadata": {"namespace": "rbac-a"}, "spec": spec})
        } else {
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec})
        };
        let r = s.request("POST", path, Some(&body));
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["status"], want, "{spec}");
    }

    // The selectors a review names reach the authorizer (the Node
    // authorizer lets a kubelet list only its own pods); what cannot be
    // read is said in evaluationError, and narrows nothing.
    let node_lists = |selector: Value| {
        let spec = json!({"user": "system:node:n1", "groups": ["system:nodes"],
            "resourceAttributes": {"verb": "list", "resource": "pods", "fieldSelector": selector}});
        let body = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec});
        s.request("POST", cluster, Some(&body))
    };
    let only_own = "can only list/watch pods with spec.nodeName field selector";
    for (selector, allowed, error) in [
        (json!({"rawSelector": "spec.nodeName=n1"}), true, None),
        (json!({"requirements": [{"key": "spec.nodeName", "operator": "In", "values": ["n1"]}]}), true, None),
        (json!({"rawSelector": "spec.nodeName=n2"}), false, None),
        (
            json!({"rawSelector": "spec.nodeName"}),
            false,
            Some("spec.resourceAttributes.fieldSelector ignored due to parse error"),
        ),
        (
            json!({"requirements": [{"key": "spec.nodeName", "operator": "In", "values": ["n1"]}, {"key": "x", "operator": "Exists"}]}),
            true,
            Some("spec.resourceAttributes.fieldSelector partially ignored due to parse error"),
        ),
    ] {
        let r = node_lists(selector.clone());
        assert_eq!(r.status, 201, "{}", r.text());
        let status = &r.json()["status"];
        assert_eq!(status["allowed"], allowed, "{selector}: {status}");
        assert_eq!(status["evaluationError"].as_str(), error, "{selector}: {status}");
        if !allowed {
            assert!(status["reason"].as_str().is_some_and(|r| r.contains(only_own)), "{selector}: {status}");
        }
    }
    let both =
        node_lists(json!({"rawSelector": "a=b", "requirements": [{"key": "a", "operator": "In", "values": ["b"]}]}));
    let refused = both.assert_status(422, "Invalid");
    assert_eq!(
        refused["details"]["causes"],
        json!([{"reason": "FieldValueInvalid", "message": "Invalid value: \"a=b\": may not specified at the same time as requirements",
            "field": "spec.resourceAttributes.fieldSelector.rawSelector"}])
    );
}

/// The kubelets' objects: a pod bound to n1 using a secret, a configmap, a
/// claim (bound to a PersistentVolume) and a ServiceAccount, and objects no
/// pod uses.
const NODE_OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: rbac-node}
---
apiVersion: v1
kind: Secret
metadata: {name: used, namespace: rbac-node}
stringData: {k: v}
---
apiVersion: v1
kind: Secret
metadata: {name: unused, namespace: rbac-node}
stringData: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: rbac-node}
data: {k: v}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: runner, namespace: rbac-node}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: rbac-node-pv}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /tmp/pv}
  claimRef: {namespace: rbac-node, name: data}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: rbac-node}
spec:
  nodeName: n1
  serviceAccountName: runner
  containers:
  - name: c
    image: nginx
    env:
    - name: K
      valueFrom: {configMapKeyRef: {name: settings, key: k}}
  volumes:
  - {name: s, secret: {secretName: used}}
  - {name: d, persistentVolumeClaim: {claimName: data}}
"#;

#[test]
fn node_authorizer_limits_kubelets_to_their_pods() {
    let s = server();
    s.apply(NODE_OBJECTS);
    let ns = "/api/v1/namespaces/rbac-node";
    let as_node = |who: Who, method: &'static str, path: String, expect: Expect| row(who, method, leak(path), expect);
    let n1 = |method: &'static str, path: String, expect: Expect| as_node(Who::Node1, method, path, expect);
    let no_relation = |node: &str| format!(": no relationship found between node '{node}' and this object");
    // The informers report the pod soon after its write.
    e2e::eventually("the pod reaches the node authorizer", || {
        s.curl("GET", &format!("{ns}/secrets/used"), Who::Node1.cred(), &[], None).status == 200
    });
    let token_request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}});
    run(
        s,
        vec![
            n1("GET", format!("{ns}/secrets/used"), Served(200)),
            // A single-object list or watch names the object by metadata.name.
            n1("GET", format!("{ns}/secrets?fieldSelector=metadata.name%3Dused"), Served(200)),
            n1("GET", format!("{ns}/configmaps/settings"), Served(200)),
            n1("GET", format!("{ns}/persistentvolumeclaims/data"), Served(404)),
            n1("GET", "/api/v1/persistentvolumes/rbac-node-pv".into(), Served(200)),
            Row {
                body: Some(token_request.clone()),
                ..n1("POST", format!("{ns}/serviceaccounts/runner/token"), Served(201))
            },
            // Its own pods by spec.nodeName; the rest by the system:node rules.
            n1("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1".into(), Served(200)),
            n1("GET", format!("{ns}/pods/web"), Served(200)),
            n1("GET", "/api/v1/services".into(), Served(200)),
            n1("GET", "/api/v1/nodes/n1".into(), Served(404)),
            as_node(
                Who::Node1,
                "GET",
                format!("{ns}/secrets/unused"),
                denied(&format!(
                    r#"secrets "unused" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the namespace "rbac-node"{}"#,
                    no_relation("n1")
                )),
            ),
            as_node(
                Who::Node2,
                "GET",
                format!("{ns}/secrets/used"),
                denied(&format!(
                    r#"secrets "used" is forbidden: User "system:node:n2" cannot get resource "secrets" in API group "" in the namespace "rbac-node"{}"#,
                    no_relation("n2")
                )),
            ),
            as_node(
                Who::Node2,
                "GET",
                "/api/v1/persistentvolumes/rbac-node-pv".into(),
                denied(&format!(
                    r#"persistentvolumes "rbac-node-pv" is forbidden: User "system:node:n2" cannot get resource "persistentvolumes" in API group "" at the cluster scope{}"#,
                    no_relation("n2")
                )),
            ),
            as_node(
                Who::Node1,
                "GET",
                format!("{ns}/secrets"),
                denied(
                    r#"secrets is forbidden: User "system:node:n1" cannot list resource "secrets" in API group "" in the namespace "rbac-node": No Object name found"#,
                ),
            ),
            as_node(
                Who::Node1,
                "DELETE",
                format!("{ns}/configmaps/settings"),
                denied(
                    r#"configmaps "settings" is forbidden: User "system:node:n1" cannot delete resource "configmaps" in API group "" in the namespace "rbac-node": can only read resources of this type"#,
                ),
            ),
            as_node(
                Who::Node1,
                "GET",
                "/api/v1/pods".into(),
                denied(
                    r#"pods is forbidden: User "system:node:n1" cannot list resource "pods" in API group "" at the cluster scope: can only list/watch pods with spec.nodeName field selector"#,
                ),
            ),
            as_node(
                Who::Node1,
                "GET",
                "/api/v1/nodes/n2".into(),
                denied(
                    r#"nodes "n2" is forbidden: User "system:node:n1" cannot get resource "nodes" in API group "" at the cluster scope: node 'n1' cannot read 'n2', only its own Node object"#,
                ),
            ),
            Row {
                body: Some(token_request),
                ..as_node(
                    Who::Node2,
                    "POST",
                    format!("{ns}/serviceaccounts/runner/token"),
                    denied(&format!(
                        r#"serviceaccounts "runner" is forbidden: User "system:node:n2" cannot create resource "serviceaccounts/token" in API group "" in the namespace "rbac-node"{}"#,
                        no_relation("n2")
                    )),
                )
            },
            as_node(
                Who::Node1,
                "DELETE",
                format!("{ns}/services/x"),
                denied(
                    r#"services "x" is forbidden: User "system:node:n1" cannot delete resource "services" in API group "" in the namespace "rbac-node""#,
                ),
            ),
        ],
    );
    // A kubelet's certificate request records the kubelet, whatever it claims.
    let kc = s.user_kubeconfig("n1", "{token: n1-token}");
    let key = rcgen::KeyPair::generate().unwrap();
    let request =
        rcgen::CertificateParams::new(vec!["system:node:n1".into()]).unwrap().serialize_request(&key).unwrap();
    let request = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, request.pem().unwrap());
    let csr = format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: node-n1}}\nspec:\n  request: {request}\n  signerName: kubernetes.io/kube-apiserver-client-kubelet\n  usages: [digital signature, client auth]\n  username: system:admin\n  groups: [system:masters]\n"
    );
    let out = s.run_env(&["create", "-f", "-"], Some(&csr), &[("KUBECONFIG", &kc)]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "certificatesigningrequest.certificates.k8s.io/node-n1 created\n"),
        "{out:?}"
    );
    let spec = s.request("GET", "/apis/certificates.k8s.io/v1/certificatesigningrequests/node-n1", None).json()["spec"]
        .clone();
    assert_eq!(
        (&spec["username"], &spec["uid"], &spec["groups"]),
        (&json!("system:node:n1"), &json!("n1"), &json!(["system:nodes", "system:authenticated"])),
        "{spec}"
    );
    // Once the pod is gone, so is the node's access to what it used.
    s.request("DELETE", &format!("{ns}/pods/web?gracePeriodSeconds=0"), None);
    e2e::eventually("the pod's deletion reaches the node authorizer", || {
        s.curl("GET", &format!("{ns}/secrets/used"), Who::Node1.cred(), &[], None).status == 403
    });
    let r = s.curl("GET", "/api/v1/persistentvolumes/rbac-node-pv", Who::Node1.cred(), &[], None);
    assert_eq!(r.status, 403, "{}", r.text());
}

/// A row's path lives as long as the test.
fn leak(path: String) -> &'static str {
    Box::leak(path.into_boxed_str())
}

#[test]
fn unknown_modes_are_refused_at_start() {
    for (mode, msg) in [
        ("Foo", r#"authorization-mode "Foo" is not a valid mode"#),
        ("RBAC,RBAC", r#"authorization-mode ["RBAC" "RBAC"] has mode specified more than once"#),
        ("Webhook", "authorization-mode Webhook's authorization config file not passed"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(e2e::server_binary())
            .args(["--secure-port", "0", "--authorization-mode", mode])
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(msg), "{mode}: {stderr}");
    }
}
