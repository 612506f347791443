//! The default-on admission plugins of kube-core-server beyond
//! NamespaceLifecycle, ServiceAccount and Priority, on one shared server
//! (each test in its own namespace or with its own cluster-scoped names):
//! TaintNodesByCondition, DefaultTolerationSeconds (with its flag),
//! DefaultStorageClass, StorageObjectInUseProtection,
//! PersistentVolumeClaimResize, RuntimeClass, DefaultIngressClass,
//! CertificateApproval, CertificateSigning and CertificateSubjectRestriction;
//! each effect read back with `kubectl -o json`, each refusal with upstream's
//! message. Last, a server with two of them disabled does neither.

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use e2e::{eventually, Server};
use serde_json::{json, Value};

fn shared() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server::start_with(&["--default-not-ready-toleration-seconds", "120"]))
}

/// A namespace whose `default` ServiceAccount exists, so pods can be created.
fn namespace(s: &Server, ns: &str) {
    s.kubectl(&["create", "namespace", ns]);
    eventually(&format!("the default ServiceAccount of {ns}"), || {
        s.run(&["get", "serviceaccount", "default", "-n", ns], None).code == 0
    });
}

fn get(s: &Server, args: &[&str]) -> Value {
    s.kubectl_json(&[&["get"], args].concat())
}

/// Creation timestamps have whole seconds: what is created after this is newer.
fn next_second() {
    std::thread::sleep(Duration::from_millis(1100));
}

#[test]
fn new_nodes_are_tainted_not_ready() {
    let s = shared();
    s.create("apiVersion: v1\nkind: Node\nmetadata: {name: plugins-bare}\n");
    assert_eq!(
        get(s, &["node", "plugins-bare"])["spec"]["taints"],
        json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])
    );
    // The same key and effect is the taint already, whatever its value.
    s.create("apiVersion: v1\nkind: Node\nmetadata: {name: plugins-own}\nspec: {taints: [{key: node.kubernetes.io/not-ready, value: x, effect: NoSchedule}]}\n");
    assert_eq!(
        get(s, &["node", "plugins-own"])["spec"]["taints"],
        json!([{"key": "node.kubernetes.io/not-ready", "value": "x", "effect": "NoSchedule"}])
    );
    s.create(
        "apiVersion: v1\nkind: Node\nmetadata: {name: plugins-other}\nspec: {taints: [{key: a, effect: NoExecute}]}\n",
    );
    assert_eq!(
        get(s, &["node", "plugins-other"])["spec"]["taints"],
        json!([{"key": "a", "effect": "NoExecute"}, {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])
    );
    // Only creation taints: the taint removed later stays removed.
    s.kubectl(&["patch", "node", "plugins-bare", "--type=json", "-p", r#"[{"op":"remove","path":"/spec/taints"}]"#]);
    assert_eq!(get(s, &["node", "plugins-bare"])["spec"].get("taints"), None);
}

#[test]
fn pods_tolerate_node_failure_for_a_while() {
    let s = shared();
    namespace(s, "tolerations");
    s.create("apiVersion: v1\nkind: Pod\nmetadata: {name: plain, namespace: tolerations}\nspec: {containers: [{name: c, image: nginx}]}\n");
    // not-ready from --default-not-ready-toleration-seconds, unreachable the default 300.
    assert_eq!(
        get(s, &["pod", "plain", "-n", "tolerations"])["spec"]["tolerations"],
        json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 120},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ])
    );
    s.create("apiVersion: v1\nkind: Pod\nmetadata: {name: own, namespace: tolerations}\nspec:\n  containers: [{name: c, image: nginx}]\n  tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}]\n");
    assert_eq!(
        get(s, &["pod", "own", "-n", "tolerations"])["spec"]["tolerations"],
        json!([
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 120},
        ])
    );
    // A toleration of everything leaves nothing to add.
    s.create("apiVersion: v1\nkind: Pod\nmetadata: {name: all, namespace: tolerations}\nspec:\n  containers: [{name: c, image: nginx}]\n  tolerations: [{operator: Exists}]\n");
    assert_eq!(get(s, &["pod", "all", "-n", "tolerations"])["spec"]["tolerations"], json!([{"operator": "Exists"}]));
}

fn claim(name: &str, ns: &str, extra_spec: &str) -> String {
    format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}{extra_spec}}}\n")
}

#[test]
fn claims_get_the_newest_default_storage_class() {
    let s = shared();
    s.kubectl(&["create", "namespace", "default-class"]);
    let class_of = |name: &str| get(s, &["pvc", name, "-n", "default-class"])["spec"]["storageClassName"].clone();
    s.create(&claim("before", "default-class", ""));
    assert_eq!(class_of("before"), Value::Null);
    s.create("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: std-a, annotations: {storageclass.kubernetes.io/is-default-class: 'true'}}\nprovisioner: example.com/a\n");
    s.create(&claim("first", "default-class", ""));
    assert_eq!(class_of("first"), json!("std-a"));
    // A second default (the beta annotation counts too) takes over, though
    // its name sorts later.
    next_second();
    s.create("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: std-b, annotations: {storageclass.beta.kubernetes.io/is-default-class: 'true'}}\nprovisioner: example.com/b\n");
    s.create(&claim("second", "default-class", ""));
    assert_eq!(class_of("second"), json!("std-b"));
    // An empty class and the legacy annotation are choices the plugin keeps.
    s.create(&claim("none", "default-class", ", storageClassName: ''"));
    assert_eq!(class_of("none"), json!(""));
    s.create("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: legacy, namespace: default-class, annotations: {volume.beta.kubernetes.io/storage-class: std-a}}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n");
    assert_eq!(class_of("legacy"), Value::Null);
    for class in ["std-a", "std-b"] {
        s.kubectl(&["delete", "storageclass", class]);
    }
}

#[test]
fn volumes_and_claims_are_protected_while_in_use() {
    let s = shared();
    s.kubectl(&["create", "namespace", "protection"]);
    s.create("apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: protected-pv}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], hostPath: {path: /data}}\n");
    assert_eq!(get(s, &["pv", "protected-pv"])["metadata"]["finalizers"], json!(["kubernetes.io/pv-protection"]));
    s.create(&claim("plain", "protection", ", storageClassName: ''"));
    assert_eq!(
        get(s, &["pvc", "plain", "-n", "protection"])["metadata"]["finalizers"],
        json!(["kubernetes.io/pvc-protection"])
    );
    s.create("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: own, namespace: protection, finalizers: [example.com/keep]}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}, storageClassName: ''}\n");
    assert_eq!(
        get(s, &["pvc", "own", "-n", "protection"])["metadata"]["finalizers"],
        json!(["example.com/keep", "kubernetes.io/pvc-protection"])
    );
    // Without the protection controller the finalizer holds a deleted claim.
    s.kubectl(&["delete", "pvc", "plain", "-n", "protection", "--wait=false"]);
    let deleted = get(s, &["pvc", "plain", "-n", "protection"]);
    assert!(deleted["metadata"]["deletionTimestamp"].is_string(), "{deleted}");
}

#[test]
fn claims_grow_only_where_their_class_allows() {
    let s = shared();
    s.kubectl(&["create", "namespace", "resize"]);
    s.create("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: resize-fixed}\nprovisioner: example.com/fixed\n");
    s.create("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: resize-growable}\nprovisioner: example.com/grow\nallowVolumeExpansion: true\n");
    for (name, class) in [("fixed", "resize-fixed"), ("growable", "resize-growable")] {
        s.create(&claim(name, "resize", &format!(", storageClassName: {class}")));
        s.kubectl(&[
            "patch",
            "pvc",
            name,
            "-n",
            "resize",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Bound"}}"#,
        ]);
    }
    let grow = |name: &str, size: &str| {
        let patch = format!(r#"{{"spec":{{"resources":{{"requests":{{"storage":"{size}"}}}}}}}}"#);
        s.run(&["patch", "pvc", name, "-n", "resize", "--type=merge", "-p", &patch], None)
    };
    let refused = grow("fixed", "2Gi");
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("Error from server (Forbidden): persistentvolumeclaims \"fixed\" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"),
        "{}",
        refused.stderr
    );
    let storage =
        |name: &str| get(s, &["pvc", name, "-n", "resize"])["spec"]["resources"]["requests"]["storage"].clone();
    assert_eq!(storage("fixed"), json!("1Gi"));
    assert_eq!(grow("growable", "2Gi").code, 0);
    assert_eq!(storage("growable"), json!("2Gi"));
    // The same size in other units is no growth.
    assert_eq!(grow("fixed", "1024Mi").code, 0);
}

#[test]
fn runtime_class_sets_overhead_and_scheduling() {
    let s = shared();
    namespace(s, "runtime");
    s.create("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: kata}\nhandler: kata\noverhead: {podFixed: {cpu: 250m, memory: 120Mi}}\nscheduling:\n  nodeSelector: {runtime: kata}\n  tolerations: [{key: kata, operator: Exists, effect: NoSchedule}]\n");
    let pod = |name: &str, spec: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: runtime}}\nspec:\n  containers: [{{name: c, image: nginx}}]\n{spec}")
    };
    s.create(&pod("sandboxed", "  runtimeClassName: kata\n  nodeSelector: {disk: ssd}\n"));
    let spec = get(s, &["pod", "sandboxed", "-n", "runtime"])["spec"].clone();
    assert_eq!(spec["overhead"], json!({"cpu": "250m", "memory": "120Mi"}));
    assert_eq!(spec["nodeSelector"], json!({"disk": "ssd", "runtime": "kata"}));
    assert_eq!(spec["tolerations"][2], json!({"key": "kata", "operator": "Exists", "effect": "NoSchedule"}), "{spec}");
    // The class's own overhead, in other units, is the same overhead.
    s.create(&pod("same", "  runtimeClassName: kata\n  overhead: {cpu: '0.25', memory: 120Mi}\n"));

    let refusals = [
        ("unknown", "  runtimeClassName: nope\n", "pod rejected: RuntimeClass \"nope\" not found"),
        (
            "other-overhead",
            "  runtimeClassName: kata\n  overhead: {cpu: '1'}\n",
            "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead",
        ),
        (
            "classless-overhead",
            "  overhead: {cpu: '1'}\n",
            "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead",
        ),
        (
            "conflict",
            "  runtimeClassName: kata\n  nodeSelector: {runtime: runc}\n",
            "conflict: runtimeClass.scheduling.nodeSelector[runtime] = kata; pod.spec.nodeSelector[runtime] = runc",
        ),
    ];
    for (name, spec, message) in refusals {
        let full = format!(
            "Error from server (Forbidden): error when creating \"STDIN\": pods \"{name}\" is forbidden: {message}"
        );
        s.kubectl_err(&["create", "-f", "-"], Some(&pod(name, spec)), &[&full]);
        assert_eq!(s.run(&["get", "pod", name, "-n", "runtime"], None).code, 1, "{name} must not exist");
    }
}

#[test]
fn ingresses_get_the_newest_default_class() {
    let s = shared();
    s.kubectl(&["create", "namespace", "ingress"]);
    let ingress = |name: &str, meta: &str| {
        format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: ingress{meta}}}\nspec: {{defaultBackend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n")
    };
    let class_of = |name: &str| get(s, &["ingress", name, "-n", "ingress"])["spec"]["ingressClassName"].clone();
    s.create(&ingress("before", ""));
    assert_eq!(class_of("before"), Value::Null);
    let class = |name: &str| {
        format!("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: {name}, annotations: {{ingressclass.kubernetes.io/is-default-class: 'true'}}}}\nspec: {{controller: example.com/{name}}}\n")
    };
    s.create(&class("ing-a"));
    s.create(&ingress("first", ""));
    assert_eq!(class_of("first"), json!("ing-a"));
    next_second();
    s.create(&class("ing-b"));
    s.create(&ingress("second", ""));
    assert_eq!(class_of("second"), json!("ing-b"));
    s.create(&ingress("legacy", ", annotations: {kubernetes.io/ingress.class: other}"));
    assert_eq!(class_of("legacy"), Value::Null);
}

/// A PEM certificate request whose subject has `organization`, base64 for a CSR's spec.request.
fn request(cn: &str, organization: &str) -> String {
    let key = rcgen::KeyPair::generate().expect("a key");
    let mut params = rcgen::CertificateParams::new(vec![]).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    params.distinguished_name.push(rcgen::DnType::OrganizationName, organization);
    let pem = params.serialize_request(&key).expect("a request").pem().expect("PEM");
    base64::engine::general_purpose::STANDARD.encode(pem)
}

fn csr(name: &str, signer: &str, organization: &str) -> String {
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: {name}}}\nspec:\n  request: {}\n  signerName: {signer}\n  usages: [client auth]\n",
        request(name, organization)
    )
}

#[test]
fn kube_apiserver_client_certificates_cannot_be_masters() {
    let s = shared();
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&csr("masters", "kubernetes.io/kube-apiserver-client", "system:masters")),
        &["Error from server (Forbidden): error when creating \"STDIN\": certificatesigningrequests.certificates.k8s.io \"masters\" is forbidden: use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"],
    );
    assert_eq!(s.run(&["get", "csr", "masters"], None).code, 1);
    s.create(&csr("devs", "kubernetes.io/kube-apiserver-client", "devs"));
    // Another signer may issue what it likes.
    s.create(&csr("other-masters", "example.com/anything", "system:masters"));
}

#[test]
fn approving_and_signing_need_the_signer() {
    let s = shared();
    s.create(&csr("signer-check", "example.com/signer", "devs"));
    // alice may write both subresources, but holds no signer yet.
    s.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: csr-writer}\nrules:\n- apiGroups: [certificates.k8s.io]\n  resources: [certificatesigningrequests, certificatesigningrequests/approval, certificatesigningrequests/status]\n  verbs: [get, list, update, patch]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: csr-writer-alice}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: csr-writer}\nsubjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]\n",
    );
    eventually("alice's csr-writer binding reaches the authorizer", || {
        s.run(
            &["auth", "can-i", "update", "certificatesigningrequests", "--subresource=approval", "--as", "alice"],
            None,
        )
        .code
            == 0
    });
    let approve = || s.run(&["certificate", "approve", "signer-check", "--as", "alice"], None);
    let refused = approve();
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("certificatesigningrequests.certificates.k8s.io \"signer-check\" is forbidden: user not permitted to approve requests with signerName \"example.com/signer\""),
        "{}",
        refused.stderr
    );
    assert_eq!(get(s, &["csr", "signer-check"])["status"].get("conditions"), None);

    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = rcgen::CertificateParams::new(vec!["signer-check".into()])
        .expect("params")
        .self_signed(&key)
        .expect("a certificate")
        .pem();
    let status = json!({"status": {"certificate": base64::engine::general_purpose::STANDARD.encode(cert)}}).to_string();
    let sign = || {
        s.run(
            &["patch", "csr", "signer-check", "--subresource=status", "--type=merge", "-p", &status, "--as", "alice"],
            None,
        )
    };
    let refused = sign();
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("certificatesigningrequests.certificates.k8s.io \"signer-check\" is forbidden: user not permitted to sign requests with signerName \"example.com/signer\""),
        "{}",
        refused.stderr
    );

    // approve on the domain's wildcard, sign on the signer itself.
    s.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: example-signer}\nrules:\n- apiGroups: [certificates.k8s.io]\n  resources: [signers]\n  resourceNames: [example.com/*]\n  verbs: [approve]\n- apiGroups: [certificates.k8s.io]\n  resources: [signers]\n  resourceNames: [example.com/signer]\n  verbs: [sign]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: example-signer-alice}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: example-signer}\nsubjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]\n",
    );
    eventually("alice approves", || approve().code == 0);
    let conditions = get(s, &["csr", "signer-check"])["status"]["conditions"].clone();
    assert_eq!(conditions[0]["type"], json!("Approved"), "{conditions}");
    let signed = sign();
    assert_eq!(signed.code, 0, "{signed:?}");
    assert!(get(s, &["csr", "signer-check"])["status"]["certificate"].is_string());
}

/// ClusterTrustBundleAttest guards a kind 1.33 does not serve by default,
/// and neither does this server.
#[test]
fn cluster_trust_bundles_are_not_served() {
    let out = shared().kubectl(&["api-resources", "--api-group=certificates.k8s.io", "-o", "name"]);
    assert_eq!(out.trim(), "certificatesigningrequests.certificates.k8s.io");
}

#[test]
fn disabled_plugins_do_nothing() {
    let s = Server::start_with(&["--disable-admission-plugins", "TaintNodesByCondition,DefaultTolerationSeconds"]);
    s.create("apiVersion: v1\nkind: Node\nmetadata: {name: untainted}\n");
    assert_eq!(get(&s, &["node", "untainted"])["spec"].get("taints"), None);
    eventually("the default ServiceAccount", || s.run(&["get", "serviceaccount", "default"], None).code == 0);
    s.create("apiVersion: v1\nkind: Pod\nmetadata: {name: bare}\nspec: {containers: [{name: c, image: nginx}]}\n");
    assert_eq!(get(&s, &["pod", "bare"])["spec"].get("tolerations"), None);
}
