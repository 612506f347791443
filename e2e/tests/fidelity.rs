//! Fidelity bugs real clients found, each pinned to upstream's behaviour: the
//! routes of upstream's APIInstaller (no DELETE of every ConfigMap through the
//! all-namespaces path), finalizer names validated, DELETE answering with the
//! object where upstream's registries do, JSON bodies as upstream's serializer
//! writes them, names unescaped as Go unescapes a path, content negotiation
//! as goautoneg orders it, the Cache-Control every answer carries, and
//! generated certificates that pass strict X.509 verification.

use std::collections::BTreeSet;
use std::process::Command;

use e2e::{require_tool, Cred, HttpResponse, Server};
use serde_json::{json, Value};

const METHOD_NOT_ALLOWED: &str = "the server does not allow this method on the requested resource";

/// Every ConfigMap the server holds, as namespace/name.
fn all_configmaps(s: &Server) -> BTreeSet<String> {
    let list = s.raw("/api/v1/configmaps");
    let items = list["items"].as_array().expect("items").clone();
    items
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["metadata"]["namespace"].as_str().unwrap_or(""),
                i["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn configmap(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"k": "v"}})
}

#[track_caller]
fn expect_code(r: &HttpResponse, code: u16) {
    assert_eq!(r.status, code, "{}", r.text());
}

#[track_caller]
fn assert_router_status(r: &HttpResponse, code: u16, reason: &str, message: &str) {
    let st = r.assert_status(code, reason);
    assert_eq!(st["message"], message, "{st}");
    assert_eq!(st["details"], json!({}), "{st}");
}

#[test]
fn routes_validation_and_deletes() {
    let s = Server::start();
    for ns in ["fid-a", "fid-b"] {
        s.kubectl(&["create", "namespace", ns]);
    }
    for (ns, name) in [("fid-a", "x"), ("fid-b", "y"), ("kube-system", "fid-keep")] {
        expect_code(
            &s.request("POST", &format!("/api/v1/namespaces/{ns}/configmaps"), Some(&configmap(ns, name))),
            201,
        );
    }
    let before = all_configmaps(&s);
    assert!(before.iter().filter(|c| c.starts_with("kube-system/")).count() >= 1, "{before:?}");

    // The all-namespaces path of a namespaced resource lists and watches only.
    let r = s.request("DELETE", "/api/v1/configmaps", None);
    assert_router_status(&r, 405, "MethodNotAllowed", METHOD_NOT_ALLOWED);
    assert_eq!(all_configmaps(&s), before, "a refused DELETE deleted nothing");
    let r = s.request("POST", "/api/v1/configmaps", Some(&configmap("fid-a", "z")));
    assert_router_status(&r, 405, "MethodNotAllowed", METHOD_NOT_ALLOWED);
    let r = s.request("DELETE", "/apis/apps/v1/deployments", None);
    assert_router_status(&r, 405, "MethodNotAllowed", METHOD_NOT_ALLOWED);
    assert_eq!(s.request("GET", "/api/v1/configmaps", None).status, 200);
    // Other methods a path has no route for, and paths no route has.
    for (method, path) in [
        ("POST", "/api/v1/namespaces/fid-a/configmaps/x"),
        ("PUT", "/api/v1/namespaces/fid-a/configmaps"),
        ("PATCH", "/api/v1/namespaces/fid-a/configmaps"),
        ("DELETE", "/api/v1/namespaces"),
        ("DELETE", "/api/v1/namespaces/fid-a/pods/p/status"),
    ] {
        let r = s.request(method, path, None);
        assert_router_status(&r, 405, "MethodNotAllowed", METHOD_NOT_ALLOWED);
    }
    let head = s.curl("HEAD", "/api/v1/namespaces/fid-a/configmaps/x", Cred::Admin, &[], None);
    assert_eq!(head.status, 405, "{}", head.headers);
    for path in [
        "/api/v1/configmaps/x",
        "/api/v1/namespaces/fid-a/configmaps/x/status",
        "/api/v1/namespaces/fid-a/configmaps/x/a/b",
        "/api/v1/namespaces/fid-a/namespaces",
        "/api/v1/watch/namespaces/fid-a/pods/p/status",
    ] {
        let r = s.request("GET", path, None);
        assert_router_status(&r, 404, "NotFound", "the server could not find the requested resource");
    }
    assert_eq!(all_configmaps(&s), before);
    // A GET of one object ignores ?watch; the deprecated watch/ prefix watches it.
    let one = s.request("GET", "/api/v1/namespaces/fid-a/configmaps/x?watch=true", None);
    assert_eq!((one.status, one.json()["kind"].clone()), (200, json!("ConfigMap")), "{}", one.text());
    let w = s.request("GET", "/api/v1/watch/namespaces/fid-a/configmaps/x?timeoutSeconds=1", None);
    let first: Value = serde_json::from_str(w.text().lines().next().unwrap_or("")).expect("a watch event");
    assert_eq!((first["type"].as_str(), first["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("x")));
    // kubectl's own all-namespaces reads still work.
    assert!(s.kubectl(&["get", "configmaps", "-A"]).contains("fid-keep"));

    // Finalizer names are qualified names (upstream's ValidateFinalizers).
    let mut bad = configmap("fid-a", "bad-finalizers");
    bad["metadata"]["finalizers"] = json!(["é", "a b", "x/y/z", "example.com/fine"]);
    let r = s.request("POST", "/api/v1/namespaces/fid-a/configmaps", Some(&bad));
    let st = r.assert_status(422, "Invalid");
    let causes = st["details"]["causes"].as_array().expect("causes");
    let rule = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    let expected = [
        format!("Invalid value: \"é\": name part {rule}"),
        format!("Invalid value: \"a b\": name part {rule}"),
        format!("Invalid value: \"x/y/z\": a qualified name {rule} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"),
    ];
    assert_eq!(causes.len(), 3, "{st}");
    for (c, msg) in causes.iter().zip(expected) {
        assert_eq!(
            (c["reason"].as_str(), c["field"].as_str()),
            (Some("FieldValueInvalid"), Some("metadata.finalizers")),
            "{c}"
        );
        assert_eq!(c["message"], msg.as_str());
    }
    assert!(
        st["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("ConfigMap \"bad-finalizers\" is invalid: [metadata.finalizers: Invalid value: \"é\""),
        "{st}"
    );
    assert_eq!(s.request("GET", "/api/v1/namespaces/fid-a/configmaps/bad-finalizers", None).status, 404);

    // DELETE answers with the object where upstream's registry says so.
    s.kubectl(&["run", "p", "-n", "fid-a", "--image=nginx"]);
    s.kubectl(&["create", "service", "clusterip", "svc", "-n", "fid-a", "--tcp=80:80"]);
    s.kubectl(&["create", "serviceaccount", "sa", "-n", "fid-a"]);
    for (path, kind) in [
        ("/api/v1/namespaces/fid-a/pods/p", "Pod"),
        ("/api/v1/namespaces/fid-a/services/svc", "Service"),
        ("/api/v1/namespaces/fid-a/serviceaccounts/sa", "ServiceAccount"),
    ] {
        let r = s.request("DELETE", path, None);
        let obj = r.json();
        assert_eq!(
            (r.status, obj["kind"].as_str(), obj["apiVersion"].as_str()),
            (200, Some(kind), Some("v1")),
            "{obj}"
        );
        assert_eq!(s.request("GET", path, None).status, 404, "{path} is gone");
    }
    // Others answer with a Success Status naming the resource (no empty group).
    let r = s.request("DELETE", "/api/v1/namespaces/fid-b/configmaps/y", None);
    let st = r.json();
    assert_eq!(r.status, 200);
    assert_eq!(st["status"], "Success", "{st}");
    assert_eq!(st["details"]["name"], "y");
    assert_eq!(st["details"]["kind"], "configmaps");
    assert!(st["details"].get("group").is_none() && st["details"]["uid"].is_string(), "{st}");
    // A deletion waiting on a finalizer answers with the marked object.
    let mut held = configmap("fid-a", "held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    expect_code(&s.request("POST", "/api/v1/namespaces/fid-a/configmaps", Some(&held)), 201);
    let r = s.request("DELETE", "/api/v1/namespaces/fid-a/configmaps/held", None);
    let obj = r.json();
    assert_eq!((r.status, obj["kind"].as_str()), (200, Some("ConfigMap")), "{obj}");
    assert!(obj["metadata"]["deletionTimestamp"].is_string(), "{obj}");
    // Once deleting, no finalizer may be added.
    let more = r#"{"metadata":{"finalizers":["example.com/hold","example.com/more"]}}"#;
    s.kubectl_err(
        &["patch", "configmap", "held", "-n", "fid-a", "--type=merge", "-p", more],
        None,
        &["metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"example.com/more\"}"],
    );
    // orphanDependents=false (the old cascading request) makes it 202.
    let r = s.curl(
        "DELETE",
        "/api/v1/namespaces/fid-a/configmaps/held",
        Cred::Admin,
        &[("Content-Type", "application/json")],
        Some(br#"{"kind":"DeleteOptions","apiVersion":"v1","orphanDependents":false}"#),
    );
    assert_eq!((r.status, r.json()["kind"].clone()), (202, json!("ConfigMap")), "{}", r.text());
    s.kubectl(&[
        "patch",
        "configmap",
        "held",
        "-n",
        "fid-a",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    assert_eq!(s.request("GET", "/api/v1/namespaces/fid-a/configmaps/held", None).status, 404);
    // kubectl reads both answers.
    s.kubectl(&["run", "q", "-n", "fid-a", "--image=nginx"]);
    assert_eq!(s.kubectl(&["delete", "pod", "q", "-n", "fid-a"]), "pod \"q\" deleted\n");
    assert_eq!(s.kubectl(&["delete", "configmap", "x", "-n", "fid-a"]), "configmap \"x\" deleted\n");

    // A name segment is path-unescaped: '+' is itself (only a query makes
    // it a space), so an object whose name holds one is read and deleted.
    s.kubectl(&["create", "clusterrole", "fid+plus", "--verb=get", "--resource=pods"]);
    assert_eq!(s.kubectl_json(&["get", "clusterrole", "fid+plus"])["metadata"]["name"], json!("fid+plus"));
    let r = s.request("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/fid%2Bplus", None);
    assert_eq!((r.status, r.json()["metadata"]["name"].clone()), (200, json!("fid+plus")), "{}", r.text());
    assert_eq!(
        s.kubectl(&["delete", "clusterrole", "fid+plus"]),
        "clusterrole.rbac.authorization.k8s.io \"fid+plus\" deleted\n"
    );
}

/// Widgets, with spec properties whose order the answers keep.
fn widgets_crd() -> String {
    e2e::namespaced_crd(
        "example.com",
        "widgets",
        "Widget",
        "            type: object\n            properties:\n              zeta: {type: string}\n              alpha: {type: string}\n",
    )
}

#[test]
fn wire_form_negotiation_and_certificates() {
    let s = Server::start();
    s.kubectl(&["create", "namespace", "fid"]);
    let mut cm = configmap("fid", "c");
    cm["data"] = json!({"html": "<a href=\"x\">&</a>"});
    // The client's key order is not the answer's.
    let reordered = json!({"metadata": cm["metadata"], "data": cm["data"], "apiVersion": "v1", "kind": "ConfigMap"});
    let created = s.request("POST", "/api/v1/namespaces/fid/configmaps", Some(&reordered));
    assert_eq!(created.status, 201, "{}", created.text());

    // Objects lead with kind then apiVersion; Go's escaping; a trailing newline.
    let text = s.request("GET", "/api/v1/namespaces/fid/configmaps/c", None).text();
    assert!(
        text.starts_with(r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c","namespace":"fid","uid":""#),
        "{text}"
    );
    let at = |key: &str| text.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("no {key}: {text}"));
    assert!(
        at("resourceVersion") < at("creationTimestamp") && at("creationTimestamp") < at("managedFields"),
        "ObjectMeta's order: {text}"
    );
    assert!(at("managedFields") < at("data"), "metadata before the rest: {text}");
    assert!(text.ends_with("}\n"), "{text:?}");
    assert!(text.contains(r#""html":"\u003ca href=\"x\"\u003e\u0026\u003c/a\u003e""#), "{text}");
    assert!(created.text().starts_with(r#"{"kind":"ConfigMap","apiVersion":"v1","#), "{}", created.text());
    // A typed list: the list says what its items are; they carry no kind.
    let list = s.request("GET", "/api/v1/namespaces/fid/configmaps", None).text();
    assert!(list.starts_with(r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"#), "{list}");
    assert!(list.ends_with("}\n"));
    let items = serde_json::from_str::<Value>(&list).expect("list")["items"].clone();
    assert!(items[0].get("kind").is_none() && items[0].get("apiVersion").is_none(), "{items}");
    assert_eq!(items[0]["metadata"]["name"], "c");
    // Status: upstream's field order, byte for byte.
    let missing = s.request("GET", "/api/v1/namespaces/fid/configmaps/nope", None).text();
    assert_eq!(
        missing,
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"configmaps \\\"nope\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"nope\",\"kind\":\"configmaps\"},\"code\":404}\n"
    );
    // Watch events: one JSON line each, the object led by kind.
    let events = s.request("GET", "/api/v1/namespaces/fid/configmaps?watch=true&timeoutSeconds=1", None).text();
    let line = events.lines().next().unwrap_or("");
    assert!(line.starts_with(r#"{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1","#), "{events}");
    assert!(events.ends_with("}\n"), "{events:?}");
    // Custom resources are maps to upstream: every key sorted.
    s.apply_crd(&widgets_crd(), "widgets.example.com");
    let widget = json!({"kind": "Widget", "apiVersion": "example.com/v1", "spec": {"zeta": "z", "alpha": "a"},
        "metadata": {"namespace": "fid", "name": "w", "labels": {"b": "1", "a": "2"}}});
    assert_eq!(s.request("POST", "/apis/example.com/v1/namespaces/fid/widgets", Some(&widget)).status, 201);
    let text = s.request("GET", "/apis/example.com/v1/namespaces/fid/widgets/w", None).text();
    assert!(
        text.starts_with(r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"creationTimestamp":"#),
        "{text}"
    );
    assert!(text.contains(r#""labels":{"a":"2","b":"1"}"#), "{text}");
    assert!(text.ends_with("\"spec\":{\"alpha\":\"a\",\"zeta\":\"z\"}}\n"), "{text}");

    // Content negotiation: protobuf on its own, and q-values honoured.
    let get = |accept: &str, path: &str| s.curl("GET", path, Cred::Admin, &[("Accept", accept)], None);
    let cm_path = "/api/v1/namespaces/fid/configmaps/c";
    for accept in [
        "application/vnd.kubernetes.protobuf",
        "application/json;q=0.5, application/vnd.kubernetes.protobuf",
        "application/vnd.kubernetes.protobuf, application/json",
    ] {
        let r = get(accept, cm_path);
        assert_eq!(r.status, 200, "{accept}: {}", r.text());
        assert_eq!(r.header("Content-Type"), ["application/vnd.kubernetes.protobuf"], "{accept}");
        assert!(r.body.starts_with(b"k8s\0"), "{accept}: not a protobuf envelope");
    }
    let r = get("application/vnd.kubernetes.protobuf;q=0.5, application/json", cm_path);
    assert_eq!(r.header("Content-Type"), ["application/json"]);
    let r = get("application/yaml;q=0.9, application/json;q=0.1", cm_path);
    assert_eq!(r.header("Content-Type"), ["application/yaml"]);
    assert!(r.text().starts_with("apiVersion: v1\ndata:\n"), "YAML keys sorted: {}", r.text());
    // Custom resources have no protobuf form.
    get("application/vnd.kubernetes.protobuf", "/apis/example.com/v1/namespaces/fid/widgets/w")
        .assert_status(406, "NotAcceptable");
    let r =
        get("application/vnd.kubernetes.protobuf, application/json", "/apis/example.com/v1/namespaces/fid/widgets/w");
    assert_eq!(r.header("Content-Type"), ["application/json"]);
    // A protobuf watch streams length-prefixed WatchEvent frames.
    let r = get("application/vnd.kubernetes.protobuf", "/api/v1/namespaces/fid/configmaps?watch=true&timeoutSeconds=1");
    assert_eq!(r.header("Content-Type"), ["application/vnd.kubernetes.protobuf;stream=watch"]);
    assert!(r.body.len() > 4, "a frame");
    let len = u32::from_be_bytes([r.body[0], r.body[1], r.body[2], r.body[3]]) as usize;
    assert!(r.body.len() >= 4 + len && r.body[4..4 + len].windows(5).any(|w| w == b"ADDED"), "one ADDED frame");

    // Every answer is private and revalidated unless its handler chose
    // otherwise (upstream's WithCacheControl), refusals and errors included.
    let refused = s.curl("GET", "/api/v1/namespaces/fid/secrets", Cred::None, &[], None);
    assert!([401, 403].contains(&refused.status), "{}", refused.text());
    for (what, r) in [
        ("a GET", s.request("GET", "/api/v1/namespaces/fid/configmaps/c", None)),
        ("a 404", s.request("GET", "/api/v1/namespaces/fid/configmaps/missing", None)),
        ("a refusal", refused),
        ("a watch", get("application/json", "/api/v1/namespaces/fid/configmaps?watch=true&timeoutSeconds=1")),
        ("discovery", s.request("GET", "/apis", None)),
        ("an OpenAPI document not named by its hash", s.request("GET", "/openapi/v3/api/v1", None)),
        ("a health check", s.request("GET", "/readyz", None)),
    ] {
        assert_eq!(r.header("Cache-Control"), ["no-cache, private"], "{what}: {}", r.headers);
    }
    // A handler's own choice stands: an OpenAPI document named by its hash.
    let index = s.raw("/openapi/v3");
    let hashed = index["paths"]["api/v1"]["serverRelativeURL"].as_str().expect("api/v1's URL").to_string();
    let r = s.request("GET", &hashed, None);
    assert_eq!(r.header("Cache-Control"), ["public, immutable"], "{hashed}: {}", r.headers);

    // Every generated certificate passes strict X.509 verification.
    let openssl = require_tool("openssl");
    let pki = s.data_dir.join("pki");
    for (ca, cert) in [
        ("ca", "ca"),
        ("ca", "apiserver"),
        ("ca", "admin"),
        ("front-proxy-ca", "front-proxy-ca"),
        ("front-proxy-ca", "front-proxy-client"),
    ] {
        let out = Command::new(&openssl)
            .args(["verify", "-x509_strict", "-CAfile"])
            .arg(pki.join(format!("{ca}.crt")))
            .arg(pki.join(format!("{cert}.crt")))
            .output()
            .expect("running openssl");
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.trim().ends_with(": OK"), "{cert}.crt against {ca}.crt: {said}");
    }
}

e2e::on_etcd!(routes_validation_and_deletes);
