//! The workload kinds (apps/v1 ReplicaSet, StatefulSet, DaemonSet,
//! ControllerRevision; core/v1 ReplicationController, PodTemplate; batch/v1
//! Job, CronJob; policy/v1 PodDisruptionBudget): the kind check on one shared
//! server, then the kubectl commands and subresources users drive them with
//! (create job/cronjob/pdb, scale, rollout) on another, and pods/eviction
//! and pods/binding on a third.

use e2e::kinds::KindCase;
use e2e::{table, Server};
use serde_json::{json, Value};

const TEMPLATE: &str =
    "  template:\n    metadata: {labels: {app: X}}\n    spec: {containers: [{name: c, image: nginx}]}\n";

/// A controller manifest whose selector and template both use `app: <app>`.
fn controller(api: &str, kind: &str, name: &str, app: &str, extra: &str) -> String {
    format!(
        "apiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{app: {app}}}}}\n{extra}{}",
        TEMPLATE.replace("app: X", &format!("app: {app}"))
    )
}

#[test]
fn workload_kinds() {
    let s = Server::start();
    let wide = |cols: &[&'static str]| {
        let mut c = cols.to_vec();
        c.extend(["CONTAINERS", "IMAGES", "SELECTOR"]);
        c
    };
    let replica_cols = ["NAME", "DESIRED", "CURRENT", "READY", "AGE"];
    s.check_kind(&KindCase {
        resource: "replicasets.apps",
        kind: "ReplicaSet",
        namespace: Some("default"),
        valid: &controller("apps/v1", "ReplicaSet", "frontend", "fe", ""),
        name: "frontend",
        defaults: &[
            ("/spec/replicas", json!(1)),
            ("/spec/template/spec/restartPolicy", json!("Always")),
            ("/spec/template/spec/containers/0/imagePullPolicy", json!("Always")),
            ("/status", json!({"replicas": 0})),
        ],
        columns: &replica_cols,
        wide_columns: &wide(&replica_cols),
        invalid: &controller("apps/v1", "ReplicaSet", "nosel", "fe", "")
            .replace("  selector: {matchLabels: {app: fe}}\n", ""),
        invalid_name: "nosel",
        invalid_causes: &["spec.selector: Required value", "`selector` does not match template `labels`"],
    });
    s.check_kind(&KindCase {
        resource: "statefulsets.apps",
        kind: "StatefulSet",
        namespace: Some("default"),
        valid: &controller("apps/v1", "StatefulSet", "db", "db", "  serviceName: db\n"),
        name: "db",
        defaults: &[
            ("/spec/replicas", json!(1)),
            ("/spec/podManagementPolicy", json!("OrderedReady")),
            ("/spec/updateStrategy", json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})),
            ("/spec/persistentVolumeClaimRetentionPolicy", json!({"whenDeleted": "Retain", "whenScaled": "Retain"})),
            ("/spec/revisionHistoryLimit", json!(10)),
        ],
        columns: &["NAME", "READY", "AGE"],
        wide_columns: &["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"],
        invalid: &controller("apps/v1", "StatefulSet", "bad-db", "db", "  podManagementPolicy: Sometimes\n"),
        invalid_name: "bad-db",
        invalid_causes: &[
            "spec.podManagementPolicy: Invalid value: \"Sometimes\": must be 'OrderedReady' or 'Parallel'",
        ],
    });
    let ds_cols = ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"];
    s.check_kind(&KindCase {
        resource: "daemonsets.apps",
        kind: "DaemonSet",
        namespace: Some("default"),
        valid: &controller("apps/v1", "DaemonSet", "agent", "agent", ""),
        name: "agent",
        defaults: &[
            (
                "/spec/updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            ),
            ("/spec/revisionHistoryLimit", json!(10)),
        ],
        columns: &ds_cols,
        wide_columns: &wide(&ds_cols),
        invalid: &controller("apps/v1", "DaemonSet", "bad-agent", "agent", "")
            .replace("spec: {containers", "spec: {restartPolicy: Never, containers"),
        invalid_name: "bad-agent",
        invalid_causes: &[
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
        ],
    });
    s.check_kind(&KindCase {
        resource: "controllerrevisions.apps",
        kind: "ControllerRevision",
        namespace: Some("default"),
        valid: "apiVersion: apps/v1\nkind: ControllerRevision\nmetadata: {name: db-1}\ndata: {spec: {replicas: 1}}\nrevision: 1\n",
        name: "db-1",
        defaults: &[("/revision", json!(1)), ("/data/spec/replicas", json!(1))],
        columns: &["NAME", "CONTROLLER", "REVISION", "AGE"],
        wide_columns: &["NAME", "CONTROLLER", "REVISION", "AGE"],
        invalid: "apiVersion: apps/v1\nkind: ControllerRevision\nmetadata: {name: db-2}\nrevision: -1\n",
        invalid_name: "db-2",
        invalid_causes: &["data: Required value: data is mandatory", "revision: Invalid value: -1: must be greater than or equal to 0"],
    });
    s.check_kind(&KindCase {
        resource: "replicationcontrollers",
        kind: "ReplicationController",
        namespace: Some("default"),
        valid: &format!("apiVersion: v1\nkind: ReplicationController\nmetadata: {{name: legacy}}\nspec:\n  replicas: 2\n{}", TEMPLATE.replace("app: X", "app: legacy")),
        name: "legacy",
        defaults: &[
            ("/spec/selector", json!({"app": "legacy"})),
            ("/metadata/labels", json!({"app": "legacy"})),
            ("/spec/template/spec/dnsPolicy", json!("ClusterFirst")),
        ],
        columns: &replica_cols,
        wide_columns: &wide(&replica_cols),
        invalid: "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: bad-rc}\nspec:\n  selector: {app: a}\n  template:\n    metadata: {labels: {app: b}}\n    spec: {activeDeadlineSeconds: 5, containers: [{name: c, image: nginx}]}\n",
        invalid_name: "bad-rc",
        invalid_causes: &[
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"b\"}: `selector` does not match template `labels`",
            "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicationController is not Supported",
        ],
    });
    s.check_kind(&KindCase {
        resource: "podtemplates",
        kind: "PodTemplate",
        namespace: Some("default"),
        valid: "apiVersion: v1\nkind: PodTemplate\nmetadata: {name: tmpl}\ntemplate:\n  metadata: {labels: {a: b}}\n  spec: {containers: [{name: c, image: 'nginx:1.25'}]}\n",
        name: "tmpl",
        defaults: &[
            ("/template/spec/restartPolicy", json!("Always")),
            ("/template/spec/containers/0/imagePullPolicy", json!("IfNotPresent")),
        ],
        columns: &["NAME", "CONTAINERS", "IMAGES", "POD LABELS"],
        wide_columns: &["NAME", "CONTAINERS", "IMAGES", "POD LABELS"],
        invalid: "apiVersion: v1\nkind: PodTemplate\nmetadata: {name: empty}\ntemplate:\n  spec: {containers: []}\n",
        invalid_name: "empty",
        invalid_causes: &["template.spec.containers: Required value"],
    });
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: pi}\nspec:\n  template:\n    spec: {restartPolicy: Never, containers: [{name: pi, image: perl}]}\n";
    s.check_kind(&KindCase {
        resource: "jobs.batch",
        kind: "Job",
        namespace: Some("default"),
        valid: job,
        name: "pi",
        defaults: &[
            ("/spec/completions", json!(1)),
            ("/spec/parallelism", json!(1)),
            ("/spec/backoffLimit", json!(6)),
            ("/spec/completionMode", json!("NonIndexed")),
            ("/spec/suspend", json!(false)),
            ("/spec/podReplacementPolicy", json!("TerminatingOrFailed")),
            ("/spec/template/metadata/labels/job-name", json!("pi")),
            ("/spec/template/metadata/labels/batch.kubernetes.io~1job-name", json!("pi")),
        ],
        columns: &["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        wide_columns: &wide(&["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]),
        invalid: &job.replace("name: pi}", "name: forever}").replace("restartPolicy: Never, ", ""),
        invalid_name: "forever",
        invalid_causes: &["spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""],
    });
    let cron = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec:\n  schedule: '0 3 * * *'\n  jobTemplate:\n    spec:\n      template:\n        spec: {restartPolicy: OnFailure, containers: [{name: c, image: busybox}]}\n";
    let cron_cols = ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"];
    s.check_kind(&KindCase {
        resource: "cronjobs.batch",
        kind: "CronJob",
        namespace: Some("default"),
        valid: cron,
        name: "nightly",
        defaults: &[
            ("/spec/concurrencyPolicy", json!("Allow")),
            ("/spec/suspend", json!(false)),
            ("/spec/successfulJobsHistoryLimit", json!(3)),
            ("/spec/failedJobsHistoryLimit", json!(1)),
            ("/spec/jobTemplate/spec/template/spec/schedulerName", json!("default-scheduler")),
        ],
        columns: &cron_cols,
        wide_columns: &wide(&cron_cols),
        invalid: &cron.replace("nightly", "often").replace("'0 3 * * *'", "'61 * * * *'"),
        invalid_name: "often",
        invalid_causes: &["spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"],
    });
    s.check_kind(&KindCase {
        resource: "poddisruptionbudgets.policy",
        kind: "PodDisruptionBudget",
        namespace: Some("default"),
        valid: "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: budget}\nspec: {minAvailable: 1, selector: {matchLabels: {app: fe}}}\n",
        name: "budget",
        defaults: &[("/spec/minAvailable", json!(1)), ("/status/disruptionsAllowed", json!(0))],
        columns: &["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"],
        wide_columns: &["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"],
        invalid: "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: both}\nspec: {minAvailable: 1, maxUnavailable: '150%'}\n",
        invalid_name: "both",
        invalid_causes: &["minAvailable and maxUnavailable cannot be both set", "spec.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"],
    });
    discovery_matches_upstream(&s);
}

fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> =
        v.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
    out.sort();
    out
}

/// Legacy discovery of these kinds (and of the pods subresources served
/// here) as upstream 1.33 serves it: kind, scope, short names, categories,
/// verbs, and each subresource's kind, group, version and verbs.
fn discovery_matches_upstream(s: &Server) {
    let path = e2e::workspace_root().join("../shared/facts/api-resources-1.33.json");
    let facts: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("the shared facts")).expect("JSON");
    let ours = ["pods/binding", "pods/eviction", "pods/status"];
    for resource in [
        "bindings",
        "replicasets",
        "statefulsets",
        "daemonsets",
        "controllerrevisions",
        "replicationcontrollers",
        "podtemplates",
        "jobs",
        "cronjobs",
        "poddisruptionbudgets",
        "pods",
    ] {
        let fact =
            facts["resources"].as_array().into_iter().flatten().find(|r| r["resource"] == resource).expect(resource);
        let gv = fact["groupVersion"].as_str().expect("groupVersion");
        let doc = s.raw(&if gv == "v1" { "/api/v1".to_string() } else { format!("/apis/{gv}") });
        let served = |name: &str| {
            doc["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("{gv} does not serve {name}"))
        };
        let r = served(resource);
        assert_eq!(
            (&r["kind"], &r["namespaced"], &r["singularName"]),
            (&fact["kind"], &fact["namespaced"], &fact["singularName"]),
            "{resource}"
        );
        assert_eq!(sorted(&r["shortNames"]), sorted(&fact["shortNames"]), "{resource} short names");
        assert_eq!(sorted(&r["categories"]), sorted(&fact["categories"]), "{resource} categories");
        assert_eq!(sorted(&r["verbs"]), sorted(&fact["verbs"]), "{resource} verbs");
        for sub in fact["subresources"].as_array().into_iter().flatten() {
            let name = format!("{resource}/{}", sub["name"].as_str().unwrap_or(""));
            if resource == "pods" && !ours.contains(&name.as_str()) {
                continue;
            }
            let r = served(&name);
            assert_eq!(r["kind"], sub["kind"], "{name}");
            assert_eq!(sorted(&r["verbs"]), sorted(&sub["verbs"]), "{name} verbs");
            for key in ["group", "version"] {
                assert_eq!(r.get(key).filter(|v| *v != ""), sub.get(key), "{name} {key}");
            }
        }
    }
}

fn replicas(s: &Server, resource: &str) -> Value {
    s.kubectl_json(&["get", resource])["spec"]["replicas"].clone()
}

#[test]
fn kubectl_workload_commands() {
    let s = Server::start();

    // kubectl create job: the selector and labels upstream generates from the uid.
    assert_eq!(
        s.kubectl(&["create", "job", "hello", "--image=busybox", "--", "echo", "hi"]),
        "job.batch/hello created\n"
    );
    let job = s.kubectl_json(&["get", "job", "hello"]);
    let uid = job["metadata"]["uid"].as_str().expect("uid").to_string();
    assert_eq!(job["spec"]["selector"], json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
    let labels = &job["spec"]["template"]["metadata"]["labels"];
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", uid.as_str()),
        ("batch.kubernetes.io/job-name", "hello"),
        ("controller-uid", uid.as_str()),
        ("job-name", "hello"),
    ] {
        assert_eq!(labels[k], v, "template label {k} in {job:#}");
    }
    assert_eq!(&job["metadata"]["labels"], labels);
    let rows = table(&s.kubectl(&["get", "jobs", "--field-selector", "status.successful=0"]));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0]["STATUS"].as_str(), rows[0]["COMPLETIONS"].as_str()), ("Running", "0/1"));
    // Job templates cannot change.
    s.kubectl_err(
        &[
            "patch",
            "job",
            "hello",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"alpine"}]"#,
        ],
        None,
        &["spec.template: Invalid value", "field is immutable"],
    );

    // kubectl create cronjob, then a job from it.
    assert_eq!(
        s.kubectl(&["create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *", "--", "date"]),
        "cronjob.batch/tick created\n"
    );
    let rows = table(&s.kubectl(&["get", "cronjobs"]));
    assert_eq!((rows[0]["SCHEDULE"].as_str(), rows[0]["SUSPEND"].as_str()), ("*/5 * * * *", "False"));
    assert_eq!(s.kubectl(&["create", "job", "tick-now", "--from=cronjob/tick"]), "job.batch/tick-now created\n");
    let from = s.kubectl_json(&["get", "job", "tick-now"]);
    assert_eq!(from["metadata"]["ownerReferences"][0]["kind"], "CronJob", "{from:#}");
    assert_eq!(from["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"], "manual");
    assert_eq!(from["spec"]["template"]["spec"]["restartPolicy"], "OnFailure");
    s.kubectl_err(
        &["create", "cronjob", "bad", "--image=busybox", "--schedule=@sometimes"],
        None,
        &["spec.schedule: Invalid value: \"@sometimes\": unrecognized descriptor: @sometimes"],
    );

    // kubectl create poddisruptionbudget.
    assert_eq!(
        s.kubectl(&["create", "poddisruptionbudget", "web-pdb", "--selector=app=web", "--min-available=1"]),
        "poddisruptionbudget.policy/web-pdb created\n"
    );
    let pdb = s.kubectl_json(&["get", "pdb", "web-pdb"]);
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(pdb["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));

    // kubectl scale on every scalable workload, and their Scale subresources.
    s.kubectl(&["create", "deployment", "web", "--image=nginx"]);
    // kubectl sends it as protobuf, where Go writes its plain bools and ints
    // even when zero; stored, they are unset, as upstream stores them.
    let web = s.kubectl_json(&["get", "deployment", "web"]);
    let pod = &web["spec"]["template"]["spec"];
    for (at, field) in [
        (&web["spec"], "paused"),
        (&web["spec"], "minReadySeconds"),
        (pod, "hostNetwork"),
        (pod, "hostPID"),
        (pod, "hostIPC"),
        (&pod["containers"][0], "stdin"),
        (&pod["containers"][0], "stdinOnce"),
        (&pod["containers"][0], "tty"),
    ] {
        assert!(at.get(field).is_none(), "{field} stored from a zero on the wire: {web}");
    }
    s.apply(&controller("apps/v1", "ReplicaSet", "rs1", "rs1", ""));
    s.apply(&controller("apps/v1", "StatefulSet", "sts1", "sts1", "  serviceName: sts1\n"));
    s.apply(&format!(
        "apiVersion: v1\nkind: ReplicationController\nmetadata: {{name: rc1}}\nspec:\n{}",
        TEMPLATE.replace("app: X", "app: rc1")
    ));
    for (resource, shown) in [
        ("deployment/web", "deployment.apps/web"),
        ("replicaset/rs1", "replicaset.apps/rs1"),
        ("statefulset/sts1", "statefulset.apps/sts1"),
        ("replicationcontroller/rc1", "replicationcontroller/rc1"),
    ] {
        assert_eq!(s.kubectl(&["scale", resource, "--replicas=3"]), format!("{shown} scaled\n"));
        assert_eq!(replicas(&s, resource), 3, "{resource}");
        let scale = s.kubectl_json(&["get", resource, "--subresource=scale"]);
        assert_eq!((scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()), (Some("Scale"), Some(3)), "{scale}");
    }
    let rc_scale = s.kubectl_json(&["get", "rc", "rc1", "--subresource=scale"]);
    assert_eq!(rc_scale["status"]["selector"], "app=rc1");
    let rs_scale = s.kubectl_json(&["get", "rs", "rs1", "--subresource=scale"]);
    assert_eq!(rs_scale["status"]["selector"], "app=rs1");
    let rows = table(&s.kubectl(&["get", "rs", "--field-selector", "status.replicas=0"]));
    assert_eq!(rows.len(), 1, "{rows:?}");
    let rows = table(&s.kubectl(&["get", "rc", "--field-selector", "status.replicas=1"]));
    assert!(rows.is_empty(), "{rows:?}");

    // StatefulSet spec fields other than the few upstream lists stay.
    s.kubectl_err(
        &["patch", "sts", "sts1", "--type=merge", "-p", r#"{"spec":{"serviceName":"other"}}"#],
        None,
        &["spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"],
    );
    // Selectors of apps/v1 controllers are immutable.
    s.kubectl_err(
        &["patch", "rs", "rs1", "--type=merge", "-p", r#"{"spec":{"selector":{"matchLabels":{"app":"rs1","v":"2"}},"template":{"metadata":{"labels":{"app":"rs1","v":"2"}}}}}"#],
        None,
        &["spec.selector: Invalid value", "field is immutable"],
    );

    // kubectl rollout pause, resume and history.
    assert_eq!(s.kubectl(&["rollout", "pause", "deployment/web"]), "deployment.apps/web paused\n");
    assert_eq!(replicas(&s, "deployment/web"), 3);
    assert_eq!(s.kubectl_json(&["get", "deployment/web"])["spec"]["paused"], true);
    assert_eq!(s.kubectl(&["rollout", "resume", "deployment/web"]), "deployment.apps/web resumed\n");
    assert_ne!(s.kubectl_json(&["get", "deployment/web"])["spec"]["paused"], true);
    let history = s.kubectl(&["rollout", "history", "deployment/web"]);
    assert!(history.contains("No rollout history found."), "{history}");

    // Selectors are label selectors wherever they are: keys are label names
    // and values label values, in matchLabels and in requirements.
    let bad_selector = "{matchLabels: {-app: web}, matchExpressions: [{key: tier, operator: In, values: [a b]}]}";
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&controller("apps/v1", "Deployment", "badsel", "web", "").replace("{matchLabels: {app: web}}", bad_selector)),
        &[
            r#"spec.selector.matchLabels: Invalid value: "-app": name part must consist of alphanumeric characters"#,
            r#"spec.selector.matchExpressions[0].values[0]: Invalid value: "a b": a valid label must be an empty string or consist of alphanumeric characters"#,
        ],
    );
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: badsel}}\nspec:\n  podSelector: {bad_selector}\n  ingress: [{{from: [{{namespaceSelector: {{matchExpressions: [{{key: x/y/z, operator: Exists}}]}}}}]}}]\n"
        )),
        &[
            "spec.podSelector.matchLabels: Invalid value",
            "spec.podSelector.matchExpressions[0].values[0]",
            r#"spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].key: Invalid value: "x/y/z""#,
        ],
    );
}

fn eviction(name: &str) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}})
}

fn evict(s: &Server, pod: &str, body: &Value) -> e2e::HttpResponse {
    s.request("POST", &format!("/api/v1/namespaces/default/pods/{pod}/eviction"), Some(body))
}

#[test]
fn pod_eviction_and_binding() {
    let s = Server::start();
    let pod = |name: &str, app: &str| {
        s.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {app}}}}}\nspec: {{containers: [{{name: c, image: nginx}}]}}\n"
        ));
        // Running and ready, as a kubelet would report it: such pods are guarded.
        s.kubectl(&[
            "patch",
            "pod",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
        ]);
    };

    // No budget: the pod goes, with a Success Status.
    pod("free", "free");
    let r = evict(&s, "free", &eviction("free"));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["status"], "Success");
    s.kubectl_err(&["get", "pod", "free"], None, &["NotFound"]);

    // The body names another pod.
    pod("guarded", "guarded");
    evict(&s, "guarded", &eviction("other")).assert_status(400, "BadRequest");

    // A budget the controller has not observed yet refuses with a retry hint.
    s.apply("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: keep}\nspec: {minAvailable: 1, selector: {matchLabels: {app: guarded}}}\n");
    let v = evict(&s, "guarded", &eviction("guarded")).assert_status(429, "TooManyRequests");
    assert_eq!(v["message"], "Cannot evict pod as it would violate the pod's disruption budget.");
    assert_eq!(
        v["details"]["causes"][0]["message"],
        "The disruption budget keep is still being processed by the server."
    );

    // Observed, with no disruption allowed: refused, the pod stays.
    let set_status = |allowed: i64| {
        s.kubectl(&[
            "patch", "pdb", "keep", "--subresource=status", "--type=merge", "-p",
            &format!(r#"{{"status":{{"observedGeneration":1,"disruptionsAllowed":{allowed},"currentHealthy":1,"desiredHealthy":1,"expectedPods":1}}}}"#),
        ]);
    };
    set_status(0);
    let v = evict(&s, "guarded", &eviction("guarded")).assert_status(429, "TooManyRequests");
    assert_eq!(
        v["details"]["causes"][0],
        json!({"reason": "DisruptionBudget", "message": "The disruption budget keep needs 1 healthy pods and has 1 currently"})
    );
    s.kubectl(&["get", "pod", "guarded"]);

    // A dry run with one disruption allowed changes nothing.
    set_status(1);
    let mut dry = eviction("guarded");
    dry["deleteOptions"] = json!({"dryRun": ["All"]});
    assert_eq!(evict(&s, "guarded", &dry).status, 201);
    s.kubectl(&["get", "pod", "guarded"]);
    assert_eq!(s.kubectl_json(&["get", "pdb", "keep"])["status"]["disruptionsAllowed"], 1);

    // One disruption allowed: the pod goes and the budget records it.
    let r = evict(&s, "guarded", &eviction("guarded"));
    assert_eq!(r.status, 201, "{}", r.text());
    s.kubectl_err(&["get", "pod", "guarded"], None, &["NotFound"]);
    let pdb = s.kubectl_json(&["get", "pdb", "keep"]);
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    assert!(pdb["status"]["disruptedPods"]["guarded"].is_string(), "{pdb:#}");
    assert_eq!(pdb["status"]["conditions"][0]["reason"], "InsufficientPods");

    // A pending pod is not guarded.
    s.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: waiting, labels: {app: guarded}}\nspec: {containers: [{name: c, image: nginx}]}\n");
    assert_eq!(evict(&s, "waiting", &eviction("waiting")).status, 201);
    evict(&s, "gone", &eviction("gone")).assert_status(404, "NotFound");

    // pods/binding assigns a node once.
    s.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: unbound}\nspec: {containers: [{name: c, image: nginx}]}\n");
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "unbound"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}});
    let path = "/api/v1/namespaces/default/pods/unbound/binding";
    let r = s.request("POST", path, Some(&binding));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["status"], "Success");
    let bound = s.kubectl_json(&["get", "pod", "unbound"]);
    assert_eq!(bound["spec"]["nodeName"], "node-1");
    let scheduled =
        bound["status"]["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "PodScheduled");
    assert_eq!(scheduled.map(|c| c["status"].clone()), Some(json!("True")), "{bound:#}");
    let v = s.request("POST", path, Some(&binding)).assert_status(409, "Conflict");
    assert_eq!(
        v["message"],
        "Operation cannot be fulfilled on pods/binding \"unbound\": pod unbound is already assigned to node \"node-1\""
    );
    let mut other = binding.clone();
    other["metadata"]["name"] = json!("else");
    s.request("POST", path, Some(&other)).assert_status(400, "BadRequest");

    // The bindings resource does the same for the pod its Binding names.
    s.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: second}\nspec: {containers: [{name: c, image: nginx}]}\n");
    let mut second = binding.clone();
    second["metadata"]["name"] = json!("second");
    let r = s.request("POST", "/api/v1/namespaces/default/bindings", Some(&second));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(s.kubectl_json(&["get", "pod", "second"])["spec"]["nodeName"], "node-1");
    s.request("POST", "/api/v1/namespaces/default/bindings", Some(&second)).assert_status(409, "Conflict");
}

// Eviction writes the budget's status and deletes with preconditions: storage matters.
e2e::on_etcd!(pod_eviction_and_binding);
