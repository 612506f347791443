//! The same workflow with kubectl 1.27 and 1.31 (JSON on the wire) and 1.33
//! (protobuf for built-in objects), each against its own server so that no
//! discovery cache is shared.

use e2e::{describe_value, table, table_names, Server};
use serde_json::json;

const APP: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
---
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {app: web}
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  labels: {app: web}
data:
  mode: blue
"#;

fn workflow(minor: u32) {
    let mut s = Server::start();
    s.kubectl_minor = Some(minor);

    let v = s.kubectl_json(&["version"]);
    assert_eq!(v["clientVersion"]["minor"], minor.to_string(), "running kubectl 1.{minor}");
    assert_eq!(v["serverVersion"]["minor"], "33");

    // Discovery without errors or warnings.
    for args in [&["api-resources"][..], &["api-versions"][..]] {
        let out = s.run(args, None);
        assert_eq!((out.code, out.stderr.as_str()), (0, ""), "kubectl 1.{minor} {args:?}: {out:?}");
    }
    assert!(s.kubectl(&["api-resources", "-o", "name"]).lines().any(|l| l == "deployments.apps"));

    // The wire format: 1.33 sends built-in objects as protobuf, older ones as JSON.
    let out = s.run(&["create", "configmap", "wire", "--from-literal=a=b", "-v=8"], None);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "configmap/wire created\n");
    let want = if minor >= 32 {
        "Content-Type: application/vnd.kubernetes.protobuf"
    } else {
        "Content-Type: application/json"
    };
    assert!(out.stderr.contains(want), "kubectl 1.{minor} request should carry {want}:\n{}", out.stderr);
    assert!(out.stderr.contains("201 Created"), "{}", out.stderr);
    assert_eq!(s.kubectl(&["get", "cm", "wire", "-o", "jsonpath={.data.a}"]), "b");

    // apply: created, unchanged, configured.
    assert_eq!(s.apply(APP), "deployment.apps/web created\nservice/web created\nconfigmap/web-config created\n");
    assert_eq!(s.apply(APP), "deployment.apps/web unchanged\nservice/web unchanged\nconfigmap/web-config unchanged\n");
    let v2 = APP.replace("nginx:1.25", "nginx:1.26");
    assert_eq!(s.apply(&v2), "deployment.apps/web configured\nservice/web unchanged\nconfigmap/web-config unchanged\n");

    // get in its forms.
    let rows = table(&s.kubectl(&["get", "deploy", "-o", "wide"]));
    assert_eq!(
        [&rows[0]["NAME"], &rows[0]["READY"], &rows[0]["IMAGES"], &rows[0]["SELECTOR"]],
        ["web", "0/1", "nginx:1.26", "app=web"]
    );
    let rows = table(&s.kubectl(&["get", "svc", "web", "-o", "wide"]));
    assert_eq!([&rows[0]["TYPE"], &rows[0]["PORT(S)"], &rows[0]["SELECTOR"]], ["ClusterIP", "80/TCP", "app=web"]);
    let mixed = s.kubectl(&["get", "deploy,svc,cm", "-l", "app=web", "-o", "name"]);
    assert_eq!(mixed, "deployment.apps/web\nservice/web\nconfigmap/web-config\n");
    let d = s.kubectl_json(&["get", "deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
    let y: serde_json::Value = serde_yaml::from_str(&s.kubectl(&["get", "svc", "web", "-o", "yaml"])).unwrap();
    assert_eq!(y["spec"]["sessionAffinity"], "None");
    assert!(y["spec"]["clusterIP"].as_str().unwrap().starts_with("10.0.0."));
    assert_eq!(s.kubectl(&["get", "cm", "web-config", "-o", "jsonpath={.data.mode}"]), "blue");
    let cc = table(&s.kubectl(&[
        "get",
        "deploy",
        "-o",
        "custom-columns=N:.metadata.name,R:.spec.replicas,I:.spec.template.spec.containers[0].image",
    ]));
    assert_eq!([&cc[0]["N"], &cc[0]["R"], &cc[0]["I"]], ["web", "1", "nginx:1.26"]);
    assert_eq!(table_names(&s.kubectl(&["get", "cm", "--field-selector", "metadata.name=wire"])), ["wire"]);
    let dd = s.kubectl(&["describe", "deployment", "web"]);
    assert_eq!(describe_value(&dd, "Name"), "web");
    assert_eq!(describe_value(&dd, "StrategyType"), "RollingUpdate");

    // edit with EDITOR.
    let editor = s.write_file("editor.sh", "#!/bin/sh\nsed -i 's/mode: blue/mode: green/' \"$1\"\n");
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = s.run_env(&["edit", "cm", "web-config"], None, &[("EDITOR", editor.to_str().unwrap())]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "configmap/web-config edited\n"), "{out:?}");
    assert_eq!(s.kubectl(&["get", "cm", "web-config", "-o", "jsonpath={.data.mode}"]), "green");

    // The three patch types, label, annotate, scale.
    s.kubectl(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox:1.36"}]}}}}"#,
    ]);
    let names: Vec<_> = s.kubectl_json(&["get", "deploy", "web"])["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, [json!("side"), json!("nginx")], "upstream's strategic merge order");
    assert_eq!(
        s.kubectl(&["patch", "cm", "web-config", "--type=merge", "-p", r#"{"data":{"x":"1"}}"#]),
        "configmap/web-config patched\n"
    );
    assert_eq!(
        s.kubectl(&[
            "patch",
            "cm",
            "web-config",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/data/y","value":"2"}]"#
        ]),
        "configmap/web-config patched\n"
    );
    assert_eq!(s.kubectl_json(&["get", "cm", "web-config"])["data"], json!({"mode": "green", "x": "1", "y": "2"}));
    assert_eq!(s.kubectl(&["label", "svc", "web", "tier=front"]), "service/web labeled\n");
    // kubectl 1.27 prints its operation as "annotate", later ones "annotated":
    // the wording is the client's own; what matters is that it succeeded.
    let annotated = s.kubectl(&["annotate", "deploy", "web", "note=hi"]);
    assert!(annotated.starts_with("deployment.apps/web annotate"), "{annotated}");
    assert_eq!(s.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.metadata.annotations.note}"]), "hi");
    assert_eq!(s.kubectl(&["scale", "deploy", "web", "--replicas=4"]), "deployment.apps/web scaled\n");
    assert_eq!(s.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "4");

    // replace with a stale resourceVersion fails.
    let stale = s.kubectl(&["get", "cm", "web-config", "-o", "yaml"]);
    s.kubectl(&["label", "cm", "web-config", "bump=1"]);
    s.kubectl_err(
        &["replace", "-f", "-"],
        Some(&stale.replace("mode: green", "mode: stale")),
        &[r#"Error from server (Conflict): error when replacing "STDIN": Operation cannot be fulfilled on configmaps "web-config": the object has been modified; please apply your changes to the latest version and try again"#],
    );
    // Default validation finds the server's strict field validation.
    s.kubectl_err(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: strict}\nbogus: 1\n"),
        &[r#"unknown field "bogus""#],
    );
    s.kubectl_err(&["get", "cm", "strict"], None, &["NotFound"]);
    // Bad input wording.
    s.kubectl_err(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-config}\n"),
        &[r#"Error from server (AlreadyExists): error when creating "STDIN": configmaps "web-config" already exists"#],
    );
    s.kubectl_err(&["get", "ns", "nope"], None, &[r#"Error from server (NotFound): namespaces "nope" not found"#]);

    let ex = s.kubectl(&["explain", "deployment.spec.replicas"]);
    assert!(ex.contains("Number of desired pods"), "kubectl 1.{minor} explain:\n{ex}");

    // delete -f, then --all.
    assert_eq!(
        s.kubectl_stdin(&["delete", "-f", "-"], Some(APP)),
        "deployment.apps \"web\" deleted\nservice \"web\" deleted\nconfigmap \"web-config\" deleted\n"
    );
    // The published root CA goes too (and comes back), as on a real cluster.
    assert_eq!(
        s.kubectl(&["delete", "cm", "--all"]),
        "configmap \"kube-root-ca.crt\" deleted\nconfigmap \"wire\" deleted\n"
    );
    assert_eq!(table_names(&s.kubectl(&["get", "svc"])), ["kubernetes"]);
    s.assert_healthy();
}

#[test]
fn kubectl_1_27_json() {
    workflow(27);
}

#[test]
fn kubectl_1_31_json() {
    workflow(31);
}

#[test]
fn kubectl_1_33_protobuf() {
    workflow(33);
}

e2e::on_etcd!(kubectl_1_27_json, kubectl_1_31_json, kubectl_1_33_protobuf);
