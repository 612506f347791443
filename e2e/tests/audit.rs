//! Audit: a policy with a rule per level decides what each request's events
//! carry (upstream's audit.k8s.io/v1 Events, one JSON line each), stages are
//! omitted as the policy says, a watch gets ResponseStarted and
//! ResponseComplete, every answer's `Audit-ID` header names its events, `-`
//! writes to stdout, the log rotates by size keeping --audit-log-maxbackup
//! backups, and a bad policy stops the server.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::{Cred, HttpResponse, Server};
use serde_json::{json, Value};

const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*"]
- level: RequestResponse
  resources: [{group: "", resources: ["configmaps"]}]
  namespaces: ["audit-rr"]
- level: RequestResponse
  omitManagedFields: true
  resources: [{group: "", resources: ["configmaps"]}]
  namespaces: ["audit-omf"]
- level: Request
  omitStages: ["RequestReceived"]
  resources: [{group: "", resources: ["configmaps", "services"]}]
  namespaces: ["audit-req"]
- level: Metadata
  resources: [{group: "", resources: ["configmaps"]}]
  namespaces: ["audit-meta"]
- level: None
  resources: [{group: "", resources: ["configmaps"]}]
  namespaces: ["audit-none"]
- level: Metadata
  omitStages: ["RequestReceived"]
"#;

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("writing a test file");
    p
}

fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}")))
        .collect()
}

/// The events with this audit ID, in the order written, waiting up to 5 s
/// for `want` of them (a stream's last event follows its end).
fn events_of(log: &Path, id: &str, want: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let all = parse_lines(&std::fs::read_to_string(log).unwrap_or_default());
        let mine: Vec<Value> = all.into_iter().filter(|e| e["auditID"] == id).collect();
        if mine.len() >= want || Instant::now() > deadline {
            return mine;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stages(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["stage"].as_str().unwrap_or("")).collect()
}

#[track_caller]
fn audit_id(r: &HttpResponse) -> String {
    let ids = r.header("Audit-ID");
    assert_eq!(ids.len(), 1, "one Audit-ID header: {}", r.headers);
    ids[0].clone()
}

/// A write as admin with this audit ID and body; asserts the status it answers.
#[track_caller]
fn send(s: &Server, method: &str, path: &str, content_type: &str, id: &str, body: &[u8], code: u16) -> HttpResponse {
    let r = s.curl(method, path, Cred::Admin, &[("Content-Type", content_type), ("Audit-ID", id)], Some(body));
    assert_eq!(r.status, code, "{method} {path}: {}", r.text());
    assert_eq!(audit_id(&r), id, "a client's Audit-ID is kept");
    r
}

fn post_cm(s: &Server, ns: &str, name: &str, id: &str) -> HttpResponse {
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}});
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    send(s, "POST", &path, "application/json", id, body.to_string().as_bytes(), 201)
}

/// Fields every event carries, checked on each.
#[track_caller]
fn assert_common(e: &Value, id: &str, verb: &str, uri: &str) {
    assert_eq!(e["kind"], "Event", "{e}");
    assert_eq!(e["apiVersion"], "audit.k8s.io/v1", "{e}");
    assert_eq!(e["auditID"], id, "{e}");
    assert_eq!(e["verb"], verb, "{e}");
    assert_eq!(e["requestURI"], uri, "{e}");
    assert_eq!(e["user"]["username"], "admin", "{e}");
    assert!(e["user"]["groups"].as_array().is_some_and(|g| g.contains(&json!("system:masters"))), "{e}");
    assert!(e.get("impersonatedUser").is_none(), "{e}");
    assert_eq!(e["sourceIPs"], json!(["127.0.0.1"]), "{e}");
    assert!(e["userAgent"].as_str().is_some_and(|ua| ua.starts_with("curl/")), "{e}");
    let micro = |k: &str| {
        let t = e[k].as_str().unwrap_or_else(|| panic!("{k} missing: {e}"));
        assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok() && t.len() == 27 && t.ends_with('Z'), "{k}: {t}");
        t.to_string()
    };
    let (received, stage) = (micro("requestReceivedTimestamp"), micro("stageTimestamp"));
    assert!(stage >= received, "{e}");
    if e["stage"] == "RequestReceived" {
        assert_eq!(stage, received, "{e}");
        assert!(e.get("responseStatus").is_none(), "{e}");
    }
}

#[test]
fn audit_policy_levels_stages_and_ids() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = write(dir.path(), "policy.yaml", POLICY);
    let log = dir.path().join("logs/audit.log");
    let s = Server::start_with(&[
        "--audit-policy-file",
        &policy.display().to_string(),
        "--audit-log-path",
        &log.display().to_string(),
    ]);
    for ns in ["audit-rr", "audit-omf", "audit-req", "audit-meta", "audit-none"] {
        s.kubectl(&["create", "namespace", ns]);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&log).expect("the log exists").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the audit log is private");
    }

    // RequestResponse: RequestReceived is written before the body is read, so
    // only the later events carry the request object and the name it gives.
    post_cm(&s, "audit-rr", "c1", "id-rr");
    let ev = events_of(&log, "id-rr", 2);
    assert_eq!(stages(&ev), ["RequestReceived", "ResponseComplete"]);
    for e in &ev {
        assert_common(e, "id-rr", "create", "/api/v1/namespaces/audit-rr/configmaps");
        assert_eq!(e["level"], "RequestResponse");
    }
    assert_eq!(ev[0]["objectRef"], json!({"resource": "configmaps", "namespace": "audit-rr", "apiVersion": "v1"}));
    assert!(ev[0].get("requestObject").is_none() && ev[0].get("responseObject").is_none(), "{}", ev[0]);
    let done = &ev[1];
    assert_eq!(
        done["objectRef"],
        json!({"resource": "configmaps", "namespace": "audit-rr", "name": "c1", "apiVersion": "v1"}),
        "the name comes from the created object; no apiGroup for core"
    );
    assert_eq!(done["requestObject"]["data"], json!({"k": "v"}), "{done}");
    assert_eq!(done["requestObject"]["kind"], "ConfigMap", "{done}");
    assert_eq!(done["responseStatus"], json!({"metadata": {}, "code": 201}));
    assert_eq!(done["responseObject"]["metadata"]["name"], "c1");
    assert!(done["responseObject"]["metadata"]["uid"].is_string(), "{done}");
    assert!(done["responseObject"]["metadata"]["managedFields"].is_array(), "kept by default: {done}");

    // omitManagedFields drops them from the response (and request) objects.
    post_cm(&s, "audit-omf", "c1", "id-omf");
    let ev = events_of(&log, "id-omf", 2);
    assert_eq!(stages(&ev), ["RequestReceived", "ResponseComplete"]);
    assert_eq!(ev[1]["responseObject"]["metadata"]["name"], "c1");
    assert!(ev[1]["responseObject"]["metadata"].get("managedFields").is_none(), "{}", ev[1]);

    // Request: the request object, never the response; RequestReceived omitted by the rule.
    post_cm(&s, "audit-req", "c1", "id-req");
    let ev = events_of(&log, "id-req", 1);
    assert_eq!(stages(&ev), ["ResponseComplete"]);
    assert_common(&ev[0], "id-req", "create", "/api/v1/namespaces/audit-req/configmaps");
    assert_eq!(ev[0]["level"], "Request");
    assert_eq!(ev[0]["requestObject"]["data"], json!({"k": "v"}));
    assert!(ev[0].get("responseObject").is_none(), "{}", ev[0]);
    assert_eq!(ev[0]["responseStatus"]["code"], 201);
    // The object is recorded as the server decoded it, as upstream's: with
    // its defaults, without the fields its type does not have, and before
    // the server filled in anything (no uid, no clusterIP).
    let svc =
        br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"ports":[{"port":80}]},"bogus":1}"#;
    send(&s, "POST", "/api/v1/namespaces/audit-req/services", "application/json", "id-svc", svc, 201);
    let logged = &events_of(&log, "id-svc", 1)[0]["requestObject"];
    assert_eq!(logged["spec"]["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}), "{logged}");
    assert_eq!(logged["spec"]["sessionAffinity"], "None", "{logged}");
    assert!(logged.get("bogus").is_none() && logged["metadata"].get("uid").is_none(), "{logged}");
    assert!(logged["spec"].get("clusterIP").is_none(), "{logged}");
    // A patch is recorded as sent.
    let patch = json!({"data": {"k": "patched"}});
    let cm = "/api/v1/namespaces/audit-req/configmaps/c1";
    send(&s, "PATCH", cm, "application/merge-patch+json", "id-patch", patch.to_string().as_bytes(), 200);
    let ev = events_of(&log, "id-patch", 1);
    assert_eq!(stages(&ev), ["ResponseComplete"]);
    assert_eq!(ev[0]["verb"], "patch");
    assert_eq!(ev[0]["requestObject"], patch);

    // A delete's options are recorded typed, as upstream re-encodes them.
    send(&s, "DELETE", cm, "application/json", "id-delete", br#"{"propagationPolicy":"Background"}"#, 200);
    let ev = events_of(&log, "id-delete", 1);
    assert_eq!(ev[0]["verb"], "delete");
    assert_eq!(
        ev[0]["requestObject"],
        json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
    );
    assert_eq!(ev[0]["responseStatus"]["code"], 200);

    // Metadata: neither object; the objectRef still completed from the body,
    // with the uid and resourceVersion an update carries.
    post_cm(&s, "audit-meta", "c1", "id-meta");
    let ev = events_of(&log, "id-meta", 2);
    assert_eq!(stages(&ev), ["RequestReceived", "ResponseComplete"]);
    for e in &ev {
        assert_common(e, "id-meta", "create", "/api/v1/namespaces/audit-meta/configmaps");
        assert_eq!(e["level"], "Metadata");
        assert!(e.get("requestObject").is_none() && e.get("responseObject").is_none(), "{e}");
    }
    assert_eq!(ev[1]["objectRef"]["name"], "c1");
    let current = s.kubectl_json(&["get", "cm", "c1", "-n", "audit-meta", "-o", "json"]);
    let mut updated = current.clone();
    updated["data"] = json!({"k": "updated"});
    let cm = "/api/v1/namespaces/audit-meta/configmaps/c1";
    send(&s, "PUT", cm, "application/json", "id-update", updated.to_string().as_bytes(), 200);
    let ev = events_of(&log, "id-update", 2);
    assert_eq!(ev[1]["verb"], "update");
    assert_eq!(ev[1]["objectRef"]["uid"], current["metadata"]["uid"], "{}", ev[1]);
    assert_eq!(ev[1]["objectRef"]["resourceVersion"], current["metadata"]["resourceVersion"], "{}", ev[1]);
    // A failure's Status goes to responseStatus at Metadata.
    let r = s.curl("GET", "/api/v1/namespaces/audit-meta/configmaps/missing", Cred::Admin, &[], None);
    let status = r.assert_status(404, "NotFound");
    let id = audit_id(&r);
    assert_eq!(id.len(), 36, "a generated audit ID is a UUID: {id}");
    let ev = events_of(&log, &id, 2);
    assert_eq!(stages(&ev), ["RequestReceived", "ResponseComplete"]);
    assert_eq!(ev[1]["verb"], "get");
    assert_eq!(
        ev[1]["responseStatus"],
        json!({"metadata": {}, "status": "Failure", "message": status["message"], "reason": "NotFound",
               "details": status["details"], "code": 404})
    );

    // None: no events, though the answer still has its Audit-ID.
    post_cm(&s, "audit-none", "c1", "id-none");
    let r = s.curl("GET", "/healthz", Cred::Admin, &[], None);
    let health_id = audit_id(&r);
    // The catch-all rule (Metadata, no RequestReceived) covers anything else.
    let r = s.curl("GET", "/version", Cred::Admin, &[("Audit-ID", "id-version")], None);
    assert_eq!(r.status, 200);
    let ev = events_of(&log, "id-version", 1);
    assert_eq!(stages(&ev), ["ResponseComplete"]);
    assert_common(&ev[0], "id-version", "get", "/version");
    assert!(ev[0].get("objectRef").is_none(), "no objectRef for a non-resource request: {}", ev[0]);
    assert!(events_of(&log, "id-none", 0).is_empty());
    assert!(events_of(&log, &health_id, 0).is_empty());

    // A watch: ResponseStarted when the stream starts, ResponseComplete when it ends.
    let r = s.curl(
        "GET",
        "/api/v1/namespaces/audit-meta/configmaps?watch=true&timeoutSeconds=2",
        Cred::Admin,
        &[("Audit-ID", "id-watch")],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(audit_id(&r), "id-watch");
    let ev = events_of(&log, "id-watch", 3);
    assert_eq!(stages(&ev), ["RequestReceived", "ResponseStarted", "ResponseComplete"]);
    for e in &ev[1..] {
        assert_eq!(e["verb"], "watch");
        assert_eq!(e["responseStatus"], json!({"metadata": {}, "code": 200}));
    }
    let started = ev[1]["stageTimestamp"].as_str().unwrap_or_default();
    let ended = ev[2]["stageTimestamp"].as_str().unwrap_or_default();
    let gap = chrono::DateTime::parse_from_rfc3339(ended).expect("time")
        - chrono::DateTime::parse_from_rfc3339(started).expect("time");
    assert!(gap >= chrono::Duration::milliseconds(1500), "the stream lasted its 2 s: {started} .. {ended}");

    // A watch refused before it streams: both stages, with the Status.
    let r = s.curl(
        "GET",
        "/api/v1/namespaces/audit-meta/configmaps?watch=true&resourceVersion=bogus",
        Cred::Admin,
        &[("Audit-ID", "id-bad-watch")],
        None,
    );
    assert!(r.status >= 400, "{}", r.text());
    let ev = events_of(&log, "id-bad-watch", 3);
    assert_eq!(stages(&ev), ["RequestReceived", "ResponseStarted", "ResponseComplete"]);
    assert_eq!(ev[1]["responseStatus"]["code"], r.status);
    assert_eq!(ev[1]["responseStatus"]["message"], r.json()["message"]);

    // kubectl's own requests, and its watch: `kubectl get -w` ended by its timeout.
    let before = parse_lines(&std::fs::read_to_string(&log).unwrap_or_default()).len();
    let out = s.run(&["get", "cm", "-n", "audit-meta", "-w", "--request-timeout=2s"], None);
    assert!(out.stdout.contains("c1"), "{out:?}");
    let all = parse_lines(&std::fs::read_to_string(&log).unwrap_or_default());
    let kubectl_watch: Vec<&Value> =
        all[before..].iter().filter(|e| e["verb"] == "watch" && e["objectRef"]["namespace"] == "audit-meta").collect();
    assert!(
        kubectl_watch.iter().all(|e| e["userAgent"].as_str().is_some_and(|u| u.starts_with("kubectl"))),
        "{kubectl_watch:?}"
    );
    let watch_id = kubectl_watch.first().map(|e| e["auditID"].as_str().unwrap_or("").to_string()).unwrap_or_default();
    let ev = events_of(&log, &watch_id, 3);
    assert_eq!(stages(&ev), ["RequestReceived", "ResponseStarted", "ResponseComplete"], "kubectl's watch: {ev:?}");

    // A refused credential: one ResponseStarted event for nobody, with the 401.
    let r = s.curl("GET", "/api/v1/namespaces", Cred::Token("bogus".into()), &[("Audit-ID", "id-401")], None);
    assert_eq!(r.status, 401);
    assert_eq!(audit_id(&r), "id-401");
    let ev = events_of(&log, "id-401", 1);
    assert_eq!(stages(&ev), ["ResponseStarted"]);
    assert_eq!(ev[0]["user"], json!({}));
    assert_eq!(ev[0]["verb"], "list");
    assert_eq!(
        ev[0]["responseStatus"],
        json!({"metadata": {}, "message": "Authentication failed, attempted: bearer", "code": 401})
    );
}

/// The value of an unlabelled or labelled sample in /metrics.
fn metric(s: &Server, sample: &str) -> f64 {
    let text = s.kubectl(&["get", "--raw", "/metrics"]);
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in /metrics"))
}

#[test]
fn audit_log_to_stdout_in_legacy_format_and_batches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = write(
        dir.path(),
        "policy.yaml",
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
    );
    let s = Server::start_with(&[
        "--audit-policy-file",
        &policy.display().to_string(),
        "--audit-log-path",
        "-",
        "--audit-log-format",
        "legacy",
        "--audit-log-mode",
        "batch",
    ]);
    let r = s.curl("GET", "/api/v1/namespaces/default", Cred::Admin, &[("Audit-ID", "id-stdout")], None);
    assert_eq!(r.status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let out = std::fs::read_to_string(&s.stdout_log).unwrap_or_default();
        if let Some(l) = out.lines().find(|l| l.contains(r#"id="id-stdout""#)) {
            break l.to_string();
        }
        assert!(Instant::now() < deadline, "no audit line on stdout:\n{out}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let stamp = line.split(" AUDIT: ").next().unwrap_or_default();
    assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok(), "the line starts with the time received: {line}");
    for part in [
        r#" AUDIT: id="id-stdout" stage="ResponseComplete" ip="127.0.0.1" method="get" user="admin" groups="\"system:masters\",\"system:authenticated\"" as="<self>" asgroups="<lookup>" user-agent="curl/"#,
        r#" namespace="default" uri="/api/v1/namespaces/default" response="200""#,
    ] {
        assert!(line.contains(part), "{part}\nnot in\n{line}");
    }
    let out = std::fs::read_to_string(&s.stdout_log).unwrap_or_default();
    assert!(!out.contains(r#"stage="RequestReceived""#), "the policy omits RequestReceived:\n{out}");

    // Upstream's audit metrics count levels and events (one a request here).
    let levels = metric(&s, r#"apiserver_audit_level_total{level="Metadata"}"#);
    let events = metric(&s, "apiserver_audit_event_total");
    assert!(levels >= 1.0 && events >= 1.0, "levels {levels}, events {events}");
    for _ in 0..3 {
        s.kubectl(&["get", "ns", "default"]);
    }
    assert!(metric(&s, r#"apiserver_audit_level_total{level="Metadata"}"#) >= levels + 3.0);
    assert!(metric(&s, "apiserver_audit_event_total") >= events + 3.0);
}

#[test]
fn audit_log_rotates_by_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = write(
        dir.path(),
        "policy.yaml",
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n  resources: [{group: \"\", resources: [configmaps]}]\n",
    );
    let log = dir.path().join("audit.log");
    let s = Server::start_with(&[
        "--audit-policy-file",
        &policy.display().to_string(),
        "--audit-log-path",
        &log.display().to_string(),
        "--audit-log-maxsize",
        "1",
        "--audit-log-maxbackup",
        "2",
    ]);
    // Each create's ResponseComplete carries its 300 KB twice (request and
    // response): about 0.6 MB, so each one after the first rotates the log,
    // which then starts with that event.
    let data = "x".repeat(300 * 1024);
    for i in 0..5 {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("big-{i}")}, "data": {"k": data}});
        let r = s.request("POST", "/api/v1/namespaces/default/configmaps", Some(&body));
        assert_eq!(r.status, 201, "{}", r.text());
        // Backups are named by the millisecond.
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("audit"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "the log and --audit-log-maxbackup=2 backups: {names:?}");
    assert_eq!(names[2], "audit.log");
    let mut seen = 0;
    for n in &names {
        if n != "audit.log" {
            let stamp = n.strip_prefix("audit-").and_then(|x| x.strip_suffix(".log")).expect("backup name");
            assert!(chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H-%M-%S%.3f").is_ok(), "{n}");
        }
        let path = dir.path().join(n);
        assert!(std::fs::metadata(&path).expect("file").len() <= 1024 * 1024, "{n} is over 1 MiB");
        let events = parse_lines(&std::fs::read_to_string(&path).expect("read"));
        assert!(events.iter().all(|e| e["kind"] == "Event"), "{n}");
        seen += events.iter().filter(|e| e["verb"] == "create").count();
    }
    // Four rotations; the log holds the last ResponseComplete, each kept
    // backup the ResponseComplete and the next RequestReceived before it
    // rotated; the two oldest backups are gone.
    assert_eq!(seen, 5, "create events left in the log and its backups");
}

#[test]
fn bad_audit_flags_stop_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let refused = e2e::start_refused;
    let bad = write(dir.path(), "bad.yaml", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n");
    let log = dir.path().join("audit.log").display().to_string();
    let err = refused(&["--audit-policy-file", &bad.display().to_string(), "--audit-log-path", &log]);
    assert!(
        err.contains(&format!(
            "loading audit policy file: rules[0].level: Unsupported value: \"Everything\": supported values: \
             \"None\", \"Metadata\", \"Request\", \"RequestResponse\": from file {}",
            bad.display()
        )),
        "{err}"
    );
    let empty = write(dir.path(), "empty.yaml", "apiVersion: audit.k8s.io/v1\nkind: Policy\n");
    let err = refused(&["--audit-policy-file", &empty.display().to_string()]);
    assert!(err.contains("loading audit policy file: loaded illegal policy with 0 rules: from file"), "{err}");
    let missing = dir.path().join("missing.yaml").display().to_string();
    let err = refused(&["--audit-policy-file", &missing, "--audit-log-path", &log]);
    assert!(err.contains("loading audit policy file: failed to read file path"), "{err}");
    let good = write(dir.path(), "good.yaml", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n");
    let err = refused(&[
        "--audit-policy-file",
        &good.display().to_string(),
        "--audit-log-path",
        &log,
        "--audit-log-format",
        "xml",
    ]);
    assert!(err.contains("invalid audit log format xml, allowed formats are \"legacy,json\""), "{err}");
    let err = refused(&["--audit-log-path", &log, "--audit-log-maxbackup", "-1"]);
    assert!(err.contains("--audit-log-maxbackup -1 can't be a negative number"), "{err}");
}

/// Every audited request carries the authorization filter's decision and
/// reason, as upstream's: allow with the RBAC binding that allowed it (empty
/// for system:masters, which RBAC never sees), forbid with no reason when no
/// rule allows.
#[test]
fn authorization_decisions_are_annotated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy =
        write(dir.path(), "policy.yaml", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n");
    let log = dir.path().join("audit.log");
    let s = Server::start_with(&[
        "--authorization-mode=Node,RBAC",
        "--audit-policy-file",
        &policy.display().to_string(),
        "--audit-log-path",
        &log.display().to_string(),
    ]);
    s.kubectl(&["create", "role", "cm-reader", "--verb=get", "--resource=configmaps", "-n", "default"]);
    s.kubectl(&["create", "rolebinding", "cm-reader", "--role=cm-reader", "--user=alice", "-n", "default"]);
    let annotations = |id: &str| {
        let ev = events_of(&log, id, 2);
        assert_eq!(stages(&ev), ["RequestReceived", "ResponseComplete"], "{ev:?}");
        assert!(ev[0].get("annotations").is_none(), "decided after RequestReceived: {}", ev[0]);
        ev[1]["annotations"].clone()
    };
    let get = |path: &str, id: &str, as_user: Option<&str>| {
        let mut headers = vec![("Audit-ID", id)];
        headers.extend(as_user.map(|u| ("Impersonate-User", u)));
        s.curl("GET", path, Cred::Admin, &headers, None)
    };

    let r = get("/api/v1/namespaces/default", "authz-admin", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        annotations("authz-admin"),
        json!({"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""})
    );

    let cm = "/api/v1/namespaces/default/configmaps/kube-root-ca.crt";
    let mut allowed = None;
    for attempt in 0..50 {
        let id = format!("authz-alice-{attempt}");
        if get(cm, &id, Some("alice")).status == 200 {
            allowed = Some(id);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let id = allowed.expect("the rolebinding took effect");
    assert_eq!(
        annotations(&id),
        json!({"authorization.k8s.io/decision": "allow",
            "authorization.k8s.io/reason": "RBAC: allowed by RoleBinding \"cm-reader/default\" of Role \"cm-reader\" to User \"alice\""})
    );

    let r = get("/api/v1/namespaces/default/secrets", "authz-denied", Some("alice"));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        annotations("authz-denied"),
        json!({"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""})
    );
}
