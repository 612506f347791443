//! LimitRanger and ResourceQuota admission with the real kubectl, on one
//! server (each test in a namespace of its own): LimitRange defaults written
//! into new pods, upstream's refusals past a LimitRange's bounds, quota usage
//! in status computed from what a namespace already holds, charged at
//! admission, given back after deletions, upstream's `exceeded quota` and
//! `failed quota` refusals, and dry runs that charge nothing.

use std::sync::OnceLock;

use e2e::{eventually, Server};
use serde_json::Value;

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(Server::start)
}

/// A namespace whose `default` ServiceAccount exists, so pods are admitted.
fn namespace(s: &Server, name: &str) {
    s.kubectl(&["create", "namespace", name]);
    eventually("the default ServiceAccount", || s.run(&["get", "sa", "default", "-n", name], None).code == 0);
}

fn pod(name: &str, resources: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - name: c\n    image: nginx\n    resources: {resources}\n")
}

#[test]
fn limit_ranges_default_and_bound() {
    let s = server();
    namespace(s, "lr");
    s.kubectl_stdin(
        &["create", "-n", "lr", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: LimitRange\nmetadata: {name: bounds}\nspec:\n  limits:\n  - type: Container\n    default: {cpu: 500m, memory: 256Mi}\n    defaultRequest: {cpu: 100m, memory: 128Mi}\n    max: {cpu: '1'}\n  - type: PersistentVolumeClaim\n    max: {storage: 1Gi}\n",
        ),
    );
    // The informer the plugin reads may be a moment behind the create: try
    // fresh pods until one is defaulted.
    let mut attempt = 0;
    let mut p = Value::Null;
    eventually("the LimitRange's defaults", || {
        attempt += 1;
        let name = format!("plain-{attempt}");
        s.kubectl_stdin(&["create", "-n", "lr", "-f", "-"], Some(&pod(&name, "{}")));
        p = s.kubectl_json(&["get", "pod", &name, "-n", "lr"]);
        p["spec"]["containers"][0]["resources"].get("limits").is_some()
    });
    let r = &p["spec"]["containers"][0]["resources"];
    assert_eq!(r["requests"], serde_json::json!({"cpu": "100m", "memory": "128Mi"}), "{p}");
    assert_eq!(r["limits"], serde_json::json!({"cpu": "500m", "memory": "256Mi"}), "{p}");
    assert_eq!(
        p["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c"
    );
    // A limit the pod states is kept, and its request follows it (pod
    // defaulting), not the LimitRange.
    s.kubectl_stdin(&["create", "-n", "lr", "-f", "-"], Some(&pod("stated", "{limits: {cpu: 800m}}")));
    let r = s.kubectl_json(&["get", "pod", "stated", "-n", "lr"])["spec"]["containers"][0]["resources"].clone();
    assert_eq!(
        (&r["limits"]["cpu"], &r["requests"]["cpu"], &r["requests"]["memory"]),
        (&Value::from("800m"), &Value::from("800m"), &Value::from("128Mi"))
    );

    s.kubectl_err(
        &["create", "-n", "lr", "-f", "-"],
        Some(&pod("big", "{limits: {cpu: '2'}}")),
        &[
            "Error from server (Forbidden)",
            "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2",
        ],
    );
    assert_ne!(s.run(&["get", "pod", "big", "-n", "lr"], None).code, 0, "a refused pod is not stored");
    let claim = |size: &str| {
        format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: data}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: {size}}}}}\n")
    };
    s.kubectl_err(
        &["create", "-n", "lr", "-f", "-"],
        Some(&claim("2Gi")),
        &["persistentvolumeclaims \"data\" is forbidden: maximum storage usage per PersistentVolumeClaim is 1Gi, but request is 2Gi"],
    );
    s.kubectl_stdin(&["create", "-n", "lr", "-f", "-"], Some(&claim("512Mi")));
}

/// The quota's status.used (hard must be the spec's).
fn used(s: &Server, ns: &str, quota: &str) -> Value {
    let q = s.kubectl_json(&["get", "resourcequota", quota, "-n", ns]);
    if q["status"]["hard"] != q["spec"]["hard"] {
        return Value::Null;
    }
    q["status"]["used"].clone()
}

#[test]
fn quotas_count_charge_and_refuse() {
    let s = server();
    namespace(s, "q");
    for name in ["s1", "s2"] {
        s.kubectl(&["create", "secret", "generic", name, "-n", "q"]);
    }
    s.kubectl_stdin(
        &["create", "-n", "q", "-f", "-"],
        Some("apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: objects}\nspec:\n  hard: {secrets: '3', services: '1', count/deployments.apps: '1'}\n"),
    );
    // Usage of what was there before the quota.
    eventually("usage computed from the secrets present", || {
        used(s, "q", "objects") == serde_json::json!({"secrets": "2", "services": "0", "count/deployments.apps": "0"})
    });

    // A create is charged at admission: the status moves before kubectl returns.
    s.kubectl(&["create", "secret", "generic", "s3", "-n", "q"]);
    assert_eq!(used(s, "q", "objects")["secrets"], "3");
    s.kubectl_err(
        &["create", "secret", "generic", "s4", "-n", "q"],
        None,
        &["secrets \"s4\" is forbidden: exceeded quota: objects, requested: secrets=1, used: secrets=3, limited: secrets=3"],
    );
    assert_ne!(s.run(&["get", "secret", "s4", "-n", "q"], None).code, 0, "a refused secret is not stored");

    // Deletions give usage back (the controller).
    s.kubectl(&["delete", "secret", "s3", "s2", "-n", "q"]);
    eventually("usage after deletions", || used(s, "q", "objects")["secrets"] == "1");

    // A dry run is checked but not charged.
    s.kubectl(&["create", "secret", "generic", "s5", "-n", "q", "--dry-run=server"]);
    s.kubectl(&["create", "deployment", "web", "--image=nginx", "-n", "q", "--dry-run=server"]);
    let u = used(s, "q", "objects");
    assert_eq!((&u["secrets"], &u["count/deployments.apps"]), (&Value::from("1"), &Value::from("0")), "{u}");
    s.kubectl(&["create", "deployment", "web", "--image=nginx", "-n", "q"]);
    assert_eq!(used(s, "q", "objects")["count/deployments.apps"], "1");
    s.kubectl_err(
        &["create", "deployment", "api", "--image=nginx", "-n", "q"],
        None,
        &["deployments.apps \"api\" is forbidden: exceeded quota: objects, requested: count/deployments.apps=1, used: count/deployments.apps=1, limited: count/deployments.apps=1"],
    );
    s.kubectl(&["create", "service", "clusterip", "one", "--tcp=80", "-n", "q"]);
    s.kubectl_err(
        &["create", "service", "clusterip", "two", "--tcp=80", "-n", "q"],
        None,
        &["exceeded quota: objects, requested: services=1, used: services=1, limited: services=1"],
    );

    // Compute resources: pods must state what the quota tracks.
    s.kubectl_stdin(
        &["create", "-n", "q", "-f", "-"],
        Some("apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: compute}\nspec:\n  hard: {pods: '2', requests.cpu: '1', limits.cpu: '2', requests.memory: 1Gi}\n"),
    );
    eventually("the compute quota's status", || used(s, "q", "compute").is_object());
    s.kubectl_err(
        &["create", "-n", "q", "-f", "-"],
        Some(&pod("bare", "{}")),
        &["pods \"bare\" is forbidden: failed quota: compute: must specify limits.cpu for: c; requests.cpu for: c; requests.memory for: c"],
    );
    let sized = |name: &str, cpu: &str| {
        pod(name, &format!("{{requests: {{cpu: {cpu}, memory: 256Mi}}, limits: {{cpu: {cpu}}}}}"))
    };
    s.kubectl_stdin(&["create", "-n", "q", "-f", "-"], Some(&sized("p1", "500m")));
    s.kubectl_stdin(&["create", "-n", "q", "-f", "-", "--dry-run=server"], Some(&sized("p2", "400m")));
    assert_eq!(
        used(s, "q", "compute"),
        serde_json::json!({"pods": "1", "requests.cpu": "500m", "limits.cpu": "500m", "requests.memory": "256Mi"})
    );
    s.kubectl_stdin(&["create", "-n", "q", "-f", "-"], Some(&sized("p2", "400m")));
    assert_eq!(used(s, "q", "compute")["requests.cpu"], "900m");
    s.kubectl_err(
        &["create", "-n", "q", "-f", "-"],
        Some(&sized("p3", "200m")),
        &["pods \"p3\" is forbidden: exceeded quota: compute, requested: pods=1,requests.cpu=200m, used: pods=2,requests.cpu=900m, limited: pods=2,requests.cpu=1"],
    );
    s.kubectl(&["delete", "pod", "p1", "-n", "q", "--grace-period=0", "--force"]);
    eventually("pod usage after a deletion", || {
        used(s, "q", "compute")
            == serde_json::json!({"pods": "1", "requests.cpu": "400m", "limits.cpu": "400m", "requests.memory": "256Mi"})
    });
    // The table shows usage beside the limits.
    let out = s.kubectl(&["get", "quota", "compute", "-n", "q"]);
    assert!(out.contains("pods: 1/2, requests.cpu: 400m/1, requests.memory: 256Mi/1Gi"), "{out}");
}

#[test]
fn quota_scopes_and_claims() {
    let s = server();
    namespace(s, "qs");
    s.kubectl_stdin(
        &["create", "-n", "qs", "-f", "-"],
        Some(concat!(
            "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: besteffort}\nspec: {hard: {pods: '1'}, scopes: [BestEffort]}\n---\n",
            "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: storage}\n",
            "spec: {hard: {requests.storage: 1Gi, persistentvolumeclaims: '2', fast.storageclass.storage.k8s.io/requests.storage: 500Mi}}\n",
        )),
    );
    eventually("both quotas' status", || {
        used(s, "qs", "besteffort").is_object() && used(s, "qs", "storage").is_object()
    });
    // Only BestEffort pods count against a BestEffort quota.
    s.kubectl_stdin(&["create", "-n", "qs", "-f", "-"], Some(&pod("be1", "{}")));
    s.kubectl_err(
        &["create", "-n", "qs", "-f", "-"],
        Some(&pod("be2", "{}")),
        &["pods \"be2\" is forbidden: exceeded quota: besteffort, requested: pods=1, used: pods=1, limited: pods=1"],
    );
    s.kubectl_stdin(&["create", "-n", "qs", "-f", "-"], Some(&pod("burstable", "{requests: {cpu: 100m}}")));
    assert_eq!(used(s, "qs", "besteffort"), serde_json::json!({"pods": "1"}));

    // Claims are charged their storage, overall and per class.
    let claim = |name: &str, class: &str, size: &str| {
        format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n  storageClassName: {class}\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: {size}}}}}\n")
    };
    s.kubectl_stdin(&["create", "-n", "qs", "-f", "-"], Some(&claim("c1", "slow", "600Mi")));
    assert_eq!(
        used(s, "qs", "storage"),
        serde_json::json!({"requests.storage": "600Mi", "persistentvolumeclaims": "1", "fast.storageclass.storage.k8s.io/requests.storage": "0"})
    );
    s.kubectl_err(
        &["create", "-n", "qs", "-f", "-"],
        Some(&claim("c2", "fast", "600Mi")),
        &["persistentvolumeclaims \"c2\" is forbidden: exceeded quota: storage, requested: fast.storageclass.storage.k8s.io/requests.storage=600Mi,requests.storage=600Mi, used: fast.storageclass.storage.k8s.io/requests.storage=0,requests.storage=600Mi, limited: fast.storageclass.storage.k8s.io/requests.storage=500Mi,requests.storage=1Gi"],
    );
}
