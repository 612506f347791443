//! Discovery, health, version, bootstrap objects, OpenAPI and `kubectl explain`.

use e2e::{table, Cred, Server};
use serde_json::{json, Value};

fn verbs(cell: &str) -> Vec<String> {
    cell.trim_matches(|c| c == '[' || c == ']')
        .split([',', ' '])
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

const ALL_VERBS: [&str; 8] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

#[test]
fn api_resources_and_versions_discover_cleanly() {
    let mut s = Server::start();
    let out = s.run(&["api-resources", "-o", "wide"], None);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stderr, "", "discovery must print no errors or warnings");
    let rows = table(&out.stdout);
    let row = |name: &str, version: &str| {
        rows.iter()
            .find(|r| r["NAME"] == name && r["APIVERSION"] == version)
            .unwrap_or_else(|| panic!("api-resources lacks {name} {version}:\n{}", out.stdout))
            .clone()
    };
    for (name, version, short, namespaced, kind, cats) in [
        ("pods", "v1", "po", "true", "Pod", "all"),
        ("services", "v1", "svc", "true", "Service", "all"),
        ("configmaps", "v1", "cm", "true", "ConfigMap", ""),
        ("secrets", "v1", "", "true", "Secret", ""),
        ("serviceaccounts", "v1", "sa", "true", "ServiceAccount", ""),
        ("events", "v1", "ev", "true", "Event", ""),
        ("namespaces", "v1", "ns", "false", "Namespace", ""),
        ("deployments", "apps/v1", "deploy", "true", "Deployment", "all"),
    ] {
        let r = row(name, version);
        assert_eq!(
            [r["SHORTNAMES"].as_str(), r["NAMESPACED"].as_str(), r["KIND"].as_str(), r["CATEGORIES"].as_str()],
            [short, namespaced, kind, cats],
            "{name}"
        );
    }
    for name in ["pods", "configmaps", "secrets", "serviceaccounts", "events"] {
        assert_eq!(verbs(&row(name, "v1")["VERBS"]), ALL_VERBS, "{name} verbs");
    }
    assert_eq!(verbs(&row("deployments", "apps/v1")["VERBS"]), ALL_VERBS);
    assert_eq!(
        verbs(&row("namespaces", "v1")["VERBS"]),
        ["create", "delete", "get", "list", "patch", "update", "watch"]
    );
    // Subresources are not listed as resources.
    assert!(!rows.iter().any(|r| r["NAME"].contains('/')), "{}", out.stdout);

    let out = s.run(&["api-versions"], None);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
    let versions: Vec<&str> = out.stdout.lines().collect();
    assert!(versions.contains(&"v1") && versions.contains(&"apps/v1"), "{versions:?}");

    // Short names and kinds resolve through discovery.
    for arg in ["po", "svc", "cm", "sa", "ev", "ns", "deploy", "deployments.apps", "deployment.v1.apps"] {
        let out = s.run(&["get", arg, "-A"], None);
        assert_eq!(out.code, 0, "kubectl get {arg}: {out:?}");
    }

    // The legacy (unaggregated) documents.
    let api = s.raw("/api");
    assert_eq!(api["kind"], "APIVersions");
    assert_eq!(api["versions"], json!(["v1"]));
    let v1 = s.raw("/api/v1");
    assert_eq!(v1["kind"], "APIResourceList");
    assert_eq!(v1["groupVersion"], "v1");
    let names: Vec<&str> = v1["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    for n in ["pods", "pods/status", "services", "configmaps", "secrets", "serviceaccounts", "events", "namespaces"] {
        assert!(names.contains(&n), "/api/v1 lacks {n}: {names:?}");
    }
    let pods = v1["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods").unwrap();
    assert_eq!(pods["singularName"], "pod");
    assert_eq!(pods["namespaced"], true);
    assert_eq!(pods["kind"], "Pod");
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert_eq!(pods["categories"], json!(["all"]));
    let apis = s.raw("/apis");
    assert_eq!(apis["kind"], "APIGroupList");
    let apps = apis["groups"].as_array().unwrap().iter().find(|g| g["name"] == "apps").expect("apps group");
    assert_eq!(apps["preferredVersion"], json!({"groupVersion": "apps/v1", "version": "v1"}));
    let appsv1 = s.raw("/apis/apps/v1");
    let scale = appsv1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "deployments/scale")
        .expect("deployments/scale");
    assert_eq!(
        (&scale["group"], &scale["version"], &scale["kind"]),
        (&json!("autoscaling"), &json!("v1"), &json!("Scale"))
    );
    assert!(appsv1["resources"].as_array().unwrap().iter().any(|r| r["name"] == "deployments/status"));
    let group = s.raw("/apis/apps");
    assert_eq!(group["kind"], "APIGroup");
    assert_eq!(group["name"], "apps");

    // Aggregated discovery, both versions kubectl 1.27-1.33 ask for.
    for v in ["v2", "v2beta1"] {
        let accept = format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList,application/json");
        for path in ["/api", "/apis"] {
            let r = s.curl("GET", path, Cred::Admin, &[("Accept", &accept)], None);
            assert_eq!(r.status, 200, "{path} {v}: {}", r.text());
            let ct = r.header("content-type").join(",");
            assert!(ct.contains(&format!("v={v}")) && ct.contains("as=APIGroupDiscoveryList"), "{path} {v}: {ct}");
            let doc = r.json();
            assert_eq!(doc["kind"], "APIGroupDiscoveryList", "{path} {v}");
            assert_eq!(doc["apiVersion"], format!("apidiscovery.k8s.io/{v}"));
            if path == "/api" {
                let res = &doc["items"][0]["versions"][0];
                assert_eq!(res["version"], "v1");
                let pods = res["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "pods").expect("pods");
                assert_eq!(pods["responseKind"], json!({"group": "", "version": "v1", "kind": "Pod"}));
                assert_eq!(pods["scope"], "Namespaced");
                assert_eq!(pods["singularResource"], "pod");
                assert_eq!(pods["shortNames"], json!(["po"]));
                let sub = pods["subresources"].as_array().expect("pods has subresources");
                assert!(sub.iter().any(|s| s["subresource"] == "status"), "{pods}");
                let ns = res["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "namespaces").unwrap();
                assert_eq!(ns["scope"], "Cluster");
            } else {
                let apps =
                    doc["items"].as_array().unwrap().iter().find(|g| g["metadata"]["name"] == "apps").expect("apps");
                let deploy = apps["versions"][0]["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["resource"] == "deployments")
                    .expect("deployments");
                let subs: Vec<&Value> =
                    deploy["subresources"].as_array().unwrap().iter().map(|s| &s["subresource"]).collect();
                assert!(subs.contains(&&json!("scale")) && subs.contains(&&json!("status")), "{deploy}");
            }
        }
    }
    s.assert_healthy();
}

#[test]
fn health_and_version() {
    let mut s = Server::start();
    for ep in ["livez", "readyz", "healthz"] {
        assert_eq!(s.kubectl(&["get", "--raw", &format!("/{ep}")]), "ok");
        let verbose = s.kubectl(&["get", "--raw", &format!("/{ep}?verbose")]);
        let lines: Vec<&str> = verbose.lines().collect();
        assert_eq!(lines.first(), Some(&"[+]ping ok"), "/{ep}?verbose:\n{verbose}");
        assert_eq!(lines.last().copied(), Some(format!("{ep} check passed").as_str()), "/{ep}?verbose:\n{verbose}");
        assert!(lines[..lines.len() - 1].iter().all(|l| l.starts_with("[+]") && l.ends_with(" ok")), "{verbose}");
        assert!(verbose.ends_with('\n'), "verbose health output ends with a newline: {verbose:?}");
        assert_eq!(s.kubectl(&["get", "--raw", &format!("/{ep}/ping")]), "ok");
        let r = s.curl("GET", &format!("/{ep}"), Cred::Admin, &[], None);
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    }
    let v = s.raw("/version");
    assert_eq!(v["major"], "1");
    assert_eq!(v["minor"], "33");
    assert!(v["gitVersion"].as_str().unwrap().starts_with("v1.33."), "{v}");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(v["platform"], format!("linux/{arch}"), "platform is GOOS/GOARCH as upstream: {v}");
    let kv = s.kubectl_json(&["version"]);
    assert_eq!(kv["serverVersion"]["minor"], "33");
    assert_eq!(kv["clientVersion"]["minor"], "33", "the default kubectl follows the server's minor");
    let out = s.run(&["version"], None);
    assert_eq!(out.stderr, "", "no version-skew warning: {out:?}");
    s.assert_healthy();
}

#[test]
fn bootstrap_namespaces_and_kubernetes_service() {
    let mut s = Server::start();
    assert_eq!(
        s.kubectl(&["get", "ns", "-o", "name"]),
        "namespace/default\nnamespace/kube-node-lease\nnamespace/kube-public\nnamespace/kube-system\n"
    );
    let rows = table(&s.kubectl(&["get", "namespaces"]));
    assert!(rows.iter().all(|r| r["STATUS"] == "Active"), "{rows:?}");
    let svc = s.kubectl_json(&["get", "svc", "kubernetes", "-n", "default"]);
    assert_eq!(svc["spec"]["clusterIP"], "10.0.0.1", "the first address of --service-cluster-ip-range");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["sessionAffinity"], "None");
    assert_eq!(svc["metadata"]["labels"], json!({"component": "apiserver", "provider": "kubernetes"}));
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": s.port()}])
    );
    let rows = table(&s.kubectl(&["get", "svc"]));
    assert_eq!(
        [&rows[0]["NAME"], &rows[0]["TYPE"], &rows[0]["CLUSTER-IP"], &rows[0]["EXTERNAL-IP"], &rows[0]["PORT(S)"]],
        ["kubernetes", "ClusterIP", "10.0.0.1", "<none>", "443/TCP"]
    );
    // A custom range moves the kubernetes service.
    let mut other = Server::start_with(&["--service-cluster-ip-range", "10.96.0.0/16"]);
    assert_eq!(other.kubectl(&["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]), "10.96.0.1");
    other.kubectl(&["create", "service", "clusterip", "x", "--tcp=80"]);
    let ip = other.kubectl(&["get", "svc", "x", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(ip.starts_with("10.96.") && ip != "10.96.0.1", "{ip}");
    other.assert_healthy();
    s.assert_healthy();
}

#[test]
fn openapi_documents_and_explain() {
    let mut s = Server::start();
    let out = s.kubectl(&["explain", "deployment.spec.replicas"]);
    assert!(out.contains("GROUP:      apps"), "{out}");
    assert!(out.contains("KIND:       Deployment"), "{out}");
    assert!(out.contains("VERSION:    v1"), "{out}");
    assert!(out.contains("FIELD: replicas <integer>"), "{out}");
    assert!(out.contains("Number of desired pods."), "{out}");
    let out = s.kubectl(&["explain", "pods"]);
    assert!(out.contains("KIND:       Pod"), "{out}");
    assert!(out.contains("  spec\t<PodSpec>"), "{out}");
    assert!(out.contains("  metadata\t<ObjectMeta>"), "{out}");
    let out = s.kubectl(&["explain", "configmap.data"]);
    assert!(out.contains("FIELD: data <map[string]string>"), "{out}");
    let out = s.kubectl(&["explain", "svc.spec.ports.targetPort"]);
    // IntOrString is upstream's `type: string, format: int-or-string`, and
    // kubectl's v3 explain names a referenced primitive by its type.
    assert!(out.contains("FIELD: targetPort <string>"), "{out}");
    assert!(out.contains("Number or name of the port to access on the pods"), "{out}");
    s.kubectl_err(&["explain", "deployment.spec.nope"], None, &["field \"nope\" does not exist"]);

    // OpenAPI v2.
    let v2 = s.raw("/openapi/v2");
    assert_eq!(v2["swagger"], "2.0");
    let dep = &v2["definitions"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        dep["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    let containers = &v2["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert!(v2["paths"]["/api/v1/namespaces/{namespace}/configmaps"].is_object(), "v2 has paths");

    // OpenAPI v3: the index and a group-version document.
    let idx = s.raw("/openapi/v3");
    for p in ["api/v1", "apis/apps/v1"] {
        let url =
            idx["paths"][p]["serverRelativeURL"].as_str().unwrap_or_else(|| panic!("/openapi/v3 lacks {p}: {idx}"));
        assert!(url.starts_with(&format!("/openapi/v3/{p}?hash=")), "{url}");
        let doc = s.raw(url);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{p}");
    }
    let apps = s.raw("/openapi/v3/apis/apps/v1");
    let schema = &apps["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(schema["x-kubernetes-group-version-kind"][0]["kind"], "Deployment");
    let replicas = &apps["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"];
    assert_eq!(replicas["type"], "integer");
    assert!(replicas["description"].as_str().unwrap().starts_with("Number of desired pods."));
    // kubectl finds server-side field validation through this parameter.
    let patch = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    let params: Vec<&str> =
        patch["parameters"].as_array().expect("patch parameters").iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(params.contains(&"fieldValidation") && params.contains(&"dryRun"), "{params:?}");
    s.assert_healthy();
}

e2e::on_etcd!(
    api_resources_and_versions_discover_cleanly,
    health_and_version,
    bootstrap_namespaces_and_kubernetes_service,
    openapi_documents_and_explain
);
