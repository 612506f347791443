//! The everyday kubectl workflows against the real binary with the default kubectl:
//! create, apply, get in every output form, selectors, describe, edit, the three
//! patch types, label, annotate, replace (stale and fresh), delete, delete --all,
//! plus the built-in resources' defaults, subresources and table columns.

use e2e::{describe_value, table, table_names, Server};
use serde_json::{json, Value};

fn yaml(s: &str) -> Value {
    serde_yaml::from_str(s).unwrap_or_else(|e| panic!("not YAML ({e}): {s}"))
}

fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no resourceVersion in {v}"))
        .parse()
        .unwrap_or_else(|_| panic!("resourceVersion is not a decimal: {v}"))
}

const CONFIGMAPS: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-cm
  namespace: team-a
  labels: {app: web, tier: frontend}
data:
  mode: blue
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: api-cm
  namespace: team-a
  labels: {app: api, tier: backend}
data:
  mode: red
  size: "3"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: plain-cm
  namespace: team-a
data: {}
"#;

#[test]
fn configmap_workflow_create_get_select_describe() {
    let mut s = Server::start();
    assert_eq!(s.kubectl(&["create", "namespace", "team-a"]), "namespace/team-a created\n");
    assert_eq!(
        s.create(CONFIGMAPS),
        "configmap/web-cm created\nconfigmap/api-cm created\nconfigmap/plain-cm created\n"
    );

    // Table output: the columns upstream prints for configmaps, rows sorted by name.
    let rows = table(&s.kubectl(&["get", "configmaps", "-n", "team-a"]));
    let cols: Vec<_> = rows[0].keys().cloned().collect();
    assert_eq!(cols, ["AGE", "DATA", "NAME"]);
    let summary: Vec<_> = rows.iter().map(|r| (r["NAME"].as_str(), r["DATA"].as_str())).collect();
    // Every namespace holds the published root CA, as upstream's.
    assert_eq!(summary, [("api-cm", "2"), ("kube-root-ca.crt", "1"), ("plain-cm", "0"), ("web-cm", "1")]);
    let wide = table(&s.kubectl(&["get", "cm", "-n", "team-a", "-o", "wide"]));
    assert_eq!(wide.len(), 4);

    // -o yaml / -o json carry the server-set metadata.
    let y = yaml(&s.kubectl(&["get", "cm", "web-cm", "-n", "team-a", "-o", "yaml"]));
    assert_eq!(y["kind"], "ConfigMap");
    assert_eq!(y["apiVersion"], "v1");
    assert_eq!(y["data"], json!({"mode": "blue"}));
    assert_eq!(y["metadata"]["labels"], json!({"app": "web", "tier": "frontend"}));
    let uid = y["metadata"]["uid"].as_str().expect("uid");
    assert_eq!(uid.len(), 36, "uid is a UUID: {uid}");
    assert!(rv(&y) > 0);
    let ts = y["metadata"]["creationTimestamp"].as_str().expect("creationTimestamp");
    assert!(ts.len() == 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "RFC3339 timestamp: {ts}");
    let j = s.kubectl_json(&["get", "cm", "web-cm", "-n", "team-a"]);
    assert_eq!(j["metadata"]["uid"], uid);
    let list = s.kubectl_json(&["get", "cm", "-n", "team-a"]);
    assert_eq!(list["kind"], "List");
    let names: Vec<_> = list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].clone()).collect();
    assert_eq!(names, [json!("api-cm"), json!("kube-root-ca.crt"), json!("plain-cm"), json!("web-cm")]);

    // jsonpath and custom-columns.
    assert_eq!(s.kubectl(&["get", "cm", "web-cm", "-n", "team-a", "-o", "jsonpath={.data.mode}"]), "blue");
    assert_eq!(
        s.kubectl(&["get", "cm", "-n", "team-a", "-o", "jsonpath={.items[*].metadata.name}"]),
        "api-cm kube-root-ca.crt plain-cm web-cm"
    );
    let cc = table(&s.kubectl(&[
        "get",
        "cm",
        "-n",
        "team-a",
        "-o",
        "custom-columns=NAME:.metadata.name,MODE:.data.mode,APP:.metadata.labels.app",
    ]));
    let cc: Vec<_> = cc.iter().map(|r| (r["NAME"].clone(), r["MODE"].clone(), r["APP"].clone())).collect();
    assert_eq!(
        cc,
        [
            ("api-cm".into(), "red".into(), "api".into()),
            ("kube-root-ca.crt".into(), "<none>".into(), "<none>".into()),
            ("plain-cm".into(), "<none>".into(), "<none>".into()),
            ("web-cm".into(), "blue".into(), "web".into())
        ]
    );
    assert_eq!(s.kubectl(&["get", "cm", "-n", "team-a", "-l", "app=web", "-o", "name"]), "configmap/web-cm\n");

    // Label selectors: every operator.
    for (sel, want) in [
        ("app=web", vec!["web-cm"]),
        ("app==web", vec!["web-cm"]),
        ("app!=web", vec!["api-cm", "kube-root-ca.crt", "plain-cm"]),
        ("app in (web,api)", vec!["api-cm", "web-cm"]),
        ("app notin (web)", vec!["api-cm", "kube-root-ca.crt", "plain-cm"]),
        ("tier", vec!["api-cm", "web-cm"]),
        ("!tier", vec!["kube-root-ca.crt", "plain-cm"]),
        ("app=web,tier=frontend", vec!["web-cm"]),
        ("app=web,tier=backend", vec![]),
    ] {
        let out = s.run(&["get", "cm", "-n", "team-a", "-l", sel], None);
        assert_eq!(out.code, 0, "-l {sel}: {out:?}");
        assert_eq!(table_names(&out.stdout), want, "-l {sel}");
        if want.is_empty() {
            assert_eq!(out.stderr, "No resources found in team-a namespace.\n");
        }
    }
    // Field selectors, and one that is not supported for configmaps.
    assert_eq!(
        table_names(&s.kubectl(&["get", "cm", "-n", "team-a", "--field-selector", "metadata.name=api-cm"])),
        ["api-cm"]
    );
    assert_eq!(
        table_names(&s.kubectl(&["get", "cm", "-n", "team-a", "--field-selector", "metadata.name!=api-cm"])),
        ["kube-root-ca.crt", "plain-cm", "web-cm"]
    );
    let all = table(&s.kubectl(&["get", "cm", "-A", "--field-selector", "metadata.namespace=team-a"]));
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|r| r["NAMESPACE"] == "team-a"));
    s.kubectl_err(
        &["get", "cm", "-n", "team-a", "--field-selector", "data.mode=blue"],
        None,
        &["Error from server (BadRequest)", "field label not supported: data.mode"],
    );

    // describe (which also searches events with involvedObject field selectors).
    let d = s.kubectl(&["describe", "cm", "web-cm", "-n", "team-a"]);
    assert_eq!(describe_value(&d, "Name"), "web-cm");
    assert_eq!(describe_value(&d, "Namespace"), "team-a");
    assert_eq!(describe_value(&d, "Labels"), "app=web");
    assert_eq!(describe_value(&d, "Annotations"), "<none>");
    assert!(d.contains("\nmode:\n----\nblue\n"), "describe shows the data:\n{d}");
    assert_eq!(describe_value(&d, "Events"), "<none>");

    // An event about the configmap shows up in describe and by field selector.
    let ev = format!(
        r#"
apiVersion: v1
kind: Event
metadata: {{name: web-cm.1, namespace: team-a}}
involvedObject: {{apiVersion: v1, kind: ConfigMap, name: web-cm, namespace: team-a, uid: {uid}}}
reason: Tested
message: the e2e suite looked at it
type: Warning
source: {{component: e2e}}
firstTimestamp: "2025-01-01T00:00:00Z"
lastTimestamp: "2025-01-01T00:00:00Z"
count: 2
"#
    );
    assert_eq!(s.create(&ev), "event/web-cm.1 created\n");
    let d = s.kubectl(&["describe", "cm", "web-cm", "-n", "team-a"]);
    let ev_line = d.lines().find(|l| l.contains("Tested")).unwrap_or_else(|| panic!("describe lists the event:\n{d}"));
    assert!(
        ev_line.trim_start().starts_with("Warning") && ev_line.ends_with("the e2e suite looked at it"),
        "{ev_line}"
    );
    for sel in
        ["involvedObject.name=web-cm", "involvedObject.kind=ConfigMap", "reason=Tested", "type=Warning", "source=e2e"]
    {
        let rows = table(&s.kubectl(&["get", "events", "-n", "team-a", "--field-selector", sel]));
        assert_eq!(rows.len(), 1, "--field-selector {sel}");
        assert_eq!(rows[0]["REASON"], "Tested");
        assert_eq!(rows[0]["TYPE"], "Warning");
        assert_eq!(rows[0]["OBJECT"], "configmap/web-cm");
        assert_eq!(rows[0]["MESSAGE"], "the e2e suite looked at it");
    }
    assert!(table(&s.kubectl(&["get", "ev", "-n", "team-a", "--field-selector", "reason=Other"])).is_empty());
    s.assert_healthy();
}

#[test]
fn configmap_workflow_modify_and_delete() {
    let mut s = Server::start();
    s.kubectl(&["create", "namespace", "team-a"]);
    s.create(CONFIGMAPS);
    let ns = ["-n", "team-a"];
    let get = |name: &str| s.kubectl_json(&["get", "cm", name, "-n", "team-a"]);
    let with_ns = |args: &[&'static str]| -> Vec<&'static str> { args.iter().copied().chain(ns).collect() };

    // apply: create, unchanged, configured.
    let applied = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: team-a\ndata:\n  k: v1\n";
    assert_eq!(s.apply(applied), "configmap/applied created\n");
    assert_eq!(s.apply(applied), "configmap/applied unchanged\n");
    assert_eq!(s.apply(&applied.replace("k: v1", "k: v2")), "configmap/applied configured\n");
    let a = get("applied");
    assert_eq!(a["data"]["k"], "v2");
    let last = a["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .expect("apply records last-applied-configuration");
    assert_eq!(serde_json::from_str::<Value>(last).unwrap()["data"]["k"], "v2");

    // edit with EDITOR set to a script.
    let editor = s.write_file("editor.sh", "#!/bin/sh\nsed -i 's/mode: blue/mode: edited/' \"$1\"\n");
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let before = rv(&get("web-cm"));
    let out = s.run_env(&with_ns(&["edit", "cm", "web-cm"]), None, &[("EDITOR", editor.to_str().unwrap())]);
    assert_eq!(out.code, 0, "kubectl edit: {out:?}");
    assert_eq!(out.stdout, "configmap/web-cm edited\n");
    let after = get("web-cm");
    assert_eq!(after["data"]["mode"], "edited");
    assert!(rv(&after) > before, "edit bumps resourceVersion");
    // An editor that changes nothing: kubectl cancels.
    let noop = s.write_file("noop.sh", "#!/bin/sh\ntrue\n");
    std::fs::set_permissions(&noop, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = s.run_env(&with_ns(&["edit", "cm", "web-cm"]), None, &[("EDITOR", noop.to_str().unwrap())]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("Edit cancelled, no changes made."), "{out:?}");

    // The three patch types.
    assert_eq!(
        s.kubectl(&with_ns(&["patch", "cm", "web-cm", "--type=merge", "-p", r#"{"data":{"extra":"1"}}"#])),
        "configmap/web-cm patched\n"
    );
    assert_eq!(get("web-cm")["data"], json!({"mode": "edited", "extra": "1"}));
    assert_eq!(
        s.kubectl(&with_ns(&[
            "patch",
            "cm",
            "web-cm",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/data/extra","value":"2"},{"op":"remove","path":"/data/mode"}]"#
        ])),
        "configmap/web-cm patched\n"
    );
    assert_eq!(get("web-cm")["data"], json!({"extra": "2"}));
    assert_eq!(
        s.kubectl(&with_ns(&["patch", "cm", "web-cm", "-p", r#"{"data":{"mode":"strategic"}}"#])),
        "configmap/web-cm patched\n"
    );
    assert_eq!(get("web-cm")["data"], json!({"extra": "2", "mode": "strategic"}));
    let unchanged_rv = rv(&get("web-cm"));
    assert_eq!(
        s.kubectl(&with_ns(&["patch", "cm", "web-cm", "-p", r#"{"data":{"mode":"strategic"}}"#])),
        "configmap/web-cm patched (no change)\n"
    );
    assert_eq!(rv(&get("web-cm")), unchanged_rv, "a no-op patch does not bump resourceVersion");
    // A merge patch with null deletes a key.
    s.kubectl(&with_ns(&["patch", "cm", "web-cm", "--type=merge", "-p", r#"{"data":{"extra":null}}"#]));
    assert_eq!(get("web-cm")["data"], json!({"mode": "strategic"}));

    // label and annotate.
    assert_eq!(s.kubectl(&with_ns(&["label", "cm", "web-cm", "env=prod"])), "configmap/web-cm labeled\n");
    s.kubectl_err(
        &with_ns(&["label", "cm", "web-cm", "env=dev"]),
        None,
        &["'env' already has a value (prod), and --overwrite is false"],
    );
    assert_eq!(s.kubectl(&with_ns(&["label", "cm", "web-cm", "env=dev", "--overwrite"])), "configmap/web-cm labeled\n");
    assert_eq!(get("web-cm")["metadata"]["labels"], json!({"app": "web", "tier": "frontend", "env": "dev"}));
    assert_eq!(s.kubectl(&with_ns(&["label", "cm", "web-cm", "env-"])), "configmap/web-cm unlabeled\n");
    assert_eq!(get("web-cm")["metadata"]["labels"], json!({"app": "web", "tier": "frontend"}));
    assert_eq!(
        s.kubectl(&with_ns(&["annotate", "cm", "web-cm", "owner=e2e", "note=hello world"])),
        "configmap/web-cm annotated\n"
    );
    assert_eq!(get("web-cm")["metadata"]["annotations"], json!({"owner": "e2e", "note": "hello world"}));
    assert_eq!(s.kubectl(&with_ns(&["label", "cm", "--all", "batch=1"])).lines().count(), 5);
    assert_eq!(table_names(&s.kubectl(&with_ns(&["get", "cm", "-l", "batch=1"]))).len(), 5);

    // replace with a stale resourceVersion fails with Conflict and changes nothing.
    let stale = s.kubectl(&with_ns(&["get", "cm", "api-cm", "-o", "yaml"]));
    s.kubectl(&with_ns(&["annotate", "cm", "api-cm", "bump=1"]));
    let current = get("api-cm");
    s.kubectl_err(
        &["replace", "-f", "-"],
        Some(&stale.replace("mode: red", "mode: stale")),
        &[r#"Error from server (Conflict): error when replacing "STDIN": Operation cannot be fulfilled on configmaps "api-cm": the object has been modified; please apply your changes to the latest version and try again"#],
    );
    assert_eq!(get("api-cm"), current, "a failed replace leaves the object untouched");
    // A fresh one succeeds, and so does one without resourceVersion (unconditional).
    let fresh = s.kubectl(&with_ns(&["get", "cm", "api-cm", "-o", "yaml"]));
    assert_eq!(
        s.kubectl_stdin(&["replace", "-f", "-"], Some(&fresh.replace("mode: red", "mode: fresh"))),
        "configmap/api-cm replaced\n"
    );
    let replaced = get("api-cm");
    assert_eq!(replaced["data"]["mode"], "fresh");
    assert!(rv(&replaced) > rv(&current));
    assert_eq!(replaced["metadata"]["uid"], current["metadata"]["uid"]);
    assert_eq!(replaced["metadata"]["creationTimestamp"], current["metadata"]["creationTimestamp"]);
    let mut unconditional = replaced.clone();
    unconditional["metadata"].as_object_mut().unwrap().remove("resourceVersion");
    unconditional["data"]["mode"] = json!("unconditional");
    assert_eq!(
        s.kubectl_stdin(&["replace", "-f", "-"], Some(&unconditional.to_string())),
        "configmap/api-cm replaced\n"
    );
    assert_eq!(get("api-cm")["data"]["mode"], "unconditional");

    // delete one, delete by label, delete --all.
    assert_eq!(s.kubectl(&with_ns(&["delete", "cm", "web-cm"])), "configmap \"web-cm\" deleted\n");
    s.kubectl_err(
        &with_ns(&["get", "cm", "web-cm"]),
        None,
        &[r#"Error from server (NotFound): configmaps "web-cm" not found"#],
    );
    s.kubectl_err(
        &with_ns(&["delete", "cm", "web-cm"]),
        None,
        &[r#"Error from server (NotFound): configmaps "web-cm" not found"#],
    );
    assert_eq!(s.kubectl(&with_ns(&["delete", "cm", "-l", "app=api"])), "configmap \"api-cm\" deleted\n");
    assert_eq!(
        s.kubectl(&with_ns(&["delete", "cm", "--all"])),
        "configmap \"applied\" deleted\nconfigmap \"kube-root-ca.crt\" deleted\nconfigmap \"plain-cm\" deleted\n"
    );
    // Only the published root CA comes back, as on a real cluster.
    let back = |s: &Server| table_names(&s.kubectl(&with_ns(&["get", "cm"])));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while back(&s).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(back(&s), ["kube-root-ca.crt"]);
    // The delete --all stayed in its namespace.
    s.kubectl(&["create", "configmap", "keep", "--from-literal=a=b"]);
    let out = s.run(&with_ns(&["delete", "cm", "--all"]), None);
    assert_eq!(out.stdout, "configmap \"kube-root-ca.crt\" deleted\n", "{out:?}");
    assert_eq!(s.kubectl(&["get", "cm", "keep", "-o", "jsonpath={.data.a}"]), "b");
    s.assert_healthy();
}

#[test]
fn secrets_serviceaccounts_namespaces() {
    let mut s = Server::start();
    assert_eq!(
        s.kubectl(&["create", "secret", "generic", "creds", "--from-literal=user=admin", "--from-literal=pw=s3cret"]),
        "secret/creds created\n"
    );
    let sec = s.kubectl_json(&["get", "secret", "creds"]);
    assert_eq!(sec["type"], "Opaque");
    assert_eq!(sec["data"], json!({"user": "YWRtaW4=", "pw": "czNjcmV0"}));
    let rows = table(&s.kubectl(&["get", "secrets"]));
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["NAME"].as_str(), rows[0]["TYPE"].as_str(), rows[0]["DATA"].as_str()),
        ("creds", "Opaque", "2")
    );
    // stringData is folded into data.
    s.create("apiVersion: v1\nkind: Secret\nmetadata: {name: sd}\nstringData: {token: abc}\n");
    let sd = s.kubectl_json(&["get", "secret", "sd"]);
    assert_eq!(sd["data"], json!({"token": "YWJj"}));
    assert!(sd.get("stringData").is_none(), "stringData is not stored: {sd}");
    let d = s.kubectl(&["describe", "secret", "creds"]);
    assert_eq!(describe_value(&d, "Type"), "Opaque");
    assert!(d.contains("pw:    6 bytes") && d.contains("user:  5 bytes"), "describe secret:\n{d}");

    assert_eq!(s.kubectl(&["create", "serviceaccount", "robot"]), "serviceaccount/robot created\n");
    let rows = table(&s.kubectl(&["get", "sa", "robot"]));
    assert_eq!((rows[0]["NAME"].as_str(), rows[0]["SECRETS"].as_str()), ("robot", "0"));

    assert_eq!(s.kubectl(&["create", "ns", "extra"]), "namespace/extra created\n");
    let rows = table(&s.kubectl(&["get", "ns", "extra"]));
    assert_eq!((rows[0]["NAME"].as_str(), rows[0]["STATUS"].as_str()), ("extra", "Active"));
    let ns = s.kubectl_json(&["get", "ns", "extra"]);
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");
    assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "extra");
    let d = s.kubectl(&["describe", "ns", "extra"]);
    assert_eq!(describe_value(&d, "Status"), "Active");
    assert_eq!(describe_value(&d, "Name"), "extra");
    s.assert_healthy();
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  labels: {app: web}
spec:
  containers:
  - name: nginx
    image: nginx:1.25
    ports:
    - containerPort: 80
"#;

#[test]
fn pods_defaults_wide_status_and_field_selectors() {
    let mut s = Server::start();
    assert_eq!(s.create(POD), "pod/web-1 created\n");
    let pod = yaml(&s.kubectl(&["get", "pod", "web-1", "-o", "yaml"]));
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["enableServiceLinks"], true);
    assert_eq!(spec["securityContext"], json!({}));
    let c = &spec["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["terminationMessagePolicy"], "File");
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(pod["status"]["phase"], "Pending");
    assert_eq!(pod["status"]["qosClass"], "BestEffort");

    // imagePullPolicy defaults to Always for :latest or an untagged image.
    s.create(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web-2}\nspec:\n  nodeName: node-a\n  restartPolicy: Never\n  containers:\n  - {name: a, image: busybox}\n  - {name: b, image: 'busybox:latest'}\n  - {name: c, image: 'busybox:1.36', resources: {requests: {cpu: 100m}}}\n",
    );
    let p2 = s.kubectl_json(&["get", "pod", "web-2"]);
    let policies: Vec<_> =
        p2["spec"]["containers"].as_array().unwrap().iter().map(|c| c["imagePullPolicy"].clone()).collect();
    assert_eq!(policies, [json!("Always"), json!("Always"), json!("IfNotPresent")]);
    assert_eq!(p2["status"]["qosClass"], "Burstable");

    // -o wide columns.
    let rows = table(&s.kubectl(&["get", "pods", "-o", "wide"]));
    let cols: Vec<_> = rows[0].keys().cloned().collect();
    let mut want = ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"];
    want.sort();
    assert_eq!(cols, want);
    let r = &rows[0];
    assert_eq!(
        [
            &r["NAME"],
            &r["READY"],
            &r["STATUS"],
            &r["RESTARTS"],
            &r["IP"],
            &r["NODE"],
            &r["NOMINATED NODE"],
            &r["READINESS GATES"]
        ],
        ["web-1", "0/1", "Pending", "0", "<none>", "<none>", "<none>", "<none>"]
    );
    assert_eq!(
        (rows[1]["NAME"].as_str(), rows[1]["READY"].as_str(), rows[1]["NODE"].as_str()),
        ("web-2", "0/3", "node-a")
    );

    // pods/status: writes through the subresource change status only.
    assert_eq!(
        s.kubectl(&[
            "patch",
            "pod",
            "web-1",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running","podIP":"10.244.0.5","podIPs":[{"ip":"10.244.0.5"}]},"spec":{"restartPolicy":"Never"}}"#
        ]),
        "pod/web-1 patched\n"
    );
    let p1 = s.kubectl_json(&["get", "pod", "web-1"]);
    assert_eq!(p1["status"]["phase"], "Running");
    assert_eq!(p1["status"]["podIP"], "10.244.0.5");
    assert_eq!(p1["spec"]["restartPolicy"], "Always", "a status write does not change spec");
    // ... and writes to the main resource leave status alone.
    assert_eq!(
        s.kubectl(&["patch", "pod", "web-1", "--type=merge", "-p", r#"{"status":{"phase":"Failed"}}"#]),
        "pod/web-1 patched (no change)\n"
    );
    assert_eq!(s.kubectl(&["get", "pod", "web-1", "-o", "jsonpath={.status.phase}"]), "Running");
    let rows = table(&s.kubectl(&["get", "pod", "web-1", "-o", "wide"]));
    assert_eq!((rows[0]["STATUS"].as_str(), rows[0]["IP"].as_str()), ("Running", "10.244.0.5"));

    // Pod field selectors.
    for (sel, want) in [
        ("spec.nodeName=node-a", vec!["web-2"]),
        ("spec.nodeName=", vec!["web-1"]),
        ("status.phase=Running", vec!["web-1"]),
        ("status.phase!=Running", vec!["web-2"]),
        ("status.phase=Pending", vec!["web-2"]),
        ("spec.restartPolicy=Never", vec!["web-2"]),
        ("status.podIP=10.244.0.5", vec!["web-1"]),
        ("spec.schedulerName=default-scheduler", vec!["web-1", "web-2"]),
        ("metadata.name=web-2,spec.nodeName=node-a", vec!["web-2"]),
    ] {
        assert_eq!(
            table_names(&s.run(&["get", "pods", "--field-selector", sel], None).stdout),
            want,
            "--field-selector {sel}"
        );
    }

    // Spec is immutable apart from the allowed fields; the image may change.
    s.kubectl_err(
        &["patch", "pod", "web-1", "--type=merge", "-p", r#"{"spec":{"restartPolicy":"Never"}}"#],
        None,
        &[r#"The Pod "web-1" is invalid: spec: Forbidden: pod updates may not change fields other than"#],
    );
    assert_eq!(s.kubectl(&["set", "image", "pod/web-1", "nginx=nginx:1.27"]), "pod/web-1 image updated\n");
    assert_eq!(s.kubectl(&["get", "pod", "web-1", "-o", "jsonpath={.spec.containers[0].image}"]), "nginx:1.27");

    // describe pod.
    let d = s.kubectl(&["describe", "pod", "web-1"]);
    assert_eq!(describe_value(&d, "Name"), "web-1");
    assert_eq!(describe_value(&d, "Namespace"), "default");
    assert_eq!(describe_value(&d, "Node"), "<none>");
    assert_eq!(describe_value(&d, "Labels"), "app=web");
    assert_eq!(describe_value(&d, "Status"), "Running");
    assert_eq!(describe_value(&d, "IP"), "10.244.0.5");
    assert_eq!(describe_value(&d, "QoS Class"), "BestEffort");
    assert!(d.lines().any(|l| l.trim_start().starts_with("Image:") && l.ends_with(" nginx:1.27")), "{d}");
    assert!(d.lines().any(|l| l.trim_start().starts_with("Port:") && l.ends_with(" 80/TCP")), "{d}");
    assert_eq!(describe_value(&d, "Events"), "<none>");

    // `get all` lists pods (category "all").
    let all = s.kubectl(&["get", "all"]);
    assert!(all.contains("pod/web-1") && all.contains("pod/web-2"), "{all}");
    assert!(all.contains("service/kubernetes"), "{all}");
    assert_eq!(s.kubectl(&["delete", "pod", "web-1", "--wait=false"]), "pod \"web-1\" deleted\n");
    s.assert_healthy();
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
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
"#;

#[test]
fn deployments_defaults_scale_status_and_strategic_patch() {
    let mut s = Server::start();
    assert_eq!(s.apply(DEPLOYMENT), "deployment.apps/web created\n");
    let d = yaml(&s.kubectl(&["get", "deployment", "web", "-o", "yaml"]));
    assert_eq!(d["apiVersion"], "apps/v1");
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(
        d["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
    let tpl = &d["spec"]["template"]["spec"];
    assert_eq!(tpl["restartPolicy"], "Always");
    assert_eq!(tpl["dnsPolicy"], "ClusterFirst");
    assert_eq!(tpl["terminationGracePeriodSeconds"], 30);
    assert_eq!(tpl["containers"][0]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(tpl["containers"][0]["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(d["metadata"]["generation"], 1);

    let rows = table(&s.kubectl(&["get", "deploy", "-o", "wide"]));
    let r = &rows[0];
    let mut cols: Vec<_> = r.keys().cloned().collect();
    cols.sort();
    let mut want = ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"];
    want.sort();
    assert_eq!(cols, want);
    assert_eq!(
        [&r["NAME"], &r["READY"], &r["UP-TO-DATE"], &r["AVAILABLE"], &r["CONTAINERS"], &r["IMAGES"], &r["SELECTOR"]],
        ["web", "0/1", "0", "0", "nginx", "nginx:1.25", "app=web"]
    );

    // scale, through the scale subresource.
    assert_eq!(s.kubectl(&["scale", "deployment", "web", "--replicas=3"]), "deployment.apps/web scaled\n");
    let d = s.kubectl_json(&["get", "deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["generation"], 2, "a spec change bumps generation");
    let scale = s.raw("/apis/apps/v1/namespaces/default/deployments/web/scale");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["metadata"]["name"], "web");
    assert_eq!(scale["metadata"]["uid"], d["metadata"]["uid"]);
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");
    s.kubectl_err(
        &["scale", "deployment", "web", "--current-replicas=5", "--replicas=1"],
        None,
        &["Expected replicas to be 5, was 3"],
    );
    assert_eq!(
        s.kubectl(&["scale", "deployment", "web", "--current-replicas=3", "--replicas=2"]),
        "deployment.apps/web scaled\n"
    );
    assert_eq!(s.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "2");

    // A metadata-only change does not bump generation.
    s.kubectl(&["label", "deployment", "web", "tier=frontend"]);
    assert_eq!(s.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.metadata.generation}"]), "3");

    // Strategic merge patch merges containers by name; $patch: delete removes one.
    let containers = |s: &Server| -> Vec<(String, String)> {
        s.kubectl_json(&["get", "deploy", "web"])["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap().to_string(), c["image"].as_str().unwrap().to_string()))
            .collect()
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        s.kubectl(&[
            "patch",
            "deployment",
            "web",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"}]}}}}"#
        ]),
        "deployment.apps/web patched\n"
    );
    // Upstream's merge puts patch items not in the live list before the live ones.
    assert_eq!(containers(&s), [pair("sidecar", "busybox:1.36"), pair("nginx", "nginx:1.25")]);
    s.kubectl(&[
        "patch",
        "deployment",
        "web",
        "--type=strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}}}"#,
    ]);
    assert_eq!(containers(&s), [pair("sidecar", "busybox:1.36"), pair("nginx", "nginx:1.27")]);
    let d = s.kubectl_json(&["get", "deploy", "web"]);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
    s.kubectl(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","$patch":"delete"}]}}}}"#,
    ]);
    assert_eq!(containers(&s), [pair("nginx", "nginx:1.27")]);
    // A merge patch replaces the list; a JSON patch addresses by index.
    s.kubectl(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"httpd:2.4"}]}}}}"#,
    ]);
    assert_eq!(containers(&s), [pair("app", "httpd:2.4")]);
    s.kubectl(&[
        "patch",
        "deployment",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"httpd:2.5"}]"#,
    ]);
    assert_eq!(containers(&s), [pair("app", "httpd:2.5")]);
    assert_eq!(s.kubectl(&["set", "image", "deployment/web", "app=httpd:2.6"]), "deployment.apps/web image updated\n");
    assert_eq!(containers(&s), [pair("app", "httpd:2.6")]);

    // deployments/status: only status changes through it; the main resource ignores status.
    let gen = s.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.metadata.generation}"]);
    assert_eq!(
        s.kubectl(&[
            "patch",
            "deployment",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":7},"status":{"replicas":2,"updatedReplicas":2,"readyReplicas":1,"availableReplicas":1}}"#
        ]),
        "deployment.apps/web patched\n"
    );
    let rows = table(&s.kubectl(&["get", "deploy", "web"]));
    assert_eq!([&rows[0]["READY"], &rows[0]["UP-TO-DATE"], &rows[0]["AVAILABLE"]], ["1/2", "2", "1"]);
    assert_eq!(s.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "2");
    assert_eq!(s.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.metadata.generation}"]), gen);
    s.kubectl(&["patch", "deployment", "web", "--type=merge", "-p", r#"{"status":{"readyReplicas":2}}"#]);
    assert_eq!(s.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.status.readyReplicas}"]), "1");
    let status = s.raw("/apis/apps/v1/namespaces/default/deployments/web/status");
    assert_eq!(status["kind"], "Deployment");
    assert_eq!(status["status"]["availableReplicas"], 1);

    // describe deployment.
    let d = s.kubectl(&["describe", "deployment", "web"]);
    assert_eq!(describe_value(&d, "Name"), "web");
    assert_eq!(describe_value(&d, "Selector"), "app=web");
    assert_eq!(describe_value(&d, "StrategyType"), "RollingUpdate");
    assert_eq!(describe_value(&d, "RollingUpdateStrategy"), "25% max unavailable, 25% max surge");
    assert!(describe_value(&d, "Replicas").starts_with("2 desired | 2 updated | 2 total | 1 available"), "{d}");

    // Selector is immutable; a selector that does not match the template is invalid.
    s.kubectl_err(
        &["patch", "deployment", "web", "--type=merge", "-p", r#"{"spec":{"selector":{"matchLabels":{"app":"x"}}}}"#],
        None,
        &[r#"The Deployment "web" is invalid"#, "spec.selector", "field is immutable"],
    );
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(
            &DEPLOYMENT
                .replace("name: web\n", "name: bad\n")
                .replace("    metadata:\n      labels: {app: web}", "    metadata:\n      labels: {app: other}"),
        ),
        &[
            r#"The Deployment "bad" is invalid"#,
            "spec.template.metadata.labels",
            "`selector` does not match template `labels`",
        ],
    );
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(
            &DEPLOYMENT
                .replace("name: web\n", "name: neg\n")
                .replace("spec:\n  selector", "spec:\n  replicas: -1\n  selector"),
        ),
        &[r#"The Deployment "neg" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"#],
    );
    assert_eq!(s.kubectl(&["delete", "deployment", "web"]), "deployment.apps \"web\" deleted\n");
    s.assert_healthy();
}

#[test]
fn services_defaults_and_cluster_ip_allocation() {
    let mut s = Server::start();
    assert_eq!(s.kubectl(&["create", "service", "clusterip", "web", "--tcp=80:8080"]), "service/web created\n");
    let svc = yaml(&s.kubectl(&["get", "svc", "web", "-o", "yaml"]));
    let spec = &svc["spec"];
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert_eq!(spec["ports"], json!([{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}]));
    assert_eq!(spec["selector"], json!({"app": "web"}));
    let ip = spec["clusterIP"].as_str().expect("clusterIP is allocated").to_string();
    assert_eq!(spec["clusterIPs"], json!([ip.clone()]));
    let last: u8 = ip.strip_prefix("10.0.0.").unwrap_or_else(|| panic!("{ip} is not in 10.0.0.0/24")).parse().unwrap();
    assert!((2..=254).contains(&last), "{ip}: .0, .1 (the kubernetes service) and .255 are not handed out");

    // targetPort defaults to port; two services get different addresses.
    s.create(
        "apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec:\n  selector: {app: db}\n  ports:\n  - port: 5432\n",
    );
    let db = s.kubectl_json(&["get", "svc", "db"]);
    assert_eq!(db["spec"]["ports"][0]["targetPort"], 5432);
    assert_eq!(db["spec"]["ports"][0]["protocol"], "TCP");
    assert_ne!(db["spec"]["clusterIP"], json!(ip));

    let rows = table(&s.kubectl(&["get", "svc", "-o", "wide"]));
    let web = rows.iter().find(|r| r["NAME"] == "web").expect("web row");
    assert_eq!(
        [&web["TYPE"], &web["CLUSTER-IP"], &web["EXTERNAL-IP"], &web["PORT(S)"], &web["SELECTOR"]],
        ["ClusterIP", ip.as_str(), "<none>", "80/TCP", "app=web"]
    );
    assert_eq!(table_names(&s.kubectl(&["get", "svc"])), ["db", "kubernetes", "web"]);

    // A requested address is honoured, and a taken or out-of-range one is
    // Invalid. The requested one is not web's or db's, which are random, nor
    // the .51 the immutability check below asks for.
    let db_ip = db["spec"]["clusterIP"].as_str().expect("db's clusterIP").to_string();
    let wanted =
        [50, 52, 53].iter().map(|n| format!("10.0.0.{n}")).find(|a| *a != ip && *a != db_ip).expect("a free address");
    let fixed = |name: &str, ip: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  clusterIP: {ip}\n  ports:\n  - port: 80\n")
    };
    s.create(&fixed("fixed", &wanted));
    assert_eq!(s.kubectl(&["get", "svc", "fixed", "-o", "jsonpath={.spec.clusterIP}"]), wanted);
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&fixed("clash", &wanted)),
        &[r#"The Service "clash" is invalid"#, "spec.clusterIPs", "provided IP is already allocated"],
    );
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&fixed("outside", "10.1.0.5")),
        &[r#"The Service "outside" is invalid"#, "spec.clusterIPs", "not in the valid range"],
    );
    // Deleting a service releases its address; clusterIP is immutable.
    s.kubectl_err(
        &[
            "patch",
            "svc",
            "fixed",
            "--type=merge",
            "-p",
            r#"{"spec":{"clusterIP":"10.0.0.51","clusterIPs":["10.0.0.51"]}}"#,
        ],
        None,
        &[r#"The Service "fixed" is invalid"#, "spec.clusterIPs[0]", "may not change once set"],
    );
    s.kubectl(&["delete", "svc", "fixed"]);
    s.create(&fixed("again", &wanted));
    // Headless services get no address; an unsupported type is Invalid.
    s.create(
        "apiVersion: v1\nkind: Service\nmetadata: {name: headless}\nspec:\n  clusterIP: None\n  ports:\n  - port: 80\n",
    );
    assert_eq!(s.kubectl(&["get", "svc", "headless", "-o", "jsonpath={.spec.clusterIPs}"]), r#"["None"]"#);
    s.kubectl_err(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Service\nmetadata: {name: weird}\nspec:\n  type: Foo\n  ports:\n  - port: 80\n"),
        &[r#"The Service "weird" is invalid"#, r#"spec.type: Unsupported value: "Foo""#],
    );
    let d = s.kubectl(&["describe", "svc", "web"]);
    assert_eq!(describe_value(&d, "Type"), "ClusterIP");
    assert_eq!(describe_value(&d, "IP"), ip);
    assert_eq!(describe_value(&d, "Session Affinity"), "None");
    s.assert_healthy();
}

#[test]
fn dry_run_generate_name_and_field_validation() {
    let mut s = Server::start();
    // dryRun=All on every write persists nothing.
    assert_eq!(
        s.kubectl(&["create", "configmap", "dry", "--from-literal=a=b", "--dry-run=server"]),
        "configmap/dry created (server dry run)\n"
    );
    s.kubectl_err(&["get", "cm", "dry"], None, &[r#"Error from server (NotFound): configmaps "dry" not found"#]);
    s.kubectl(&["create", "configmap", "real", "--from-literal=a=b"]);
    let before = s.kubectl_json(&["get", "cm", "real"]);
    // (kubectl patch prints no "(server dry run)" suffix: its printer drops it.)
    s.kubectl(&["patch", "cm", "real", "--type=merge", "-p", r#"{"data":{"a":"c"}}"#, "--dry-run=server"]);
    s.kubectl(&["label", "cm", "real", "x=y", "--dry-run=server"]);
    let mut changed = before.clone();
    changed["data"]["a"] = json!("z");
    s.kubectl_stdin(&["replace", "--dry-run=server", "-f", "-"], Some(&changed.to_string()));
    assert_eq!(
        s.kubectl(&["delete", "cm", "real", "--dry-run=server"]),
        "configmap \"real\" deleted (server dry run)\n"
    );
    assert_eq!(s.kubectl_json(&["get", "cm", "real"]), before, "dry-run writes left the object untouched");
    // A dry-run service does not keep its address.
    let svc =
        "apiVersion: v1\nkind: Service\nmetadata: {name: ip}\nspec:\n  clusterIP: 10.0.0.77\n  ports:\n  - port: 80\n";
    let out =
        s.kubectl_stdin(&["create", "--dry-run=server", "-o", "jsonpath={.spec.clusterIP}", "-f", "-"], Some(svc));
    assert_eq!(out, "10.0.0.77");
    assert_eq!(s.create(svc), "service/ip created\n");
    // A dry-run create of an existing name still reports AlreadyExists.
    s.kubectl_err(
        &["create", "configmap", "real", "--from-literal=a=b", "--dry-run=server"],
        None,
        &[r#"configmaps "real" already exists"#],
    );
    // A dry-run namespace create leaves no namespace behind.
    s.kubectl(&["create", "ns", "ghost", "--dry-run=server"]);
    s.kubectl_err(&["get", "ns", "ghost"], None, &[r#"Error from server (NotFound): namespaces "ghost" not found"#]);

    // generateName.
    let gen = "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: gen-}\ndata: {a: b}\n";
    let mut names = Vec::new();
    for _ in 0..2 {
        let out = s.create(gen);
        let name = out
            .strip_prefix("configmap/")
            .and_then(|r| r.strip_suffix(" created\n"))
            .unwrap_or_else(|| panic!("{out}"));
        assert_eq!(name.len(), 9, "gen- plus five characters: {name}");
        assert!(
            name.starts_with("gen-") && name[4..].chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{name}"
        );
        assert_eq!(s.kubectl(&["get", "cm", name, "-o", "jsonpath={.metadata.generateName}"]), "gen-");
        names.push(name.to_string());
    }
    assert_ne!(names[0], names[1]);

    // fieldValidation: kubectl's default is Strict (server-side, found in the OpenAPI
    // document); warn prints the server's warning; false drops the field silently.
    let bogus = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bogus}\nbogus: 1\ndata: {a: b}\n";
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(bogus),
        &["Error from server (BadRequest)", r#"strict decoding error: unknown field "bogus""#],
    );
    s.kubectl_err(
        &["apply", "-f", "-"],
        Some(bogus),
        &["Error from server (BadRequest)", r#"strict decoding error: unknown field "bogus""#],
    );
    s.kubectl_err(&["get", "cm", "bogus"], None, &["NotFound"]);
    let out = s.run(&["create", "--validate=warn", "-f", "-"], Some(bogus));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "configmap/bogus created\n");
    assert_eq!(out.stderr, "Warning: unknown field \"bogus\"\n");
    let out = s.run(&["create", "--validate=false", "-f", "-"], Some(&bogus.replace("name: bogus", "name: bogus2")));
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (0, "configmap/bogus2 created\n", ""));
    let stored = s.kubectl_json(&["get", "cm", "bogus2"]);
    assert!(stored.get("bogus").is_none(), "unknown fields are pruned: {stored}");
    assert_eq!(stored["data"], json!({"a": "b"}));
    // Nested unknown fields carry their path.
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&POD.replace("    image: nginx:1.25\n", "    image: nginx:1.25\n    imagePolicy: x\n")),
        &[r#"strict decoding error: unknown field "spec.containers[0].imagePolicy""#],
    );
    s.assert_healthy();
}

e2e::on_etcd!(
    configmap_workflow_create_get_select_describe,
    configmap_workflow_modify_and_delete,
    secrets_serviceaccounts_namespaces,
    pods_defaults_wide_status_and_field_selectors,
    deployments_defaults_scale_status_and_strategic_patch,
    services_defaults_and_cluster_ip_allocation,
    dry_run_generate_name_and_field_validation
);
