//! Server-side apply and managedFields, driven by the real kubectl: apply
//! creating built-ins and custom resources, the managedFields shape kubectl
//! shows, conflicts and --force-conflicts, pruning of fields a manager stops
//! applying, list merging by type across managers, the status subresource,
//! kubectl's client-side to server-side apply migration, the Update entries of
//! kubectl's other writes, and dry run.

use e2e::{Cred, Server};
use serde_json::{json, Value};

/// `kubectl apply --server-side` with extra flags.
#[track_caller]
fn ssa(s: &Server, yaml: &str, flags: &[&str]) -> String {
    let mut args = vec!["apply", "--server-side", "-f", "-"];
    args.extend(flags);
    s.kubectl_stdin(&args, Some(yaml))
}

/// The object with its managedFields, as kubectl shows them.
#[track_caller]
fn get_managed(s: &Server, args: &[&str]) -> Value {
    let mut a = vec!["get"];
    a.extend(args);
    a.push("--show-managed-fields");
    s.kubectl_json(&a)
}

/// The managedFields entry of one manager and operation.
#[track_caller]
fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == manager && e["operation"] == operation))
        .unwrap_or_else(|| panic!("no {operation} entry of {manager:?}: {}", obj["metadata"]["managedFields"]))
}

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| (e["manager"].as_str().unwrap_or("").into(), e["operation"].as_str().unwrap_or("").into()))
                .collect()
        })
        .unwrap_or_default()
}

const CM: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: ssa-cm
  namespace: default
  labels: {app: web}
data:
  a: "1"
  b: "2"
"#;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ssa-dep
  namespace: default
spec:
  replicas: 2
  selector:
    matchLabels: {app: ssa}
  template:
    metadata:
      labels: {app: ssa}
    spec:
      containers:
      - name: web
        image: nginx:1.25
"#;

#[test]
fn apply_creates_objects_with_managed_fields() {
    let s = Server::start();
    assert_eq!(ssa(&s, CM, &[]), "configmap/ssa-cm serverside-applied\n");
    let cm = get_managed(&s, &["cm", "ssa-cm"]);
    assert_eq!(cm["data"], json!({"a": "1", "b": "2"}));
    let fields = cm["metadata"]["managedFields"].as_array().expect("managedFields");
    assert_eq!(fields.len(), 1, "{fields:?}");
    let e = &fields[0];
    assert_eq!(e["manager"], "kubectl");
    assert_eq!(e["operation"], "Apply");
    assert_eq!(e["apiVersion"], "v1");
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
    assert!(e.get("subresource").is_none(), "{e}");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:data": {"f:a": {}, "f:b": {}}, "f:metadata": {"f:labels": {"f:app": {}}}}),
        "upstream's FieldsV1 shape"
    );
    // kubectl hides them unless asked, and shows them in YAML when asked.
    let plain = s.kubectl_json(&["get", "cm", "ssa-cm"]);
    assert!(plain["metadata"].get("managedFields").is_none(), "{plain}");
    let yaml = s.kubectl(&["get", "cm", "ssa-cm", "-o", "yaml", "--show-managed-fields"]);
    for needle in ["managedFields:", "manager: kubectl", "operation: Apply", "fieldsType: FieldsV1", "f:a: {}"] {
        assert!(yaml.contains(needle), "{needle:?} missing from:\n{yaml}");
    }
    // Applying the same configuration again changes nothing.
    let rv = cm["metadata"]["resourceVersion"].clone();
    assert_eq!(ssa(&s, CM, &[]), "configmap/ssa-cm serverside-applied\n");
    assert_eq!(s.kubectl_json(&["get", "cm", "ssa-cm"])["metadata"]["resourceVersion"], rv);

    assert_eq!(ssa(&s, DEPLOYMENT, &[]), "deployment.apps/ssa-dep serverside-applied\n");
    let d = get_managed(&s, &["deployment", "ssa-dep"]);
    // Defaults are filled but owned by no one.
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(managers(&d), vec![("kubectl".to_string(), "Apply".to_string())]);
    assert_eq!(
        entry(&d, "kubectl", "Apply")["fieldsV1"],
        json!({"f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}
            }
        }})
    );
}

#[test]
fn conflicts_and_force_conflicts() {
    let s = Server::start();
    ssa(&s, CM, &[]);
    let other = CM.replace("a: \"1\"", "a: \"changed\"");
    let err = s.kubectl_fails(&["apply", "--server-side", "--field-manager", "other", "-f", "-"], Some(&other));
    assert!(err.contains(r#"Apply failed with 1 conflict: conflict with "kubectl": .data.a"#), "{err}");
    assert_eq!(s.kubectl_json(&["get", "cm", "ssa-cm"])["data"]["a"], "1", "a conflict changes nothing");

    // The Status a client sees.
    let body = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa-cm}\ndata: {a: x, b: y}\n";
    let r = s.curl(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/ssa-cm?fieldManager=raw",
        Cred::Admin,
        &[("Content-Type", "application/apply-patch+yaml")],
        Some(body.as_bytes()),
    );
    let st = r.assert_status(409, "Conflict");
    assert_eq!(
        st["message"], "Apply failed with 2 conflicts: conflicts with \"kubectl\":\n- .data.a\n- .data.b",
        "{st}"
    );
    assert_eq!(
        st["details"]["causes"],
        json!([
            {"reason": "FieldManagerConflict", "message": "conflict with \"kubectl\"", "field": ".data.a"},
            {"reason": "FieldManagerConflict", "message": "conflict with \"kubectl\"", "field": ".data.b"}
        ])
    );

    // --force-conflicts takes the field over.
    let out = s.kubectl_stdin(
        &["apply", "--server-side", "--field-manager", "other", "--force-conflicts", "-f", "-"],
        Some(&other),
    );
    assert_eq!(out, "configmap/ssa-cm serverside-applied\n");
    let cm = get_managed(&s, &["cm", "ssa-cm"]);
    assert_eq!(cm["data"]["a"], "changed");
    assert_eq!(entry(&cm, "kubectl", "Apply")["fieldsV1"]["f:data"], json!({"f:b": {}}));
    assert_eq!(entry(&cm, "other", "Apply")["fieldsV1"]["f:data"], json!({"f:a": {}, "f:b": {}}));

    // Conflicts with an Update manager name its version; force is for apply only.
    s.kubectl(&["create", "configmap", "made", "--from-literal=k=v"]);
    let applied = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: made}\ndata: {k: w}\n";
    let err = s.kubectl_fails(&["apply", "--server-side", "-f", "-"], Some(applied));
    assert!(err.contains(r#"Apply failed with 1 conflict: conflict with "kubectl-create" using v1: .data.k"#), "{err}");
    let r = s.curl(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/made?force=true",
        Cred::Admin,
        &[("Content-Type", "application/merge-patch+json")],
        Some(br#"{"data":{"k":"z"}}"#),
    );
    let st = r.assert_status(422, "Invalid");
    assert_eq!(st["details"]["causes"][0]["field"], "force", "{st}");
    // Apply needs a field manager, and the body's type must match.
    let r = s.curl(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/made",
        Cred::Admin,
        &[("Content-Type", "application/apply-patch+yaml")],
        Some(applied.as_bytes()),
    );
    let st = r.assert_status(422, "Invalid");
    assert_eq!(st["details"]["causes"][0]["field"], "fieldManager", "{st}");
    let r = s.curl(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/made?fieldManager=x",
        Cred::Admin,
        &[("Content-Type", "application/apply-patch+yaml")],
        Some(b"apiVersion: v1\nkind: Secret\nmetadata: {name: made}\n"),
    );
    let st = r.assert_status(400, "BadRequest");
    assert_eq!(st["message"], "invalid object type: /v1, Kind=Secret");
}

#[test]
fn fields_no_longer_applied_are_removed() {
    let s = Server::start();
    ssa(&s, CM, &[]);
    // Another manager shares b, so b stays when kubectl stops applying it.
    let shared = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa-cm}\ndata: {b: \"2\"}\n";
    ssa(&s, shared, &["--field-manager", "keeper"]);
    let smaller =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa-cm, namespace: default}\ndata: {a: \"1\", c: \"3\"}\n";
    ssa(&s, smaller, &[]);
    let cm = get_managed(&s, &["cm", "ssa-cm"]);
    assert_eq!(cm["data"], json!({"a": "1", "b": "2", "c": "3"}));
    assert!(cm["metadata"].get("labels").is_none_or(|l| l.get("app").is_none()), "label pruned: {cm}");
    assert_eq!(entry(&cm, "kubectl", "Apply")["fieldsV1"], json!({"f:data": {"f:a": {}, "f:c": {}}}));
    // Once nobody holds b, its last applier dropping it removes it.
    ssa(&s, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa-cm}\ndata: {}\n", &["--field-manager", "keeper"]);
    assert_eq!(s.kubectl_json(&["get", "cm", "ssa-cm"])["data"], json!({"a": "1", "c": "3"}));
}

#[test]
fn containers_merge_by_name_across_managers() {
    let s = Server::start();
    ssa(&s, DEPLOYMENT, &[]);
    let sidecar = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: ssa-dep}
spec:
  template:
    spec:
      containers:
      - name: sidecar
        image: busybox:1.36
"#;
    ssa(&s, sidecar, &["--field-manager", "mesh"]);
    let d = get_managed(&s, &["deployment", "ssa-dep"]);
    let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, vec!["web", "sidecar"]);
    assert_eq!(
        entry(&d, "mesh", "Apply")["fieldsV1"],
        json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
            "k:{\"name\":\"sidecar\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
    );
    // The first manager re-applying its own list keeps the other's container,
    // and changing its image is no conflict.
    ssa(&s, &DEPLOYMENT.replace("nginx:1.25", "nginx:1.26"), &[]);
    let d = s.kubectl_json(&["get", "deployment", "ssa-dep"]);
    let containers = d["spec"]["template"]["spec"]["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[0]["image"], "nginx:1.26");
    // The mesh manager taking its container out removes it.
    ssa(
        &s,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ssa-dep}\nspec: {template: {spec: {containers: []}}}\n",
        &["--field-manager", "mesh"],
    );
    let d = s.kubectl_json(&["get", "deployment", "ssa-dep"]);
    assert_eq!(d["spec"]["template"]["spec"]["containers"].as_array().map(Vec::len), Some(1), "{d}");
    // Replicas owned by kubectl: another manager's value conflicts.
    let scale = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ssa-dep}\nspec: {replicas: 5}\n";
    let err = s.kubectl_fails(&["apply", "--server-side", "--field-manager", "hpa", "-f", "-"], Some(scale));
    assert!(err.contains(r#"conflict with "kubectl": .spec.replicas"#), "{err}");
}

const GADGETS_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.ssa.example.com
spec:
  group: ssa.example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    port: {type: integer}
              tags:
                type: array
                x-kubernetes-list-type: set
                items: {type: string}
              owner: {type: string}
          status:
            type: object
            properties:
              phase: {type: string}
"#;

#[test]
fn custom_resources_merge_by_their_schema() {
    let s = Server::start();
    s.apply_crd(GADGETS_CRD, "gadgets.ssa.example.com");
    let first = r#"
apiVersion: ssa.example.com/v1
kind: Gadget
metadata: {name: g}
spec:
  owner: alice
  ports: [{name: http, port: 80}]
  tags: [blue]
"#;
    assert_eq!(ssa(&s, first, &[]), "gadget.ssa.example.com/g serverside-applied\n");
    let second = r#"
apiVersion: ssa.example.com/v1
kind: Gadget
metadata: {name: g}
spec:
  ports: [{name: https, port: 443}]
  tags: [green]
"#;
    ssa(&s, second, &["--field-manager", "other"]);
    let g = get_managed(&s, &["gadget", "g"]);
    assert_eq!(g["spec"]["ports"], json!([{"name": "http", "port": 80}, {"name": "https", "port": 443}]));
    assert_eq!(g["spec"]["tags"], json!(["blue", "green"]));
    assert_eq!(
        entry(&g, "other", "Apply")["fieldsV1"],
        json!({"f:spec": {"f:ports": {"k:{\"name\":\"https\"}": {".": {}, "f:name": {}, "f:port": {}}},
            "f:tags": {"v:\"green\"": {}}}})
    );
    // Another manager's port number for kubectl's item conflicts.
    let clash = "apiVersion: ssa.example.com/v1\nkind: Gadget\nmetadata: {name: g}\nspec: {ports: [{name: http, port: 8080}]}\n";
    let err = s.kubectl_fails(&["apply", "--server-side", "--field-manager", "other", "-f", "-"], Some(clash));
    assert!(err.contains(r#"conflict with "kubectl": .spec.ports[name="http"].port"#), "{err}");
    // kubectl dropping its tag and port removes them; the other's stay.
    ssa(&s, "apiVersion: ssa.example.com/v1\nkind: Gadget\nmetadata: {name: g}\nspec: {owner: alice}\n", &[]);
    let g = s.kubectl_json(&["get", "gadget", "g"]);
    assert_eq!(g["spec"], json!({"owner": "alice", "ports": [{"name": "https", "port": 443}], "tags": ["green"]}));

    // The status subresource: its own entry, and only status moves.
    let status = "apiVersion: ssa.example.com/v1\nkind: Gadget\nmetadata: {name: g}\nstatus: {phase: Ready}\nspec: {owner: mallory}\n";
    let out = s.kubectl_stdin(
        &["apply", "--server-side", "--subresource=status", "--field-manager", "ctl", "-f", "-"],
        Some(status),
    );
    assert_eq!(out, "gadget.ssa.example.com/g serverside-applied\n");
    let g = get_managed(&s, &["gadget", "g"]);
    assert_eq!(g["status"]["phase"], "Ready");
    assert_eq!(g["spec"]["owner"], "alice");
    let e = g["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == "ctl"))
        .unwrap_or_else(|| panic!("no ctl entry: {g}"));
    assert_eq!(e["subresource"], "status");
    assert_eq!(e["fieldsV1"], json!({"f:status": {"f:phase": {}}}));
}

#[test]
fn client_side_apply_then_server_side_apply() {
    let s = Server::start();
    s.apply(CM);
    let cm = get_managed(&s, &["cm", "ssa-cm"]);
    assert_eq!(managers(&cm), vec![("kubectl-client-side-apply".to_string(), "Update".to_string())]);
    let e = entry(&cm, "kubectl-client-side-apply", "Update");
    assert_eq!(
        e["fieldsV1"]["f:metadata"]["f:annotations"],
        json!({".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}})
    );
    assert_eq!(e["fieldsV1"]["f:data"], json!({".": {}, "f:a": {}, "f:b": {}}));

    // kubectl moves the client-side manager's fields to its apply manager, so
    // what the new configuration leaves out goes.
    let smaller = CM.replace("  b: \"2\"\n", "");
    assert_eq!(ssa(&s, &smaller, &[]), "configmap/ssa-cm serverside-applied\n");
    let cm = get_managed(&s, &["cm", "ssa-cm"]);
    assert_eq!(cm["data"], json!({"a": "1"}));
    assert!(!managers(&cm).iter().any(|(m, _)| m == "kubectl-client-side-apply"), "{cm}");
    entry(&cm, "kubectl", "Apply");
    // The last-applied annotation follows, so client-side apply still works.
    let last: Value = serde_json::from_str(
        cm["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str().expect("annotation"),
    )
    .expect("last-applied is JSON");
    assert_eq!(last["data"], json!({"a": "1"}));
    let out = s.apply(&CM.replace("a: \"1\"", "a: \"9\""));
    assert_eq!(out, "configmap/ssa-cm configured\n");
    assert_eq!(s.kubectl_json(&["get", "cm", "ssa-cm"])["data"], json!({"a": "9", "b": "2"}));

    // Changing what client-side apply set: the conflicts with
    // kubectl-client-side-apply are kubectl's own (upstream's
    // lastAppliedManager), so the apply goes through without --force-conflicts.
    let web = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: nginx, image: 'nginx:1.25'}]}\n";
    s.apply(web);
    let changed = web.replace("replicas: 2", "replicas: 3").replace("nginx:1.25", "nginx:1.26");
    assert_eq!(ssa(&s, &changed, &[]), "deployment.apps/web serverside-applied\n");
    let d = get_managed(&s, &["deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.26");
    let applied = &entry(&d, "kubectl", "Apply")["fieldsV1"];
    assert_eq!(applied["f:spec"]["f:replicas"], json!({}), "{d}");
    let last: Value = serde_json::from_str(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str().expect("annotation"),
    )
    .expect("last-applied is JSON");
    assert_eq!(last["spec"]["replicas"], 3, "{last}");
    // Another manager still conflicts.
    let err = s.kubectl_fails(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        Some(&changed.replace("replicas: 3", "replicas: 5")),
    );
    assert!(err.contains("conflict with \"kubectl\""), "{err}");
}

#[test]
fn kubectl_writes_record_update_entries() {
    let s = Server::start();
    s.kubectl(&["create", "configmap", "up", "--from-literal=mode=blue"]);
    s.kubectl(&["label", "configmap", "up", "tier=web"]);
    s.kubectl(&["patch", "configmap", "up", "-p", r#"{"data":{"patched":"yes"}}"#]);
    let editor = s.write_file("editor.sh", "#!/bin/sh\nsed -i 's/mode: blue/mode: edited/' \"$1\"\n");
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let out = s.run_env(&["edit", "configmap", "up"], None, &[("EDITOR", editor.to_str().expect("utf-8 path"))]);
    assert_eq!(out.code, 0, "kubectl edit: {out:?}");
    let cm = get_managed(&s, &["cm", "up"]);
    let names: Vec<String> = managers(&cm).into_iter().map(|(m, _)| m).collect();
    for m in ["kubectl-create", "kubectl-label", "kubectl-patch", "kubectl-edit"] {
        assert!(names.contains(&m.to_string()), "{m} missing: {names:?}");
        assert_eq!(entry(&cm, m, "Update")["apiVersion"], "v1");
    }
    assert_eq!(
        entry(&cm, "kubectl-label", "Update")["fieldsV1"],
        json!({"f:metadata": {"f:labels": {".": {}, "f:tier": {}}}})
    );
    assert_eq!(entry(&cm, "kubectl-patch", "Update")["fieldsV1"], json!({"f:data": {"f:patched": {}}}));
    assert_eq!(entry(&cm, "kubectl-edit", "Update")["fieldsV1"], json!({"f:data": {"f:mode": {}}}));
    // The field moved from the creator to the editor.
    // (it still holds data itself: a member without children is `{}`)
    assert_eq!(entry(&cm, "kubectl-create", "Update")["fieldsV1"], json!({"f:data": {}}));

    // A client clearing managedFields clears them; invalid ones are ignored.
    let r = s.curl(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/up",
        Cred::Admin,
        &[("Content-Type", "application/merge-patch+json")],
        Some(br#"{"metadata":{"managedFields":[{"manager":"x","operation":"Sideways"}]}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["metadata"]["managedFields"], cm["metadata"]["managedFields"]);
    let r = s.curl(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/up",
        Cred::Admin,
        &[("Content-Type", "application/merge-patch+json")],
        Some(br#"{"metadata":{"managedFields":[]}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["metadata"].get("managedFields").is_none(), "{}", r.text());
}

#[test]
fn dry_run_apply_changes_nothing() {
    let s = Server::start();
    ssa(&s, CM, &[]);
    let before = get_managed(&s, &["cm", "ssa-cm"]);
    let out = ssa(&s, &CM.replace("a: \"1\"", "a: \"dry\""), &["--dry-run=server", "-o", "json"]);
    let preview: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(preview["data"]["a"], "dry");
    assert_eq!(get_managed(&s, &["cm", "ssa-cm"]), before);
    // Nor does a dry-run apply that would create.
    let out = ssa(&s, &CM.replace("ssa-cm", "ghost"), &["--dry-run=server"]);
    assert_eq!(out, "configmap/ghost serverside-applied (server dry run)\n");
    assert!(!s.kubectl_output(&["get", "cm", "ghost"], None).status.success());
}

e2e::on_etcd!(apply_creates_objects_with_managed_fields, conflicts_and_force_conflicts);
