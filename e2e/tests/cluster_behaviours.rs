//! What a real cluster does around the API that a single binary must do too:
//! the `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap in every
//! namespace, the kubelet-backed subresources answering as upstream does with
//! no kubelet, the emptyDir default of a volume with no source, and the
//! admission plugin flags.

use std::time::{Duration, Instant};

use e2e::Server;
use serde_json::{json, Value};

const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// Polls `check` until it holds (controllers act asynchronously).
#[track_caller]
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn exists(s: &Server, args: &[&str]) -> bool {
    s.run(args, None).code == 0
}

#[test]
fn every_namespace_gets_a_service_account_and_the_root_ca() {
    let s = Server::start();
    let ca = std::fs::read_to_string(s.data_dir.join("pki/ca.crt")).expect("the generated CA");
    let root_ca = |ns: &str| s.kubectl_json(&["get", "configmap", "kube-root-ca.crt", "-n", ns, "-o", "json"]);
    // The bootstrap namespaces.
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        eventually(&format!("publishing in {ns}"), || {
            exists(&s, &["get", "serviceaccount", "default", "-n", ns])
                && exists(&s, &["get", "configmap", "kube-root-ca.crt", "-n", ns])
        });
        let cm = root_ca(ns);
        assert_eq!(cm["data"], json!({"ca.crt": ca}), "{cm}");
        assert_eq!(cm["metadata"]["annotations"]["kubernetes.io/description"], DESCRIPTION, "{cm}");
    }
    // A new namespace.
    s.kubectl(&["create", "namespace", "team"]);
    eventually("publishing in team", || {
        exists(&s, &["get", "serviceaccount", "default", "-n", "team"])
            && exists(&s, &["get", "configmap", "kube-root-ca.crt", "-n", "team"])
    });
    // Written as the controller manager writes it (an account with only a
    // name records no fields, as upstream).
    let cm =
        s.kubectl_json(&["get", "configmap", "kube-root-ca.crt", "-n", "team", "-o", "json", "--show-managed-fields"]);
    let managers: Vec<&str> = cm["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(managers, ["kube-controller-manager"], "{cm}");
    let sa = s.kubectl_json(&["get", "serviceaccount", "default", "-n", "team", "-o", "json"]);

    // Deleted: recreated, with a new uid.
    let old_uid = sa["metadata"]["uid"].clone();
    s.kubectl(&["delete", "serviceaccount", "default", "-n", "team"]);
    eventually("the service account back", || exists(&s, &["get", "serviceaccount", "default", "-n", "team"]));
    let sa = s.kubectl_json(&["get", "serviceaccount", "default", "-n", "team", "-o", "json"]);
    assert_ne!(sa["metadata"]["uid"], old_uid);
    s.kubectl(&["delete", "configmap", "kube-root-ca.crt", "-n", "team"]);
    eventually("the root CA back", || exists(&s, &["get", "configmap", "kube-root-ca.crt", "-n", "team"]));

    // Edited: the data and the annotation put back, other edits kept.
    s.kubectl(&[
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        "team",
        "--type=merge",
        "-p",
        r#"{"data": {"ca.crt": "forged", "extra": "x"}, "metadata": {"labels": {"mine": "yes"}, "annotations": {"kubernetes.io/description": null}}}"#,
    ]);
    eventually("the root CA repaired", || root_ca("team")["data"] == json!({"ca.crt": ca}));
    let cm = root_ca("team");
    assert_eq!(cm["metadata"]["annotations"]["kubernetes.io/description"], DESCRIPTION, "{cm}");
    assert_eq!(cm["metadata"]["labels"]["mine"], "yes", "{cm}");

    // Nothing is created in a terminating namespace: a held object keeps it
    // terminating while its content goes, and what goes stays gone.
    s.kubectl(&["create", "namespace", "ending"]);
    eventually("publishing in ending", || exists(&s, &["get", "configmap", "kube-root-ca.crt", "-n", "ending"]));
    s.create(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: ending, finalizers: [example.com/hold]}\n",
    );
    s.kubectl(&["delete", "namespace", "ending", "--wait=false"]);
    eventually("the namespace emptied", || {
        !exists(&s, &["get", "serviceaccount", "default", "-n", "ending"])
            && !exists(&s, &["get", "configmap", "kube-root-ca.crt", "-n", "ending"])
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(!exists(&s, &["get", "serviceaccount", "default", "-n", "ending"]));
    assert!(!exists(&s, &["get", "configmap", "kube-root-ca.crt", "-n", "ending"]));
    s.kubectl(&[
        "patch",
        "configmap",
        "held",
        "-n",
        "ending",
        "--type=merge",
        "-p",
        r#"{"metadata": {"finalizers": null}}"#,
    ]);
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: app, image: nginx}]\n  volumes: [{name: scratch}]\n";
const TWO: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: two}\nspec:\n  containers: [{name: a, image: nginx}, {name: b, image: nginx}]\n";

#[test]
fn kubelet_subresources_answer_without_a_kubelet() {
    let mut s = Server::start();
    s.create(POD);
    s.create(TWO);

    // A volume with no source is an emptyDir.
    let pod = s.kubectl_json(&["get", "pod", "web", "-o", "json"]);
    assert_eq!(pod["spec"]["volumes"], json!([{"name": "scratch", "emptyDir": {}}]), "{pod}");

    // Logs of an unscheduled pod: nothing (upstream streams from no location).
    let r = s.run(&["logs", "web"], None);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{r:?}");
    let raw = s.request("GET", "/api/v1/namespaces/default/pods/web/log", None);
    assert_eq!(raw.status, 204, "{}", raw.text());
    s.request("GET", "/api/v1/namespaces/default/pods/nope/log", None).assert_status(404, "NotFound");
    let v = s
        .request("GET", "/api/v1/namespaces/default/pods/web/log?container=bad", None)
        .assert_status(400, "BadRequest");
    assert_eq!(v["message"], "container bad is not valid for pod web");
    let v = s.request("GET", "/api/v1/namespaces/default/pods/two/log", None).assert_status(400, "BadRequest");
    assert_eq!(v["message"], "a container name must be specified for pod two, choose one of: [a b]");
    let v =
        s.request("GET", "/api/v1/namespaces/default/pods/web/log?tailLines=-1", None).assert_status(422, "Invalid");
    assert_eq!(v["details"]["causes"][0]["field"], "tailLines", "{v}");

    // exec and attach: refused quickly, over both upgrade protocols kubectl tries.
    let started = Instant::now();
    s.kubectl_err(&["exec", "web", "--", "ls"], None, &["pod web does not have a host assigned"]);
    assert!(started.elapsed() < Duration::from_secs(10), "exec took {:?}", started.elapsed());
    for method in ["GET", "POST"] {
        for sub in ["exec?command=ls&stdout=true", "attach?stdout=true", "portforward?ports=80"] {
            let path = format!("/api/v1/namespaces/default/pods/web/{sub}");
            let v = s.request(method, &path, None).assert_status(400, "BadRequest");
            assert_eq!(v["message"], "pod web does not have a host assigned", "{method} {sub}");
        }
    }
    s.request("POST", "/api/v1/namespaces/default/pods/nope/exec?command=ls", None).assert_status(404, "NotFound");
    // kubectl port-forward checks the phase itself first, as against upstream.
    s.kubectl_err(&["port-forward", "web", "8080:80"], None, &["unable to forward port because pod is not running"]);

    // A scheduled pod whose node does not exist.
    let scheduled = "apiVersion: v1\nkind: Pod\nmetadata: {name: placed}\nspec:\n  nodeName: node-1\n  containers: [{name: app, image: nginx}]\n";
    s.create(scheduled);
    let v = s.request("GET", "/api/v1/namespaces/default/pods/placed/log", None).assert_status(404, "NotFound");
    assert_eq!(v["message"], "nodes \"node-1\" not found");

    // Proxies: a pod without an address, a service without endpoints.
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        let v = s
            .request(method, "/api/v1/namespaces/default/pods/web/proxy/some/path", None)
            .assert_status(400, "BadRequest");
        assert_eq!(v["message"], "address not allowed", "{method}");
    }
    // Only the proxies take a path after their name, as upstream routes them.
    s.request("GET", "/api/v1/namespaces/default/pods/web/exec/extra", None).assert_status(404, "NotFound");
    let v = s.request("GET", "/api/v1/namespaces/default/pods/ftp:web:21/proxy", None).assert_status(400, "BadRequest");
    assert_eq!(v["message"], "invalid pod request \"ftp:web:21\"");
    s.create("apiVersion: v1\nkind: Service\nmetadata: {name: svc}\nspec:\n  ports: [{name: http, port: 80}]\n");
    let v = s
        .request("GET", "/api/v1/namespaces/default/services/svc:81/proxy/", None)
        .assert_status(503, "ServiceUnavailable");
    assert_eq!(v["message"], "no service port 81 found for service \"svc\"");
    s.request("GET", "/api/v1/namespaces/default/services/svc/proxy/", None).assert_status(404, "NotFound");
    s.create("apiVersion: v1\nkind: Endpoints\nmetadata: {name: svc}\n");
    let v = s
        .request("GET", "/api/v1/namespaces/default/services/svc:80/proxy/x", None)
        .assert_status(503, "ServiceUnavailable");
    assert_eq!(v["message"], "no endpoints available for service \"svc\"");
    s.request("GET", "/api/v1/namespaces/default/services/gone/proxy/", None).assert_status(404, "NotFound");

    // Discovery lists them as upstream does.
    let facts: Value = serde_json::from_slice(
        &std::fs::read(e2e::workspace_root().join("../shared/facts/api-resources-1.33.json")).expect("the facts file"),
    )
    .expect("facts are JSON");
    let list = s.raw("/api/v1");
    for (resource, subs) in
        [("pods", &["attach", "exec", "log", "portforward", "proxy"][..]), ("services", &["proxy"][..])]
    {
        let want = facts["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["group"] == "" && r["resource"] == resource))
            .expect("facts list the resource");
        for sub in subs {
            let expected = want["subresources"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["name"] == *sub))
                .expect("facts list it");
            let name = format!("{resource}/{sub}");
            let got = list["resources"].as_array().and_then(|a| a.iter().find(|r| r["name"] == name.as_str()));
            let got = got.unwrap_or_else(|| panic!("/api/v1 lacks {name}: {list}"));
            assert_eq!(got["kind"], expected["kind"], "{name}");
            assert_eq!(got["verbs"], expected["verbs"], "{name}");
        }
    }
    s.assert_healthy();
}

#[test]
fn admission_plugin_flags() {
    // Bad flags stop the server with upstream's message and a failure exit.
    let refused = e2e::start_refused;
    let err = refused(&["--enable-admission-plugins", "NamespaceLifecycle,Bogus"]);
    assert!(err.contains("enable-admission-plugins plugin \"Bogus\" is unknown"), "{err}");
    let err = refused(&["--enable-admission-plugins", "Priority", "--disable-admission-plugins", "Priority"]);
    assert!(err.contains("[Priority] in enable-admission-plugins and disable-admission-plugins overlapped"), "{err}");

    // Known upstream names are accepted; without NamespaceLifecycle nothing
    // checks the namespace of a create, and `default` may be deleted.
    let s = Server::start_with(&[
        "--enable-admission-plugins",
        "AlwaysPullImages,NodeRestriction",
        "--disable-admission-plugins",
        "NamespaceLifecycle,ResourceQuota",
    ]);
    let out = s.create("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: missing}\n");
    assert_eq!(out, "configmap/c created\n");
    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
    assert!(log.contains("not implemented"), "{log}");

    // With the default set the namespace is checked.
    let d = Server::start();
    d.kubectl_err(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: missing}\n"),
        &["namespaces \"missing\" not found"],
    );
}

// The publishers follow Store watches, whose resumption is the backend's.
e2e::on_etcd!(every_namespace_gets_a_service_account_and_the_root_ca);
