//! Built-ins served in two versions over one stored version: autoscaling/v2
//! and v1 HorizontalPodAutoscalers (stored as v2), core/v1 and
//! events.k8s.io/v1 Events (one /registry/events). Objects written through
//! either version read back, list and watch converted through the other;
//! each version keeps its own validation, field selectors and discovery.

use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use e2e::kinds::{header, KindCase};
use e2e::{table, Server};
use serde_json::{json, Value};

/// One server for the tests that do not disturb each other (each works in
/// its own namespace).
fn shared() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(Server::start)
}

fn namespace(s: &Server, name: &str) {
    s.kubectl(&["create", "namespace", name]);
}

const HPA_V2: &str = "apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 5
";

#[test]
fn horizontal_pod_autoscalers() {
    let s = shared();
    namespace(s, "hpa");
    s.check_kind(&KindCase {
        resource: "horizontalpodautoscalers.autoscaling",
        kind: "HorizontalPodAutoscaler",
        namespace: Some("hpa"),
        valid: HPA_V2,
        name: "web",
        defaults: &[
            ("/apiVersion", json!("autoscaling/v2")),
            ("/spec/minReplicas", json!(1)),
            (
                "/spec/metrics",
                json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
            ),
            ("/status/desiredReplicas", json!(0)),
        ],
        columns: &["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"],
        wide_columns: &["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"],
        invalid: "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: bad}\nspec:\n  scaleTargetRef: {kind: Deployment, name: web}\n  minReplicas: 3\n  maxReplicas: 2\n",
        invalid_name: "bad",
        invalid_causes: &["spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"],
    });
    let rows = table(&s.kubectl(&["get", "hpa", "-n", "hpa"]));
    assert_eq!(rows[0]["REFERENCE"], "Deployment/web");
    assert_eq!(rows[0]["TARGETS"], "cpu: <unknown>/80%");
    assert_eq!(
        (rows[0]["MINPODS"].as_str(), rows[0]["MAXPODS"].as_str(), rows[0]["REPLICAS"].as_str()),
        ("1", "5", "0")
    );

    // The v2 object read as v1: the cpu target is v1's field.
    let v1 = s.kubectl_json(&["get", "horizontalpodautoscalers.v1.autoscaling", "web", "-n", "hpa"]);
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 80);
    assert_eq!(v1["status"], json!({"currentReplicas": 0, "desiredReplicas": 0}));

    // Written as v1 (what v1 cannot say set through v2 first), read as v2.
    s.create("apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: api, namespace: hpa}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: api}\n  maxReplicas: 4\n  targetCPUUtilizationPercentage: 50\n");
    let v2 = s.kubectl_json(&["get", "horizontalpodautoscalers.v2.autoscaling", "api", "-n", "hpa"]);
    assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 50);
    assert_eq!(v2["spec"]["minReplicas"], 1);
    s.kubectl(&[
        "patch",
        "horizontalpodautoscalers.v2.autoscaling",
        "api",
        "-n",
        "hpa",
        "--type=json",
        "-p",
        r#"[{"op": "add", "path": "/spec/metrics/0", "value": {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}}}]"#,
    ]);
    let v1 = s.kubectl_json(&["get", "horizontalpodautoscalers.v1.autoscaling", "api", "-n", "hpa"]);
    let kept = v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"].as_str().unwrap_or_default();
    assert!(kept.contains("\"metricName\":\"qps\""), "{v1:#}");
    // A v1 update made from that read keeps the metric v1 cannot show.
    s.kubectl(&[
        "patch",
        "horizontalpodautoscalers.v1.autoscaling",
        "api",
        "-n",
        "hpa",
        "--type=merge",
        "-p",
        r#"{"spec": {"maxReplicas": 7}}"#,
    ]);
    let v2 = s.kubectl_json(&["get", "horizontalpodautoscalers.v2.autoscaling", "api", "-n", "hpa"]);
    assert_eq!(v2["spec"]["maxReplicas"], 7);
    let kinds: Vec<&str> =
        v2["spec"]["metrics"].as_array().unwrap().iter().filter_map(|m| m["type"].as_str()).collect();
    assert_eq!(kinds, ["Pods", "Resource"], "{v2:#}");
    assert!(v2["metadata"].get("annotations").is_none(), "round-trip annotations are never stored: {v2:#}");

    // v1's validation speaks of the stored (v2) fields, as upstream's internal ones.
    let bad = "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: zero, namespace: hpa}\nspec:\n  scaleTargetRef: {kind: Deployment, name: web}\n  maxReplicas: 2\n  targetCPUUtilizationPercentage: 0\n";
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(bad),
        &["spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0"],
    );

    // The status subresource, seen through both versions and in the table.
    s.kubectl(&[
        "patch",
        "horizontalpodautoscalers.v2.autoscaling",
        "web",
        "-n",
        "hpa",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status": {"currentReplicas": 2, "desiredReplicas": 2, "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 30}}}]}}"#,
    ]);
    let rows = table(&s.kubectl(&["get", "hpa", "web", "-n", "hpa"]));
    assert_eq!((rows[0]["TARGETS"].as_str(), rows[0]["REPLICAS"].as_str()), ("cpu: 30%/80%", "2"));
    let v1 = s.kubectl_json(&["get", "horizontalpodautoscalers.v1.autoscaling", "web", "-n", "hpa"]);
    assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 30);
    // A main-resource write does not change status.
    s.kubectl(&["patch", "hpa", "web", "-n", "hpa", "--type=merge", "-p", r#"{"status": {"currentReplicas": 9}}"#]);
    assert_eq!(s.kubectl_json(&["get", "hpa", "web", "-n", "hpa"])["status"]["currentReplicas"], 2);
}

#[test]
fn kubectl_autoscale() {
    let s = shared();
    namespace(s, "autoscale");
    s.kubectl(&["create", "deployment", "web", "--image=nginx", "-n", "autoscale"]);
    let out =
        s.kubectl(&["autoscale", "deployment", "web", "--min=2", "--max=5", "--cpu-percent=60", "-n", "autoscale"]);
    assert!(out.contains("horizontalpodautoscaler.autoscaling/web autoscaled"), "{out}");
    let got = s.kubectl(&["get", "hpa", "-n", "autoscale"]);
    let rows = table(&got);
    assert_eq!(rows.len(), 1, "{got}");
    assert_eq!(rows[0]["NAME"], "web");
    assert_eq!(rows[0]["REFERENCE"], "Deployment/web");
    assert_eq!(rows[0]["TARGETS"], "cpu: <unknown>/60%");
    assert_eq!((rows[0]["MINPODS"].as_str(), rows[0]["MAXPODS"].as_str()), ("2", "5"));
    // `all` includes hpa (category all).
    assert!(s.kubectl(&["get", "all", "-n", "autoscale"]).contains("horizontalpodautoscaler.autoscaling/web"));
}

#[test]
fn discovery_lists_both_versions() {
    let s = shared();
    let group = s.raw("/apis/autoscaling");
    assert_eq!(group["preferredVersion"]["version"], "v2");
    let versions: Vec<&str> =
        group["versions"].as_array().unwrap().iter().filter_map(|v| v["version"].as_str()).collect();
    assert_eq!(versions, ["v2", "v1"]);
    for gv in ["/apis/autoscaling/v2", "/apis/autoscaling/v1"] {
        let list = s.raw(gv);
        let names: Vec<&str> =
            list["resources"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
        assert_eq!(names, ["horizontalpodautoscalers", "horizontalpodautoscalers/status"], "{gv}");
        assert_eq!(list["resources"][0]["shortNames"], json!(["hpa"]));
        assert_eq!(list["resources"][0]["categories"], json!(["all"]));
    }
    let events = s.raw("/apis/events.k8s.io/v1");
    assert_eq!(events["resources"][0]["name"], "events");
    assert_eq!(events["resources"][0]["shortNames"], json!(["ev"]));
    // Groups in upstream's order (APIService priorities).
    let order: Vec<String> = s.raw("/apis")["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["name"].as_str().map(str::to_string))
        .collect();
    let at = |g: &str| order.iter().position(|n| n == g).unwrap_or_else(|| panic!("{g} not in {order:?}"));
    assert!(at("apps") < at("events.k8s.io") && at("events.k8s.io") < at("autoscaling"), "{order:?}");
    assert!(at("autoscaling") < at("discovery.k8s.io"), "{order:?}");
}

fn new_event(name: &str, ns: &str) -> String {
    format!(
        "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {{name: {name}, namespace: {ns}}}\neventTime: '2026-01-01T00:00:00.000000Z'\nreportingController: example.com/ctl\nreportingInstance: ctl-1\naction: Sync\nreason: Synced\nnote: all good\ntype: Normal\nregarding: {{kind: Pod, name: web, namespace: {ns}}}\n"
    )
}

fn old_event(name: &str, ns: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Event\nmetadata: {{name: {name}, namespace: {ns}}}\ninvolvedObject: {{kind: Pod, name: db, namespace: {ns}}}\nreason: Pulled\nmessage: pulled image\nsource: {{component: kubelet, host: node1}}\ncount: 2\ntype: Normal\nfirstTimestamp: '2026-01-01T00:00:00Z'\nlastTimestamp: '2026-01-01T00:01:00Z'\n"
    )
}

#[test]
fn events_in_two_versions() {
    let s = shared();
    namespace(s, "ev");
    // The kind check by hand: `kubectl explain` takes no group suffix, so
    // events.k8s.io's Event is explained with --api-version.
    s.create(&new_event("synced", "ev"));
    let got = s.kubectl_json(&["get", "events.events.k8s.io", "synced", "-n", "ev"]);
    assert_eq!((got["apiVersion"].as_str(), got["note"].as_str()), (Some("events.k8s.io/v1"), Some("all good")));
    let plain = s.kubectl(&["get", "events.events.k8s.io", "-n", "ev"]);
    assert_eq!(header(&plain), ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
    let wide = s.kubectl(&["get", "events.events.k8s.io", "-n", "ev", "-o", "wide"]);
    assert_eq!(
        header(&wide),
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE", "FIRST SEEN", "COUNT", "NAME"]
    );
    assert!(wide.contains("example.com/ctl, ctl-1"), "{wide}");
    let invalid = "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {name: bad, namespace: ev}\nreason: X\ntype: Normal\nregarding: {kind: Pod, name: web, namespace: ev}\n";
    s.kubectl_err(&["create", "-f", "-"], Some(invalid), &["is invalid", "eventTime: Required value"]);
    s.kubectl_err(&["get", "events.events.k8s.io", "bad", "-n", "ev"], None, &["not found"]);
    let explain = s.kubectl(&["explain", "events", "--api-version=events.k8s.io/v1"]);
    assert!(explain.contains("KIND:       Event") && explain.contains("events.k8s.io"), "{explain}");
    assert!(explain.contains("regarding"), "{explain}");

    // The events.k8s.io event is a core event with core's names.
    let core = s.raw("/api/v1/namespaces/ev/events/synced");
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["message"], "all good");
    assert_eq!(core["involvedObject"]["name"], "web");
    assert_eq!(core["reportingComponent"], "example.com/ctl");
    assert_eq!(core["reportingInstance"], "ctl-1");

    // A core event is an events.k8s.io event with the deprecated* fields.
    s.create(&old_event("pulled", "ev"));
    let v1 = s.raw("/apis/events.k8s.io/v1/namespaces/ev/events/pulled");
    assert_eq!(v1["note"], "pulled image");
    assert_eq!(v1["regarding"]["name"], "db");
    assert_eq!(v1["deprecatedSource"], json!({"component": "kubelet", "host": "node1"}));
    assert_eq!(v1["deprecatedCount"], 2);
    assert_eq!(v1["deprecatedFirstTimestamp"], "2026-01-01T00:00:00Z");
    // events.k8s.io's strict rules do not apply to core writes, and do to its own.
    let legacy = "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {name: legacy, namespace: ev}\nregarding: {kind: Pod, name: db, namespace: ev}\nreason: Pulled\ntype: Normal\ndeprecatedSource: {component: kubelet}\ndeprecatedCount: 2\n";
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(legacy),
        &[
            "eventTime: Required value",
            "count: Invalid value: \"\": needs to be unset",
            "source: Invalid value: \"\": needs to be unset",
        ],
    );

    // Each version's field selectors, by its own names.
    let by_regarding = s.raw("/apis/events.k8s.io/v1/namespaces/ev/events?fieldSelector=regarding.name%3Ddb");
    assert_eq!(by_regarding["items"].as_array().map(Vec::len), Some(1));
    let by_controller =
        s.raw("/apis/events.k8s.io/v1/namespaces/ev/events?fieldSelector=reportingController%3Dexample.com%2Fctl");
    assert_eq!(by_controller["items"][0]["metadata"]["name"], "synced");
    let by_involved = s.raw("/api/v1/namespaces/ev/events?fieldSelector=involvedObject.name%3Dweb");
    assert_eq!(by_involved["items"][0]["metadata"]["name"], "synced");
    let refused = s.run(
        &["get", "--raw", "/apis/events.k8s.io/v1/namespaces/ev/events?fieldSelector=involvedObject.name%3Dweb"],
        None,
    );
    assert!(refused.stderr.contains("field label not supported: involvedObject.name"), "{refused:?}");
    assert_eq!(table(&s.kubectl(&["get", "ev", "-n", "ev", "--field-selector", "reason=Pulled"])).len(), 1);

    // An events.k8s.io update may not change what the event says.
    s.kubectl_err(
        &[
            "patch",
            "events.events.k8s.io",
            "synced",
            "-n",
            "ev",
            "--type=merge",
            "-p",
            r#"{"note": "changed", "regarding": {"name": "db"}, "eventTime": "2026-01-01T00:00:00.500000Z"}"#,
        ],
        None,
        // Values as upstream's Go prints them.
        &[
            r#"involvedObject: Invalid value: core.ObjectReference{Kind:"Pod", Namespace:"ev", Name:"db", UID:"", APIVersion:"", ResourceVersion:"", FieldPath:""}: field is immutable"#,
            r#"message: Invalid value: "changed": field is immutable"#,
            "eventTime: Invalid value: 2026-01-01 00:00:00.5 +0000 UTC: field is immutable",
        ],
    );
}

fn next_event(rx: &mpsc::Receiver<String>, what: &str) -> Value {
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("no watch event for {what}"));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: {e}: {line}"))
}

/// Watches through one version see writes made through the other, converted.
#[test]
fn watches_see_the_other_version() {
    let s = Server::start();
    let rv = s.raw("/api/v1/namespaces/default/events")["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let watch = |path: &str| {
        s.kubectl_background(&["get", "--raw", &format!("{path}?watch=1&resourceVersion={rv}&timeoutSeconds=60")])
    };
    let (mut new_w, new_lines) = watch("/apis/events.k8s.io/v1/namespaces/default/events");
    let (mut core_w, core_lines) = watch("/api/v1/namespaces/default/events");
    let (mut hpa_w, hpa_lines) = watch("/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers");

    s.create(&old_event("old", "default"));
    let e = next_event(&new_lines, "a core event on the events.k8s.io watch");
    assert_eq!((e["type"].as_str(), e["object"]["apiVersion"].as_str()), (Some("ADDED"), Some("events.k8s.io/v1")));
    assert_eq!(e["object"]["note"], "pulled image");
    assert_eq!(e["object"]["deprecatedCount"], 2);
    let e = next_event(&core_lines, "the core event on the core watch");
    assert_eq!(e["object"]["metadata"]["name"], "old");

    s.create(&new_event("new", "default"));
    let e = next_event(&core_lines, "an events.k8s.io event on the core watch");
    assert_eq!((e["type"].as_str(), e["object"]["apiVersion"].as_str()), (Some("ADDED"), Some("v1")));
    assert_eq!(e["object"]["message"], "all good");
    assert_eq!(e["object"]["reportingComponent"], "example.com/ctl");
    assert_eq!(next_event(&new_lines, "the new event on its own watch")["object"]["metadata"]["name"], "new");

    s.create(&HPA_V2.replace("maxReplicas: 5", "maxReplicas: 5\n  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 65}}}]"));
    let e = next_event(&hpa_lines, "a v2 autoscaler on the v1 watch");
    assert_eq!((e["type"].as_str(), e["object"]["apiVersion"].as_str()), (Some("ADDED"), Some("autoscaling/v1")));
    assert_eq!(e["object"]["spec"]["targetCPUUtilizationPercentage"], 65);
    s.kubectl(&["delete", "events.events.k8s.io", "old"]);
    let e = next_event(&core_lines, "a deletion through events.k8s.io on the core watch");
    assert_eq!((e["type"].as_str(), e["object"]["metadata"]["name"].as_str()), (Some("DELETED"), Some("old")));
    for w in [&mut new_w, &mut core_w, &mut hpa_w] {
        let _ = w.kill();
        let _ = w.wait();
    }
}

e2e::on_etcd!(watches_see_the_other_version);
