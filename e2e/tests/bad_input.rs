//! Errors a client can provoke: each is a metav1.Status with upstream's code and
//! reason, kubectl prints upstream's wording, storage is left untouched, and no
//! request yields a 500.

use e2e::{Cred, HttpResponse, Server};
use serde_json::{json, Value};

const CMS: &str = "/api/v1/namespaces/default/configmaps";

/// (method, path, headers, body) of a request no client should send.
type OddRequest<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Option<Vec<u8>>);

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "b"}})
}

fn post_raw(s: &Server, path: &str, content_type: &str, body: &[u8]) -> HttpResponse {
    s.curl("POST", path, Cred::Admin, &[("Content-Type", content_type)], Some(body))
}

/// The names of the configmaps in default, for "storage untouched" checks.
/// The ConfigMaps the test made (every namespace also holds the published
/// kube-root-ca.crt, as upstream's).
fn cm_names(s: &Server) -> Vec<String> {
    let l = s.raw(CMS);
    l["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .filter(|n| n != "kube-root-ca.crt")
        .collect()
}

#[test]
fn oversized_and_malformed_bodies() {
    let mut s = Server::start();
    s.kubectl(&["create", "configmap", "existing", "--from-literal=a=b"]);

    // > 3 MiB: 413 RequestEntityTooLarge, over HTTP and through kubectl.
    let big = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
        "data": {"blob": "x".repeat(4 * 1024 * 1024)}});
    let body = serde_json::to_vec(&big).unwrap();
    let json_ct = [("Content-Type", "application/json")];
    for version in ["--http1.1", "--http2"] {
        let r = s.curl_with(&[version], "POST", CMS, Cred::Admin, &json_ct, Some(&body));
        let st = r.assert_status(413, "RequestEntityTooLarge");
        assert_eq!(st["message"], "Request entity too large: limit is 3145728", "{version}");
    }
    let f = s.write_file("big.json", &body);
    s.kubectl_err(&["create", "-f", f.to_str().unwrap()], None, &["Error from server (RequestEntityTooLarge)"]);
    // Between the object limit (1 MiB of data) and the body limit: 422 Invalid.
    let mid = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mid"},
        "data": {"blob": "x".repeat(2 * 1024 * 1024)}});
    let r = s.request("POST", CMS, Some(&mid));
    let st = r.assert_status(422, "Invalid");
    // Upstream reports the size limit against the whole object: an empty field.
    assert_eq!(st["details"]["causes"][0]["field"], "", "{st}");
    assert_eq!(st["details"]["causes"][0]["reason"], "FieldValueTooLong", "{st}");

    // Malformed JSON and YAML: 400 BadRequest.
    for (ct, body) in [
        ("application/json", &br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"#[..]),
        ("application/json", b"not json at all"),
        ("application/json", b""),
        ("application/json", b"[1,2,3]"),
        ("application/json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":1}}"#),
        ("application/yaml", b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n"),
        ("application/yaml", b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  - a\n  - b\n"),
    ] {
        let r = post_raw(&s, CMS, ct, body);
        r.assert_status(400, "BadRequest");
    }
    // Unknown media type: 415.
    let r = post_raw(&s, CMS, "text/plain", serde_json::to_vec(&cm("plain")).unwrap().as_slice());
    r.assert_status(415, "UnsupportedMediaType");
    // Malformed input through kubectl.
    s.kubectl_err(&["create", "-f", "-"], Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [x\n"), &["error"]);
    let r = s.run(&["create", "--raw", CMS, "-f", "-"], Some("{\"kind\": "));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("Error from server (BadRequest)"), "{r:?}");
    assert_eq!(cm_names(&s), ["existing"], "failed requests stored nothing");
    s.assert_healthy();
}

#[test]
fn bodies_that_disagree_with_the_url() {
    let mut s = Server::start();
    s.kubectl(&["create", "ns", "other"]);
    s.kubectl(&["create", "configmap", "a", "--from-literal=a=b"]);

    // namespace in the body differs from the URL.
    let mut body = cm("x");
    body["metadata"]["namespace"] = json!("other");
    let st = s.request("POST", CMS, Some(&body)).assert_status(400, "BadRequest");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("the namespace of the provided object does not match the namespace sent on the request"),
        "{st}"
    );
    // name in the body differs from the URL on PUT.
    let mut b = s.raw(&format!("{CMS}/a"));
    b["metadata"]["name"] = json!("b");
    let st = s.request("PUT", &format!("{CMS}/a"), Some(&b)).assert_status(400, "BadRequest");
    assert!(
        st["message"].as_str().unwrap().contains("the name of the object (b) does not match the name on the URL (a)"),
        "{st}"
    );
    let f = s.write_file("b.json", b.to_string());
    s.kubectl_err(
        &["replace", "--raw", &format!("{CMS}/a"), "-f", f.to_str().unwrap()],
        None,
        &["Error from server (BadRequest)", "the name of the object (b) does not match the name on the URL (a)"],
    );
    // kind in the body differs from the resource.
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {}});
    s.request("POST", CMS, Some(&secret)).assert_status(400, "BadRequest");
    // apiVersion in the body differs from the URL's group/version.
    let dep = json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "v"}});
    s.request("POST", CMS, Some(&dep)).assert_status(400, "BadRequest");
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}});
    s.request("POST", CMS, Some(&d)).assert_status(400, "BadRequest");
    assert_eq!(cm_names(&s), ["a"]);
    let other = s.raw("/api/v1/namespaces/other/configmaps");
    let names: Vec<&str> =
        other["items"].as_array().into_iter().flatten().filter_map(|i| i["metadata"]["name"].as_str()).collect();
    assert_eq!(names, ["kube-root-ca.crt"], "nothing but the published root CA");
    s.assert_healthy();
}

#[test]
fn not_found_already_exists_conflict() {
    let mut s = Server::start();
    // Unknown resources and groups: 404 Status.
    for path in [
        "/api/v1/foos",
        "/api/v1/namespaces/default/foos/x",
        "/apis/nope.example.com/v1/things",
        "/apis/apps/v9/deployments",
        "/nonsense",
    ] {
        let st = s.curl("GET", path, Cred::Admin, &[], None).assert_status(404, "NotFound");
        assert_eq!(st["message"], "the server could not find the requested resource", "{path}");
    }
    s.kubectl_err(&["get", "foos"], None, &[r#"error: the server doesn't have a resource type "foos""#]);
    s.kubectl_err(
        &["get", "--raw", "/api/v1/foos"],
        None,
        &["Error from server (NotFound): the server could not find the requested resource"],
    );
    s.kubectl_err(&["get", "cm", "nope"], None, &[r#"Error from server (NotFound): configmaps "nope" not found"#]);
    s.kubectl_err(&["get", "ns", "nope"], None, &[r#"Error from server (NotFound): namespaces "nope" not found"#]);
    s.kubectl_err(
        &["get", "deploy", "nope"],
        None,
        &[r#"Error from server (NotFound): deployments.apps "nope" not found"#],
    );
    let st = s.request("GET", &format!("{CMS}/nope"), None).assert_status(404, "NotFound");
    assert_eq!(st["details"], json!({"name": "nope", "kind": "configmaps"}));
    assert_eq!(st["message"], r#"configmaps "nope" not found"#);
    let st =
        s.request("DELETE", "/apis/apps/v1/namespaces/default/deployments/nope", None).assert_status(404, "NotFound");
    assert_eq!(st["details"], json!({"name": "nope", "group": "apps", "kind": "deployments"}));

    // AlreadyExists.
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dup}\ndata: {a: b}\n";
    s.create(yaml);
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(yaml),
        &[r#"Error from server (AlreadyExists): error when creating "STDIN": configmaps "dup" already exists"#],
    );
    let st = s.request("POST", CMS, Some(&cm("dup"))).assert_status(409, "AlreadyExists");
    assert_eq!(st["details"], json!({"name": "dup", "kind": "configmaps"}));
    s.kubectl_err(&["create", "ns", "default"], None, &[r#"namespaces "default" already exists"#]);

    // Conflict: a stale resourceVersion on PUT, and a delete precondition.
    let mut stale = s.raw(&format!("{CMS}/dup"));
    s.kubectl(&["label", "cm", "dup", "x=y"]);
    stale["data"]["a"] = json!("stale");
    let st = s.request("PUT", &format!("{CMS}/dup"), Some(&stale)).assert_status(409, "Conflict");
    assert_eq!(
        st["message"],
        r#"Operation cannot be fulfilled on configmaps "dup": the object has been modified; please apply your changes to the latest version and try again"#
    );
    let cur = s.raw(&format!("{CMS}/dup"));
    assert_eq!(cur["data"]["a"], "b");
    let opts = json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": stale["metadata"]["resourceVersion"]}});
    s.request("DELETE", &format!("{CMS}/dup"), Some(&opts)).assert_status(409, "Conflict");
    let opts = json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}});
    s.request("DELETE", &format!("{CMS}/dup"), Some(&opts)).assert_status(409, "Conflict");
    assert_eq!(s.raw(&format!("{CMS}/dup"))["metadata"]["uid"], cur["metadata"]["uid"]);
    let opts = json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": cur["metadata"]["uid"], "resourceVersion": cur["metadata"]["resourceVersion"]}});
    let r = s.request("DELETE", &format!("{CMS}/dup"), Some(&opts));
    assert_eq!(r.status, 200, "{}", r.text());
    s.kubectl_err(&["get", "cm", "dup"], None, &["NotFound"]);
    // A PUT to a name that does not exist creates it for configmaps (AllowCreateOnUpdate is false: 404).
    let st = s.request("PUT", &format!("{CMS}/ghost"), Some(&cm("ghost"))).assert_status(404, "NotFound");
    assert_eq!(st["message"], r#"configmaps "ghost" not found"#);
    s.assert_healthy();
}

#[test]
fn namespace_missing_or_terminating() {
    let mut s = Server::start();
    // Missing namespace: NotFound on the namespace.
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: nope}\ndata: {a: b}\n";
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(yaml),
        &[r#"Error from server (NotFound): error when creating "STDIN": namespaces "nope" not found"#],
    );
    s.kubectl_err(
        &["create", "configmap", "x", "-n", "nope", "--from-literal=a=b"],
        None,
        &[r#"namespaces "nope" not found"#],
    );
    let st = s.request("POST", "/api/v1/namespaces/nope/configmaps", Some(&cm("x"))).assert_status(404, "NotFound");
    assert_eq!(st["details"], json!({"name": "nope", "kind": "namespaces"}));
    s.kubectl_err(&["get", "ns", "nope"], None, &[r#"Error from server (NotFound): namespaces "nope" not found"#]);

    // A namespace being deleted (held by a finalizer) refuses new objects.
    s.create("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: doomed\n  finalizers: [e2e.example.com/hold]\n");
    s.kubectl(&["create", "configmap", "early", "-n", "doomed", "--from-literal=a=b"]);
    assert_eq!(s.kubectl(&["delete", "ns", "doomed", "--wait=false"]), "namespace \"doomed\" deleted\n");
    let ns = s.kubectl_json(&["get", "ns", "doomed"]);
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert!(ns["metadata"]["deletionTimestamp"].is_string(), "{ns}");
    let row = e2e::table(&s.kubectl(&["get", "ns", "doomed"]));
    assert_eq!(row[0]["STATUS"], "Terminating");
    s.kubectl_err(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: late, namespace: doomed}\n"),
        &[r#"Error from server (Forbidden): error when creating "STDIN": configmaps "late" is forbidden: unable to create new content in namespace doomed because it is being terminated"#],
    );
    let st =
        s.request("POST", "/api/v1/namespaces/doomed/configmaps", Some(&cm("late2"))).assert_status(403, "Forbidden");
    assert_eq!(st["details"]["causes"][0]["reason"], "NamespaceTerminating", "{st}");
    s.kubectl_err(&["get", "cm", "late", "-n", "doomed"], None, &["NotFound"]);
    // Releasing the finalizer lets the namespace go once its content is gone.
    s.kubectl(&["patch", "ns", "doomed", "--type=json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers"}]"#]);
    s.assert_healthy();
}

#[test]
fn invalid_objects_are_422_with_causes() {
    let mut s = Server::start();
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\ndata: {a: b}\n";
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(yaml),
        &[r#"The ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"#],
    );
    let st = s.request("POST", CMS, Some(&cm("Bad_Name"))).assert_status(422, "Invalid");
    assert_eq!(st["details"]["name"], "Bad_Name");
    assert_eq!(st["details"]["kind"], "ConfigMap");
    assert_eq!(st["details"]["causes"][0]["field"], "metadata.name");
    assert_eq!(st["details"]["causes"][0]["reason"], "FieldValueInvalid");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .starts_with(r#"ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name""#),
        "{st}"
    );
    // Bad data keys.
    let mut bad_key = cm("badkey");
    bad_key["data"] = json!({"not/allowed": "x"});
    let st = s.request("POST", CMS, Some(&bad_key)).assert_status(422, "Invalid");
    assert_eq!(st["details"]["causes"][0]["field"], "data[not/allowed]");

    // Required fields: a pod without containers.
    s.kubectl_err(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: empty}\nspec: {containers: []}\n"),
        &[r#"The Pod "empty" is invalid: spec.containers: Required value"#],
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "noimage"},
        "spec": {"containers": [{"name": "c"}]}});
    let st = s.request("POST", "/api/v1/namespaces/default/pods", Some(&pod)).assert_status(422, "Invalid");
    let causes = st["details"]["causes"].as_array().unwrap();
    assert!(
        causes.iter().any(|c| c["field"] == "spec.containers[0].image" && c["reason"] == "FieldValueRequired"),
        "{st}"
    );
    // No name at all.
    let st = s
        .request("POST", CMS, Some(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})))
        .assert_status(422, "Invalid");
    assert_eq!(st["details"]["causes"][0]["field"], "metadata.name");
    assert_eq!(st["details"]["causes"][0]["reason"], "FieldValueRequired");

    // Immutable fields: an immutable configmap's data.
    s.create("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: frozen}\nimmutable: true\ndata: {a: b}\n");
    s.kubectl_err(
        &["patch", "cm", "frozen", "--type=merge", "-p", r#"{"data":{"a":"c"}}"#],
        None,
        &[r#"The ConfigMap "frozen" is invalid: data: Forbidden: field is immutable when `immutable` is set"#],
    );
    // Several invalid objects in one apply: each reported as Error from server (Invalid).
    let two = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_One}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Two}\n";
    let err = s.kubectl_err(&["apply", "-f", "-"], Some(two), &[]);
    assert_eq!(err.matches("Error from server (Invalid)").count(), 2, "{err}");
    assert!(
        err.contains(r#"ConfigMap "Bad_One" is invalid"#) && err.contains(r#"ConfigMap "Bad_Two" is invalid"#),
        "{err}"
    );
    let names = cm_names(&s);
    assert_eq!(names, ["frozen"]);
    s.assert_healthy();
}

#[test]
fn no_request_yields_a_500() {
    let mut s = Server::start();
    s.kubectl(&["create", "configmap", "c", "--from-literal=a=b"]);
    let json_ct = ("Content-Type", "application/json");
    let odd: Vec<OddRequest> = vec![
        ("GET", "/api/v1/namespaces/default/configmaps?labelSelector=%3D%3D%3D".into(), vec![], None),
        ("GET", "/api/v1/namespaces/default/configmaps?fieldSelector=bogus".into(), vec![], None),
        ("GET", "/api/v1/namespaces/default/configmaps?limit=-1".into(), vec![], None),
        ("GET", "/api/v1/namespaces/default/configmaps?limit=abc".into(), vec![], None),
        ("GET", "/api/v1/namespaces/default/configmaps?continue=garbage".into(), vec![], None),
        ("GET", "/api/v1/namespaces/default/configmaps?resourceVersion=abc".into(), vec![], None),
        ("GET", "/api/v1/namespaces/default/configmaps/c?resourceVersion=zzz".into(), vec![], None),
        ("GET", "/api/v1/namespaces/default/configmaps/c".into(), vec![("Accept", "application/x-nonsense")], None),
        ("GET", "/api/v1/namespaces/default/configmaps".into(), vec![("Accept", "application/json;as=Table;g=meta.k8s.io;v=v9")], None),
        ("GET", "/api/v1/namespaces/%ZZ/configmaps".into(), vec![], None),
        ("GET", "/api/v1/namespaces//configmaps".into(), vec![], None),
        ("GET", "/api/v1/namespaces/default/configmaps/c/nosuchsub".into(), vec![], None),
        ("GET", "/api".into(), vec![("Accept", "application/json;g=apidiscovery.k8s.io;v=v9;as=APIGroupDiscoveryList")], None),
        ("POST", "/api/v1/namespaces/default/configmaps/c".into(), vec![json_ct], Some(b"{}".to_vec())),
        ("PUT", "/api/v1/namespaces/default/configmaps".into(), vec![json_ct], Some(b"{}".to_vec())),
        ("PATCH", "/api/v1/namespaces/default/configmaps/c".into(), vec![("Content-Type", "application/json-patch+json")], Some(b"{\"op\":1}".to_vec())),
        ("PATCH", "/api/v1/namespaces/default/configmaps/c".into(), vec![("Content-Type", "application/json-patch+json")], Some(br#"[{"op":"replace","path":"/nope/deeper","value":1}]"#.to_vec())),
        ("PATCH", "/api/v1/namespaces/default/configmaps/c".into(), vec![("Content-Type", "application/json-patch+json")], Some(br#"[{"op":"test","path":"/data/a","value":"zzz"}]"#.to_vec())),
        ("PATCH", "/api/v1/namespaces/default/configmaps/c".into(), vec![("Content-Type", "application/merge-patch+json")], Some(b"[1]".to_vec())),
        ("PATCH", "/api/v1/namespaces/default/configmaps/c".into(), vec![("Content-Type", "application/merge-patch+json")], Some(br#"{"metadata":{"name":"other"}}"#.to_vec())),
        ("PATCH", "/api/v1/namespaces/default/configmaps/c".into(), vec![("Content-Type", "application/merge-patch+json")], Some(br#"{"data":{"a":7}}"#.to_vec())),
        ("PATCH", "/api/v1/namespaces/default/configmaps/c".into(), vec![("Content-Type", "application/strategic-merge-patch+json")], Some(br#"{"data":"notamap"}"#.to_vec())),
        ("PATCH", "/api/v1/namespaces/default/configmaps/c".into(), vec![("Content-Type", "text/plain")], Some(b"x".to_vec())),
        ("PATCH", "/api/v1/namespaces/default/configmaps/nope".into(), vec![("Content-Type", "application/merge-patch+json")], Some(b"{}".to_vec())),
        ("PATCH", "/apis/apps/v1/namespaces/default/deployments/nope/scale".into(), vec![("Content-Type", "application/merge-patch+json")], Some(b"{\"spec\":{\"replicas\":2}}".to_vec())),
        ("PUT", "/api/v1/namespaces/default/configmaps/c".into(), vec![json_ct], Some(b"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\"}".to_vec())),
        ("PUT", "/api/v1/namespaces/default/configmaps/c".into(), vec![json_ct], Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","resourceVersion":"notanumber"}}"#.to_vec())),
        ("DELETE", "/api/v1/namespaces/default/configmaps/c".into(), vec![json_ct], Some(b"{garbage".to_vec())),
        ("DELETE", "/api/v1/namespaces/default/configmaps/c?gracePeriodSeconds=abc".into(), vec![], None),
        ("DELETE", "/api/v1/namespaces/default/configmaps/c?propagationPolicy=Sideways".into(), vec![], None),
        ("DELETE", "/api/v1/namespaces/default/configmaps?labelSelector=((".into(), vec![], None),
        ("POST", "/api/v1/namespaces/default/configmaps?dryRun=Maybe".into(), vec![json_ct], Some(serde_json::to_vec(&cm("dr")).unwrap())),
        ("POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Loose".into(), vec![json_ct], Some(serde_json::to_vec(&cm("fv")).unwrap())),
        ("POST", "/api/v1/namespaces/default/pods".into(), vec![json_ct], Some(br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i","ports":[{"containerPort":"eighty"}]}]}}"#.to_vec())),
        ("POST", "/api/v1/namespaces/default/pods".into(), vec![json_ct], Some(br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p2"},"spec":{"containers":[{"name":"c","image":"i","resources":{"limits":{"cpu":"lots"}}}]}}"#.to_vec())),
        ("POST", "/api/v1/namespaces/default/services".into(), vec![json_ct], Some(br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"clusterIP":"not-an-ip","ports":[{"port":80}]}}"#.to_vec())),
        ("POST", "/api/v1/namespaces/default/services".into(), vec![json_ct], Some(br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"s2"},"spec":{"ports":[{"port":99999}]}}"#.to_vec())),
        ("POST", "/apis/apps/v1/namespaces/default/deployments".into(), vec![json_ct], Some(br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{}}"#.to_vec())),
        ("POST", "/apis/apps/v1/namespaces/default/deployments".into(), vec![json_ct], Some(br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d2"},"spec":{"selector":{"matchExpressions":[{"key":"a","operator":"Bogus"}]},"template":{}}}"#.to_vec())),
        ("POST", "/api/v1/namespaces".into(), vec![json_ct], Some(br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x","namespace":"y"}}"#.to_vec())),
        ("POST", "/api/v1/namespaces/default/configmaps".into(), vec![("Content-Type", "application/vnd.kubernetes.protobuf")], Some(b"k8s\0garbage".to_vec())),
        ("POST", "/api/v1/namespaces/default/configmaps".into(), vec![("Content-Type", "application/vnd.kubernetes.protobuf")], Some(b"notk8s".to_vec())),
        ("GET", "/api/v1/watch/namespaces/default/configmaps?timeoutSeconds=1&resourceVersion=abc".into(), vec![], None),
        ("OPTIONS", "/api/v1/namespaces/default/configmaps".into(), vec![], None),
        ("TRACE", "/api/v1".into(), vec![], None),
        ("HEAD", "/api/v1/namespaces/default/configmaps".into(), vec![], None),
    ];
    for (method, path, headers, body) in &odd {
        let r = s.curl(method, path, Cred::Admin, headers, body.as_deref());
        assert!(r.status < 500, "{method} {path} gave {}: {}", r.status, r.text());
        if r.status >= 400 && method != &"HEAD" && !r.body.is_empty() {
            let v: Value = serde_json::from_slice(&r.body)
                .unwrap_or_else(|e| panic!("{method} {path}: error body is not JSON ({e}): {}", r.text()));
            assert_eq!(v["kind"], "Status", "{method} {path}: {v}");
            assert_eq!(v["code"], r.status, "{method} {path}: {v}");
        }
    }
    // The configmap is as it was, and the bad creates stored nothing.
    assert_eq!(s.raw(&format!("{CMS}/c"))["data"], json!({"a": "b"}));
    assert_eq!(cm_names(&s), ["c"]);
    assert_eq!(s.raw("/api/v1/namespaces/default/pods")["items"], json!([]));
    s.assert_healthy();
}

e2e::on_etcd!(
    oversized_and_malformed_bodies,
    bodies_that_disagree_with_the_url,
    not_found_already_exists_conflict,
    namespace_missing_or_terminating,
    invalid_objects_are_422_with_causes,
    no_request_yields_a_500
);
