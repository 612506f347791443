//! CustomResourceDefinitions driven by kubectl: establishing, every verb on a
//! custom resource, validation, pruning and defaulting, CEL rules, printer
//! columns, status and scale, selectors, explain, discovery and OpenAPI, and
//! deletion cleaning up.

use e2e::Server;
use serde_json::Value;

const WIDGETS_CRD: &str = include_str!("fixtures/widgets-crd.yaml");

const RED: &str = r#"
apiVersion: example.com/v1
kind: Widget
metadata:
  name: red
  labels: {tier: front}
spec:
  color: red
  replicas: 2
  bogus: dropped
  extra: {anything: [1, 2], goes: here}
  size: 10Gi
  tags: [a, b-c]
"#;

#[test]
fn crd_established_and_cr_verbs() {
    let s = Server::start();
    s.apply_crd(WIDGETS_CRD, "widgets.example.com");
    let crd = s.kubectl_json(&["get", "crd", "widgets.example.com"]);
    let conds = crd["status"]["conditions"].as_array().expect("conditions");
    for t in ["NamesAccepted", "Established"] {
        let c = conds.iter().find(|c| c["type"] == t).unwrap_or_else(|| panic!("no {t} in {conds:?}"));
        assert_eq!(c["status"], "True", "{t}: {c}");
    }
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget");
    assert_eq!(crd["status"]["storedVersions"], serde_json::json!(["v1"]));

    // Create through apply: unknown fields are pruned, defaults filled.
    // kubectl validates strictly by default: an unknown field is an error.
    let err = s.kubectl_fails(&["apply", "-f", "-"], Some(RED));
    assert!(err.contains(r#"strict decoding error: unknown field "spec.bogus""#), "{err}");
    let out = s.kubectl_stdin(&["apply", "--validate=false", "-f", "-"], Some(RED));
    assert!(out.contains("widget.example.com/red created"), "{out}");
    let red = s.kubectl_json(&["get", "widget", "red"]);
    assert_eq!(red["spec"]["minReplicas"], 0, "default applied: {red}");
    assert!(red["spec"].get("bogus").is_none(), "unknown field pruned: {red}");
    assert_eq!(red["spec"]["extra"]["anything"], serde_json::json!([1, 2]), "preserved: {red}");
    assert_eq!(red["spec"]["size"], "10Gi");
    assert_eq!(red["metadata"]["generation"], 1);
    let yaml = s.kubectl(&["get", "wd", "red", "-o", "yaml"]);
    // (the last-applied annotation still records what was sent, as JSON)
    assert!(yaml.contains("minReplicas: 0") && !yaml.contains("bogus: dropped"), "{yaml}");

    // Default columns and the printer columns.
    let table = s.kubectl(&["get", "widgets"]);
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "COLOR", "REPLICAS"], "{table}");
    let row: Vec<&str> = table.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(row, vec!["red", "red", "2"], "{table}");

    // More objects; list with label and field selectors (selectableFields).
    s.kubectl_stdin(
        &["create", "-f", "-"],
        Some("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: blue, labels: {tier: back}}\nspec: {color: blue}\n"),
    );
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["get", "widgets", "-o", "name"];
        a.extend(args);
        s.kubectl(&a).lines().map(str::to_string).collect()
    };
    assert_eq!(names(&[]), vec!["widget.example.com/blue", "widget.example.com/red"]);
    assert_eq!(names(&["-l", "tier=front"]), vec!["widget.example.com/red"]);
    assert_eq!(names(&["--field-selector", "spec.color=blue"]), vec!["widget.example.com/blue"]);
    assert_eq!(names(&["--field-selector", "metadata.name=red"]), vec!["widget.example.com/red"]);
    let err = s.kubectl_fails(&["get", "widgets", "--field-selector", "spec.owner=x"], None);
    assert!(err.contains("field label not supported: spec.owner"), "{err}");
    // Categories and short names resolve.
    assert_eq!(s.kubectl(&["get", "all-widgets", "-o", "name"]).lines().count(), 2);

    // Patches: merge and json work, strategic merge is refused as upstream.
    s.kubectl(&["patch", "widget", "red", "--type", "merge", "-p", r#"{"spec":{"replicas":3}}"#]);
    s.kubectl(&[
        "patch",
        "widget",
        "red",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/spec/owner","value":"team-a"}]"#,
    ]);
    let red = s.kubectl_json(&["get", "widget", "red"]);
    assert_eq!(red["spec"]["replicas"], 3);
    assert_eq!(red["spec"]["owner"], "team-a");
    assert_eq!(red["metadata"]["generation"], 3, "spec changes bump generation: {red}");
    let err =
        s.kubectl_fails(&["patch", "widget", "red", "--type", "strategic", "-p", r#"{"spec":{"replicas":4}}"#], None);
    assert!(err.contains("application/strategic-merge-patch+json is not supported"), "{err}");

    // Client-side apply again updates in place.
    let out =
        s.kubectl_stdin(&["apply", "--validate=false", "-f", "-"], Some(&RED.replace("replicas: 2", "replicas: 5")));
    assert!(out.contains("configured"), "{out}");
    assert_eq!(s.kubectl_json(&["get", "widget", "red"])["spec"]["replicas"], 5);

    // Server-side apply: creates, then updates.
    let green =
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: green}\nspec: {color: green, replicas: 1}\n";
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(green));
    assert!(out.contains("serverside-applied"), "{out}");
    s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(&green.replace("replicas: 1", "replicas: 4")));
    assert_eq!(s.kubectl_json(&["get", "widget", "green"])["spec"]["replicas"], 4);

    // Replace (PUT) with the fetched object.
    let mut g = s.kubectl_json(&["get", "widget", "green"]);
    g["spec"]["tags"] = serde_json::json!(["x"]);
    s.kubectl_stdin(&["replace", "-f", "-"], Some(&g.to_string()));
    assert_eq!(s.kubectl_json(&["get", "widget", "green"])["spec"]["tags"], serde_json::json!(["x"]));

    // Delete one.
    let out = s.kubectl(&["delete", "widget", "green"]);
    assert!(out.contains("deleted"), "{out}");
    assert!(s.kubectl_fails(&["get", "widget", "green"], None).contains("NotFound"));
}

#[test]
fn crd_validation_pruning_cel() {
    let s = Server::start();
    s.apply_crd(WIDGETS_CRD, "widgets.example.com");
    let create = |yaml: &str| s.kubectl_fails(&["create", "-f", "-"], Some(yaml));
    let head = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: bad}\n";

    let err = create(&format!("{head}spec: {{color: red, replicas: three}}\n"));
    assert!(
        err.contains(
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
        ),
        "{err}"
    );
    let err = create(&format!("{head}spec: {{color: purple}}\n"));
    assert!(
        err.contains(r#"spec.color: Unsupported value: "purple": supported values: "red", "green", "blue""#),
        "{err}"
    );
    let err = create(&format!("{head}spec: {{replicas: 1}}\n"));
    assert!(err.contains("spec.color: Required value"), "{err}");
    let err = create(&format!("{head}spec: {{color: red, replicas: -1}}\n"));
    assert!(
        err.contains("spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"),
        "{err}"
    );
    let err = create(&format!("{head}spec: {{color: red, since: yesterday}}\n"));
    assert!(err.contains("spec.since: Invalid value: \"yesterday\""), "{err}");
    let err = create(&format!("{head}spec: {{color: red, tags: [Bad_Tag]}}\n"));
    assert!(err.contains("spec.tags[0]: Invalid value: \"Bad_Tag\": spec.tags[0] in body should match"), "{err}");
    let err = create(&format!("{head}spec: {{color: red, size: true}}\n"));
    assert!(err.contains("spec.size: Invalid value"), "{err}");
    assert!(err.contains("is invalid"), "a 422 Invalid status: {err}");

    // CEL: a plain rule, messageExpression.
    let err = create(&format!("{head}spec: {{color: red, replicas: 1, minReplicas: 2}}\n"));
    assert!(err.contains(r#"spec: Invalid value: "object": replicas must be at least minReplicas"#), "{err}");
    let err = create(&format!("{head}spec: {{color: red, owner: bob}}\n"));
    assert!(err.contains("owner bob must start with team-"), "{err}");

    // Unknown fields: a warning with Warn validation, an error with Strict.
    let obj = format!("{head}spec: {{color: red, junk: 1}}\n");
    let out = s.kubectl_output(&["create", "--validate=warn", "-f", "-"], Some(&obj));
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field \"spec.junk\""), "{stderr}");
    let err =
        s.kubectl_fails(&["create", "--validate=strict", "-f", "-"], Some(&obj.replace("name: bad", "name: bad2")));
    assert!(err.contains("unknown field \"spec.junk\""), "{err}");

    // A transition rule: color may not change on update.
    let err =
        s.kubectl_fails(&["patch", "widget", "bad", "--type", "merge", "-p", r#"{"spec":{"color":"blue"}}"#], None);
    assert!(err.contains("color is immutable"), "{err}");
    s.kubectl(&["patch", "widget", "bad", "--type", "merge", "-p", r#"{"spec":{"replicas":4}}"#]);
}

#[test]
fn crd_status_and_scale_subresources() {
    let s = Server::start();
    s.apply_crd(WIDGETS_CRD, "widgets.example.com");
    s.kubectl_stdin(&["create", "--validate=false", "-f", "-"], Some(RED));
    // A status sent with the create is dropped, as upstream's PrepareForCreate
    // does for every resource with a status subresource.
    let with_status = RED.replace("name: red", "name: blue") + "status:\n  replicas: 5\n";
    s.kubectl_stdin(&["create", "--validate=false", "-f", "-"], Some(&with_status));
    let blue = s.kubectl_json(&["get", "widget", "blue"]);
    assert!(blue.get("status").is_none(), "{blue}");
    // Status in the main resource is ignored; the status subresource writes it.
    s.kubectl(&["patch", "widget", "red", "--type", "merge", "-p", r#"{"status":{"replicas":9}}"#]);
    let red = s.kubectl_json(&["get", "widget", "red"]);
    assert!(red.get("status").is_none() || red["status"]["replicas"].is_null(), "{red}");
    s.kubectl(&[
        "patch",
        "widget",
        "red",
        "--subresource=status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"replicas":2,"selector":"app=red","conditions":[{"type":"Ready","status":"True"}]},"spec":{"replicas":7}}"#,
    ]);
    let red = s.kubectl_json(&["get", "widget", "red"]);
    assert_eq!(red["status"]["replicas"], 2);
    assert_eq!(red["spec"]["replicas"], 2, "the status subresource leaves spec alone: {red}");
    assert_eq!(red["metadata"]["generation"], 1, "status writes do not bump generation: {red}");
    // The priority-1 column shows with -o wide.
    let wide = s.kubectl(&["get", "widget", "red", "-o", "wide"]);
    assert!(wide.lines().next().unwrap_or_default().contains("READY"), "{wide}");
    assert!(wide.lines().nth(1).unwrap_or_default().contains("True"), "{wide}");

    // kubectl scale goes through /scale.
    let out = s.kubectl(&["scale", "widget", "red", "--replicas=5"]);
    assert!(out.contains("scaled"), "{out}");
    let red = s.kubectl_json(&["get", "widget", "red"]);
    assert_eq!(red["spec"]["replicas"], 5);
    assert_eq!(red["metadata"]["generation"], 2);
    let scale = s.raw("/apis/example.com/v1/namespaces/default/widgets/red/scale");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(scale["status"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=red");
}

#[test]
fn crd_discovery_openapi_explain_and_deletion() {
    let s = Server::start();
    s.apply_crd(WIDGETS_CRD, "widgets.example.com");
    let resources = s.kubectl(&["api-resources", "--api-group=example.com"]);
    assert!(resources.contains("widgets") && resources.contains("wd") && resources.contains("Widget"), "{resources}");
    let list = s.raw("/apis/example.com/v1");
    let names: Vec<&str> =
        list["resources"].as_array().into_iter().flatten().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, vec!["widgets", "widgets/scale", "widgets/status"]);
    let groups = s.raw("/apis");
    assert!(groups["groups"].as_array().into_iter().flatten().any(|g| g["name"] == "example.com"), "{groups}");
    let v3 = s.raw("/openapi/v3");
    assert!(v3["paths"].get("apis/example.com/v1").is_some(), "{v3}");
    let doc = s.raw("/openapi/v3/apis/example.com/v1");
    let schema = &doc["components"]["schemas"]["com.example.v1.Widget"];
    assert_eq!(schema["properties"]["spec"]["properties"]["color"]["type"], "string", "{schema}");
    let v2 = s.raw("/openapi/v2");
    assert!(v2["definitions"].get("com.example.v1.Widget").is_some());

    let explain = s.kubectl(&["explain", "widgets.spec"]);
    assert!(explain.contains("The desired state of the widget."), "{explain}");
    assert!(explain.contains("color") && explain.contains("The colour of the widget."), "{explain}");
    let explain = s.kubectl(&["explain", "widget.spec.replicas"]);
    assert!(explain.contains("integer"), "{explain}");

    s.kubectl_stdin(&["create", "--validate=false", "-f", "-"], Some(RED));
    s.kubectl(&["create", "namespace", "other"]);
    s.kubectl_stdin(&["create", "--validate=false", "-n", "other", "-f", "-"], Some(RED));
    assert_eq!(s.kubectl(&["get", "widgets", "-A", "-o", "name"]).lines().count(), 2);

    // Deleting the CRD deletes its objects, then the API goes away.
    s.kubectl(&["delete", "crd", "widgets.example.com", "--timeout=20s"]);
    let err = s.kubectl_fails(&["get", "crd", "widgets.example.com"], None);
    assert!(err.contains("NotFound"), "{err}");
    let groups = s.raw("/apis");
    assert!(!groups["groups"].as_array().into_iter().flatten().any(|g| g["name"] == "example.com"), "{groups}");
    let v3 = s.raw("/openapi/v3");
    assert!(v3["paths"].get("apis/example.com/v1").is_none());
    let err = s.kubectl_fails(&["get", "--raw", "/apis/example.com/v1/widgets"], None);
    assert!(err.contains("NotFound") || err.contains("not found"), "{err}");

    // Recreated, it serves an empty collection.
    s.apply_crd(WIDGETS_CRD, "widgets.example.com");
    let list: Value = s.raw("/apis/example.com/v1/widgets");
    assert_eq!(list["items"], serde_json::json!([]), "{list}");
}

#[test]
fn crd_terminating_refuses_creates() {
    let s = Server::start();
    s.apply_crd(WIDGETS_CRD, "widgets.example.com");
    // A finalizer on one object holds the CRD's cleanup, so it stays terminating.
    s.kubectl_stdin(
        &["create", "-f", "-"],
        Some("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: held, finalizers: [example.com/hold]}\nspec: {color: red}\n"),
    );
    s.kubectl(&["delete", "crd", "widgets.example.com", "--wait=false"]);
    let late = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: late}\nspec: {color: blue}\n";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let err = loop {
        let out = s.kubectl_output(&["create", "-f", "-"], Some(late));
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        if !out.status.success() {
            break err;
        }
        // Created before the controller saw the deletion: the cleanup takes it.
        assert!(std::time::Instant::now() < deadline, "creates still accepted while the CRD terminates");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        err.contains("(Forbidden)")
            && err.contains("create not allowed while custom resource definition is terminating"),
        "{err}"
    );
    // Reads and writes of what exists go on while it terminates.
    let held = s.kubectl_json(&["get", "widget", "held"]);
    assert!(!held["metadata"]["deletionTimestamp"].is_null(), "cleanup deletes it: {held}");
    s.kubectl(&["label", "widget", "held", "seen=yes"]);
    s.kubectl(&["patch", "widget", "held", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
    s.kubectl(&["wait", "--for=delete", "crd/widgets.example.com", "--timeout=20s"]);

    // Recreated, it accepts creates again.
    s.apply_crd(WIDGETS_CRD, "widgets.example.com");
    s.kubectl_stdin(&["create", "-f", "-"], Some(late));
    assert_eq!(s.kubectl(&["get", "widgets", "-o", "name"]).trim(), "widget.example.com/late");
}

#[test]
fn crd_spec_validation() {
    let s = Server::start();
    let bad = WIDGETS_CRD.replace("name: widgets.example.com", "name: gadgets.example.com");
    let err = s.kubectl_fails(&["create", "-f", "-"], Some(&bad));
    assert!(
        err.contains(
            r#"metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group"#
        ),
        "{err}"
    );
    let bad = WIDGETS_CRD.replace(
        "          status:\n            type: object\n",
        "          status:\n            description: no type\n",
    );
    let err = s.kubectl_fails(&["create", "-f", "-"], Some(&bad));
    assert!(
        err.contains("spec.versions[0].schema.openAPIV3Schema.properties[status].type: Required value: must not be empty for specified object fields"),
        "{err}"
    );
    let bad = WIDGETS_CRD.replace(
        "        properties:\n          spec:\n",
        "        properties:\n          metadata:\n            type: object\n            properties:\n              labels: {type: object}\n          spec:\n",
    );
    let err = s.kubectl_fails(&["create", "-f", "-"], Some(&bad));
    assert!(
        err.contains("properties[metadata]: Forbidden: must not specify anything other than name and generateName"),
        "{err}"
    );
    let bad = WIDGETS_CRD.replace("rule: \"self.minReplicas <= self.replicas\"", "rule: \"self.minReplicas <= \"");
    let err = s.kubectl_fails(&["create", "-f", "-"], Some(&bad));
    assert!(err.contains("x-kubernetes-validations[0].rule: Invalid value"), "{err}");
    let bad = WIDGETS_CRD.replace("    storage: true\n", "    storage: false\n");
    let err = s.kubectl_fails(&["create", "-f", "-"], Some(&bad));
    assert!(err.contains("must have exactly one version marked as storage version"), "{err}");
    let bad = WIDGETS_CRD.replace(
        "        type: object\n        description: A Widget",
        "        type: object\n        x-kubernetes-preserve-unknown-fields: false\n        description: A Widget",
    );
    let err = s.kubectl_fails(&["create", "-f", "-"], Some(&bad));
    assert!(
        err.contains("x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined"),
        "{err}"
    );

    // A second CRD claiming a taken name is not accepted.
    s.apply_crd(WIDGETS_CRD, "widgets.example.com");
    let clash = WIDGETS_CRD
        .replace("name: widgets.example.com", "name: things.example.com")
        .replace("plural: widgets", "plural: things")
        .replace("singular: widget", "singular: thing")
        .replace("shortNames: [wd]", "shortNames: [th]");
    s.kubectl_stdin(&["create", "-f", "-"], Some(&clash));
    let mut accepted = Value::Null;
    for _ in 0..50 {
        let crd = s.kubectl_json(&["get", "crd", "things.example.com"]);
        if let Some(c) =
            crd["status"]["conditions"].as_array().and_then(|a| a.iter().find(|c| c["type"] == "NamesAccepted"))
        {
            accepted = c.clone();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(accepted["status"], "False", "{accepted}");
    assert_eq!(accepted["reason"], "KindConflict", "{accepted}");
}

e2e::on_etcd!(
    crd_established_and_cr_verbs,
    crd_validation_pruning_cel,
    crd_status_and_scale_subresources,
    crd_discovery_openapi_explain_and_deletion,
    crd_terminating_refuses_creates,
    crd_spec_validation
);
