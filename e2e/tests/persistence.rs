//! Restart persistence: a SIGKILL and a start on the same data dir keep every
//! object byte for byte (uid, resourceVersion, creationTimestamp, allocations),
//! keep the PKI, and keep counting resourceVersions upwards.

use e2e::Server;
use serde_json::Value;

const KINDS: [&str; 8] =
    ["namespaces", "configmaps", "secrets", "serviceaccounts", "pods", "services", "deployments.apps", "events"];

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: keep}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: keep, labels: {app: keep}}
data: {a: b}
---
apiVersion: v1
kind: Secret
metadata: {name: sec, namespace: keep}
stringData: {pw: hunter2}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: robot, namespace: keep}
---
apiVersion: v1
kind: Pod
metadata: {name: pod, namespace: keep}
spec:
  containers: [{name: c, image: 'nginx:1.25'}]
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: keep}
spec:
  selector: {app: keep}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: dep, namespace: keep}
spec:
  replicas: 2
  selector: {matchLabels: {app: keep}}
  template:
    metadata: {labels: {app: keep}}
    spec:
      containers: [{name: c, image: 'nginx:1.25'}]
---
apiVersion: v1
kind: Event
metadata: {name: pod.1, namespace: keep}
involvedObject: {kind: Pod, name: pod, namespace: keep}
reason: Kept
message: survives restarts
type: Normal
source: {component: e2e}
"#;

fn snapshot(s: &Server) -> Vec<Value> {
    KINDS.iter().map(|k| s.kubectl_json(&["get", k, "-A"])["items"].clone()).collect()
}

fn max_rv(snap: &[Value]) -> u64 {
    snap.iter()
        .flat_map(|items| items.as_array().unwrap().iter())
        .map(|o| o["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap())
        .max()
        .unwrap()
}

#[test]
fn restart_keeps_every_object() {
    let mut s = Server::start();
    s.create(OBJECTS);
    s.kubectl(&["scale", "deploy", "dep", "-n", "keep", "--replicas=3"]);
    s.kubectl(&[
        "patch",
        "pod",
        "pod",
        "-n",
        "keep",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running"}}"#,
    ]);
    s.kubectl(&["create", "configmap", "gone", "-n", "keep"]);
    s.kubectl(&["delete", "configmap", "gone", "-n", "keep"]);
    let gen = s.create("apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: gen-, namespace: keep}\n");
    let ca = std::fs::read(s.admin_pem_paths().0).unwrap();
    let before = snapshot(&s);
    // (The list's own resourceVersion: kubectl -o json builds a local List without one.)
    let cm_list_rv = s.raw("/api/v1/configmaps")["metadata"]["resourceVersion"].clone();

    s.restart();
    assert_eq!(std::fs::read(s.admin_pem_paths().0).unwrap(), ca, "the CA is reused");
    let after = snapshot(&s);
    for (k, (b, a)) in KINDS.iter().zip(before.iter().zip(after.iter())) {
        assert_eq!(b, a, "{k} changed across a restart");
    }
    s.kubectl_err(
        &["get", "cm", "gone", "-n", "keep"],
        None,
        &[r#"Error from server (NotFound): configmaps "gone" not found"#],
    );
    let gen_name = gen.trim().strip_prefix("configmap/").unwrap().strip_suffix(" created").unwrap();
    s.kubectl(&["get", "cm", gen_name, "-n", "keep"]);
    let list_rv = s.raw("/api/v1/configmaps")["metadata"]["resourceVersion"].clone();
    assert!(
        list_rv.as_str().unwrap().parse::<u64>().unwrap() >= cm_list_rv.as_str().unwrap().parse::<u64>().unwrap(),
        "the store's revision does not go back: {cm_list_rv} then {list_rv}"
    );

    // New writes continue above every old resourceVersion; allocations are remembered.
    let old_max = max_rv(&before);
    s.kubectl(&["create", "configmap", "new", "-n", "keep"]);
    let new_rv: u64 =
        s.kubectl(&["get", "cm", "new", "-n", "keep", "-o", "jsonpath={.metadata.resourceVersion}"]).parse().unwrap();
    assert!(new_rv > old_max, "new resourceVersion {new_rv} must exceed {old_max}");
    let taken: Vec<String> =
        after[5].as_array().unwrap().iter().map(|s| s["spec"]["clusterIP"].as_str().unwrap().to_string()).collect();
    for i in 0..3 {
        s.kubectl(&["create", "service", "clusterip", &format!("more{i}"), "--tcp=80", "-n", "keep"]);
        let ip = s.kubectl(&["get", "svc", &format!("more{i}"), "-n", "keep", "-o", "jsonpath={.spec.clusterIP}"]);
        assert!(!taken.contains(&ip), "{ip} was already allocated before the restart: {taken:?}");
    }
    let svc_ip = s.kubectl(&["get", "svc", "svc", "-n", "keep", "-o", "jsonpath={.spec.clusterIP}"]);
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&format!("apiVersion: v1\nkind: Service\nmetadata: {{name: clash, namespace: keep}}\nspec:\n  clusterIP: {svc_ip}\n  ports: [{{port: 80}}]\n")),
        &["provided IP is already allocated"],
    );

    // Changes after a restart survive the next one; the bootstrap does not re-create anything.
    s.kubectl(&["patch", "cm", "cfg", "-n", "keep", "--type=merge", "-p", r#"{"data":{"a":"changed"}}"#]);
    let mid = snapshot(&s);
    s.restart();
    let end = snapshot(&s);
    for (k, (b, a)) in KINDS.iter().zip(mid.iter().zip(end.iter())) {
        assert_eq!(b, a, "{k} changed across the second restart");
    }
    assert_eq!(s.kubectl(&["get", "cm", "cfg", "-n", "keep", "-o", "jsonpath={.data.a}"]), "changed");
    let kubernetes = |snap: &[Value]| {
        snap[5]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["metadata"]["name"] == "kubernetes")
            .cloned()
            .expect("kubernetes service")
    };
    assert_eq!(kubernetes(&before), kubernetes(&end), "the kubernetes service is kept, not re-created");
    let default_ns = |snap: &[Value]| {
        snap[0].as_array().unwrap().iter().find(|n| n["metadata"]["name"] == "default").cloned().unwrap()
    };
    assert_eq!(default_ns(&before), default_ns(&end));
    s.assert_healthy();
}

e2e::on_etcd!(restart_keeps_every_object);
