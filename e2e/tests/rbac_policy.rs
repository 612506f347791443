//! Upstream's default RBAC policy in a fresh server, against the golden files
//! in ../shared/facts/rbac-bootstrap-1.33/ (and, for what they lack, the
//! repository's generated kube-core-server/data/rbac-bootstrap.json); the
//! ClusterRole aggregation controller; the reconciliation at start that
//! honours the autoupdate annotation (across a restart on the same data dir);
//! and `kubectl auth reconcile`. One server, one test, steps in order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::Server;
use serde_json::{json, Value};

const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

fn name(obj: &Value) -> String {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    if ns.is_empty() {
        name.to_string()
    } else {
        format!("{ns}/{name}")
    }
}

/// What the policy decides of an object; an empty list and null as absent.
fn policy_fields(obj: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in ["rules", "subjects", "roleRef", "aggregationRule"] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(v) => {
                out.insert(key.into(), v.clone());
            }
        }
    }
    for key in ["labels", "annotations"] {
        out.insert(key.into(), obj["metadata"].get(key).cloned().unwrap_or(json!({})));
    }
    Value::Object(out)
}

fn by_name(items: &[Value]) -> BTreeMap<String, Value> {
    items.iter().map(|o| (name(o), o.clone())).collect()
}

fn live(s: &Server, resource: &str) -> BTreeMap<String, Value> {
    let list = s.kubectl_json(&["get", resource, "-A"]);
    by_name(list["items"].as_array().expect("items"))
}

fn facts(file: &str) -> Vec<Value> {
    let path = e2e::workspace_root().join("../shared/facts/rbac-bootstrap-1.33").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value = serde_yaml::from_str(&text).expect("golden YAML");
    doc["items"].as_array().cloned().unwrap_or_default()
}

fn generated() -> Value {
    let path = e2e::workspace_root().join("kube-core-server/data/rbac-bootstrap.json");
    serde_json::from_slice(&std::fs::read(path).expect("rbac-bootstrap.json")).expect("json")
}

fn is_aggregated(obj: &Value) -> bool {
    obj.get("aggregationRule").is_some_and(|r| !r.is_null())
}

/// Polls `check` (which returns why it is not yet satisfied) for a few seconds.
#[track_caller]
fn eventually(what: &str, mut check: impl FnMut() -> Result<(), String>) -> Duration {
    let start = Instant::now();
    loop {
        match check() {
            Ok(()) => return start.elapsed(),
            Err(why) if start.elapsed() > Duration::from_secs(5) => panic!("{what}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The rules an aggregated role should hold, from the expected objects:
/// for each selector, matching roles by name, their rules, duplicates out.
fn expected_aggregation(role: &Value, all: &BTreeMap<String, Value>) -> Vec<Value> {
    let mut rules: Vec<Value> = Vec::new();
    for sel in role["aggregationRule"]["clusterRoleSelectors"].as_array().into_iter().flatten() {
        let wanted = sel["matchLabels"].as_object().cloned().unwrap_or_default();
        for (n, other) in all {
            let labels = other["metadata"]["labels"].as_object().cloned().unwrap_or_default();
            if *n == name(role) || !wanted.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                continue;
            }
            let theirs = if is_aggregated(other) {
                expected_aggregation(other, all)
            } else {
                other["rules"].as_array().cloned().unwrap_or_default()
            };
            for r in theirs {
                if !rules.contains(&r) {
                    rules.push(r);
                }
            }
        }
    }
    rules
}

/// Every default object equals its expected form; aggregated roles hold
/// the union of what they select.
fn defaults_equal_golden(s: &Server) {
    let data = generated();
    let list = |key: &str| data[key].as_array().cloned().unwrap_or_default();
    // The facts, as a default 1.33 server has them (see SOURCE.md and
    // kube-core-server/src/rbac/policy.rs for the two post-1.33 lines).
    let mut golden_roles = facts("cluster-roles.yaml");
    for r in golden_roles.iter_mut().filter(|r| name(r) == "system:monitoring") {
        r["rules"].as_array_mut().expect("rules").retain(|rule| rule["resources"] != json!(["nodes/metrics"]));
    }
    let golden_bindings: Vec<Value> = facts("controller-role-bindings.yaml")
        .into_iter()
        .filter(|b| name(b) != "system:controller:podcertificaterequestcleaner")
        .collect();
    let cases = [
        ("clusterroles", list("clusterRoles"), golden_roles),
        ("clusterrolebindings", list("clusterRoleBindings"), golden_bindings),
        ("roles", list("roles"), facts("namespace-roles.yaml")),
        ("rolebindings", list("roleBindings"), facts("namespace-role-bindings.yaml")),
    ];
    for (resource, expected, golden) in cases {
        let expected = by_name(&expected);
        for g in &golden {
            assert_eq!(policy_fields(&expected[&name(g)]), policy_fields(g), "{resource} {} in the data file", name(g));
        }
        // A fresh server holds exactly the defaults.
        let got = live(s, resource);
        assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "{resource}");
        for (n, want) in &expected {
            if is_aggregated(want) {
                continue;
            }
            assert_eq!(policy_fields(&got[n]), policy_fields(want), "{resource} {n}");
        }
    }
    let expected = by_name(&list("clusterRoles"));
    let took = eventually("aggregated roles", || {
        let got = live(s, "clusterroles");
        for (n, want) in expected.iter().filter(|(_, r)| is_aggregated(r)) {
            let mut fields = policy_fields(want);
            fields["rules"] = json!(expected_aggregation(want, &expected));
            if policy_fields(&got[n]) != fields {
                return Err(format!("{n}: {} != {}", policy_fields(&got[n]), fields));
            }
        }
        Ok(())
    });
    assert!(took < Duration::from_secs(2), "aggregation took {took:?}");
}

fn rules_of(s: &Server, role: &str) -> Vec<Value> {
    let obj = s.kubectl_json(&["get", "clusterrole", role]);
    obj["rules"].as_array().cloned().unwrap_or_default()
}

/// A CRD's role labelled aggregate-to-edit shows up in edit and admin
/// (which aggregates edit), not view; follows updates and deletion.
fn aggregation_follows_labelled_roles(s: &Server) {
    let widgets = |verbs: Value| json!({"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": verbs});
    let role = |verbs: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "widgets-edit", "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
               "rules": [widgets(verbs)]})
        .to_string()
    };
    let holds = |rule: Value, want: [bool; 3]| {
        move || {
            let got = ["edit", "admin", "view"].map(|r| rules_of(s, r).contains(&rule));
            if got == want {
                Ok(())
            } else {
                Err(format!("edit/admin/view hold {rule}: {got:?}, want {want:?}"))
            }
        }
    };
    let before = rules_of(s, "edit").len();
    s.kubectl_stdin(&["create", "-f", "-"], Some(&role(json!(["get", "list"]))));
    let took = eventually("created", holds(widgets(json!(["get", "list"])), [true, true, false]));
    assert!(took < Duration::from_secs(2), "aggregation took {took:?}");
    assert_eq!(rules_of(s, "edit").len(), before + 1);

    s.kubectl_stdin(&["replace", "-f", "-"], Some(&role(json!(["get", "list", "create"]))));
    eventually("updated", holds(widgets(json!(["get", "list", "create"])), [true, true, false]));
    for r in ["edit", "admin"] {
        assert!(!rules_of(s, r).contains(&widgets(json!(["get", "list"]))), "{r} kept the old rule");
    }
    let managers = s.kubectl_json(&["get", "clusterrole", "edit", "--show-managed-fields"]);
    let managers: Vec<&str> = managers["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"clusterrole-aggregation-controller"), "{managers:?}");

    s.kubectl(&["delete", "clusterrole", "widgets-edit"]);
    eventually("deleted", holds(widgets(json!(["get", "list", "create"])), [false, false, false]));
    assert_eq!(rules_of(s, "edit").len(), before);
}

/// `kubectl auth reconcile` creates, then unions rules into, roles and bindings.
fn kubectl_auth_reconcile(s: &Server) {
    let file = |verbs: &str, subject: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: reader, namespace: default}}\n\
             rules:\n- {{apiGroups: [\"\"], resources: [pods], verbs: [{verbs}]}}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: reader, namespace: default}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}}\n\
             subjects:\n- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {subject}}}\n"
        )
    };
    for (verbs, subject) in [("get", "alice"), ("list", "bob")] {
        let out = s.kubectl_stdin(&["auth", "reconcile", "-f", "-"], Some(&file(verbs, subject)));
        assert!(out.contains("role.rbac.authorization.k8s.io/reader reconciled"), "{out}");
        assert!(out.contains("rolebinding.rbac.authorization.k8s.io/reader reconciled"), "{out}");
    }
    let role = s.kubectl_json(&["get", "role", "reader", "-n", "default"]);
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
               {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}])
    );
    let binding = s.kubectl_json(&["get", "rolebinding", "reader", "-n", "default"]);
    let subjects: Vec<&str> =
        binding["subjects"].as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(subjects, ["alice", "bob"]);
}

fn edit(s: &Server, resource: &str, obj_name: &str, change: impl FnOnce(&mut Value)) {
    let mut obj = s.kubectl_json(&["get", resource, obj_name]);
    change(&mut obj);
    s.kubectl_stdin(&["replace", "-f", "-"], Some(&obj.to_string()));
}

/// After a restart, default objects marked autoupdate "true" regain what they
/// lost (keeping what was added), deleted ones come back, and objects marked
/// "false" are left as they are.
fn restart_reconciles(s: &mut Server) {
    let expected = by_name(&generated()["clusterRoles"].as_array().cloned().unwrap_or_default());
    let extra = json!({"apiGroups": ["example.com"], "resources": ["gadgets"], "verbs": ["get"]});
    edit(s, "clusterrole", "system:auth-delegator", |o| {
        let rules = o["rules"].as_array_mut().expect("rules");
        rules.truncate(1);
        rules.push(extra.clone());
    });
    let nodeclient = "system:certificates.k8s.io:certificatesigningrequests:nodeclient";
    edit(s, "clusterrole", nodeclient, |o| {
        o["metadata"]["annotations"][AUTOUPDATE] = json!("false");
        o["rules"] = json!([]);
    });
    edit(s, "clusterrolebinding", "system:public-info-viewer", |o| {
        o["subjects"] = json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"},
                               {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}]);
    });
    s.kubectl(&["delete", "clusterrole", "system:heapster"]);
    s.kubectl(&["delete", "role", "-n", "kube-public", "system:controller:bootstrap-signer"]);

    s.restart();

    let golden = |n: &str| expected[n]["rules"].as_array().cloned().unwrap_or_default();
    let delegator = golden("system:auth-delegator");
    assert_eq!(rules_of(s, "system:auth-delegator"), vec![delegator[0].clone(), extra, delegator[1].clone()]);
    assert_eq!(rules_of(s, "system:heapster"), golden("system:heapster"));
    let protected = s.kubectl_json(&["get", "clusterrole", nodeclient]);
    assert_eq!(protected["metadata"]["annotations"][AUTOUPDATE], "false");
    assert!(protected["rules"].as_array().is_none_or(|r| r.is_empty()), "{protected}");
    let viewer = s.kubectl_json(&["get", "clusterrolebinding", "system:public-info-viewer"]);
    let subjects: Vec<&str> =
        viewer["subjects"].as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(subjects, ["system:authenticated", "carol", "system:unauthenticated"]);
    let signer = s.kubectl_json(&["get", "role", "-n", "kube-public", "system:controller:bootstrap-signer"]);
    assert_eq!(signer["metadata"]["labels"]["kubernetes.io/bootstrapping"], "rbac-defaults");
    // The aggregated roles are whole again after the restart too.
    eventually("edit after restart", || {
        let want = expected_aggregation(&expected["edit"], &expected);
        if rules_of(s, "edit") == want {
            Ok(())
        } else {
            Err("edit differs".into())
        }
    });
}

#[test]
fn default_policy_aggregation_and_reconciliation() {
    let mut s = Server::start();
    defaults_equal_golden(&s);
    aggregation_follows_labelled_roles(&s);
    kubectl_auth_reconcile(&s);
    restart_reconciles(&mut s);
}
