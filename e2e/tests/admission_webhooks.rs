//! Admission webhooks against a real HTTPS webhook server this test starts
//! (a self-signed certificate given as caBundle, reached by URL and through
//! an ExternalName Service): refusals, JSONPatch mutation, failurePolicy on
//! unreachable, slow and garbage-answering webhooks, selectors,
//! matchConditions, reinvocation, dry run, matchPolicy Equivalent, the
//! kinds of subresources, metrics and configuration validation. Every configuration selects only namespaces labelled with its
//! own case, so the tests share one server without seeing each other's
//! webhooks.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use e2e::Server;
use serde_json::{json, Value};

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(Server::start)
}

/// The webhook server: every AdmissionReview it got, as (path, request).
struct Hooks {
    port: u16,
    ca: String,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    _rt: tokio::runtime::Runtime,
}

fn hooks() -> &'static Hooks {
    static HOOKS: OnceLock<Hooks> = OnceLock::new();
    HOOKS.get_or_init(start_hooks)
}

impl Hooks {
    /// The requests `path` got for objects named `name`.
    fn requests(&self, path: &str, name: &str) -> Vec<Value> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().filter(|(p, r)| p == path && r["name"] == name).map(|(_, r)| r.clone()).collect()
    }
}

fn patch_response(ops: Value) -> Value {
    let patch = base64::engine::general_purpose::STANDARD.encode(ops.to_string());
    json!({"allowed": true, "patchType": "JSONPatch", "patch": patch})
}

/// What each path answers for one AdmissionRequest: the `response` without
/// uid, or a raw (content type, body).
fn answer(path: &str, req: &Value) -> Result<Value, (&'static str, &'static str)> {
    let name = req["name"].as_str().unwrap_or_default();
    let data = |k: &str| req.pointer(&format!("/object/data/{k}")).and_then(Value::as_str).map(String::from);
    Ok(match path {
        "/deny" if name.starts_with("bad") => json!({
            "allowed": false,
            "status": {"code": 403, "reason": "Forbidden", "message": format!("configmaps named {name} are not welcome")},
            "warnings": ["the deny webhook looked at this"],
        }),
        "/deny" => json!({"allowed": true, "warnings": ["the deny webhook looked at this"],
            "auditAnnotations": {"looked": "yes"}}),
        "/deny-all" => json!({"allowed": false}),
        "/deny-exec" if req.pointer("/object/command/0") == Some(&json!("rm")) => json!({
            "allowed": false,
            "status": {"code": 403, "reason": "Forbidden", "message": format!("exec of {} is not allowed", req["object"]["command"])},
        }),
        "/mutate" => patch_response(json!([{"op": "add", "path": "/data/mutated", "value": "by-webhook"}])),
        "/reinvoke-a" => patch_response(
            json!([{"op": "add", "path": "/data/a-saw", "value": data("b").unwrap_or_else(|| "nothing".into())}]),
        ),
        "/reinvoke-b" => patch_response(json!([{"op": "add", "path": "/data/b", "value": "set"}])),
        "/scale" => patch_response(json!([{"op": "replace", "path": "/spec/replicas", "value": 3}])),
        "/note" => patch_response(json!([{"op": "add", "path": "/note", "value": "rewritten by the webhook"}])),
        "/slow" => {
            std::thread::sleep(Duration::from_millis(2500));
            json!({"allowed": true})
        }
        "/garbage" => return Err(("text/plain", "garbage")),
        _ => json!({"allowed": true}),
    })
}

fn start_hooks() -> Hooks {
    use http_body_util::{BodyExt, Full};

    let (acceptor, ca) = e2e::self_signed_acceptor(&["webhook.default.svc", "localhost", "127.0.0.1"]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("binding the webhook port");
    let port = listener.local_addr().expect("an address").port();
    let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let record = seen.clone();
    rt.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let record = record.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let request = review["request"].clone();
                        record.lock().unwrap_or_else(|e| e.into_inner()).push((path.clone(), request.clone()));
                        let answered = tokio::task::spawn_blocking(move || answer(&path, &request)).await;
                        let (content_type, body) = match answered {
                            Ok(Ok(mut response)) => {
                                response["uid"] = review["request"]["uid"].clone();
                                let r = json!({"apiVersion": review["apiVersion"], "kind": "AdmissionReview", "response": response});
                                ("application/json", r.to_string())
                            }
                            Ok(Err((t, b))) => (t, b.to_string()),
                            Err(_) => ("text/plain", "the webhook failed".to_string()),
                        };
                        let mut resp = hyper::Response::new(Full::new(bytes::Bytes::from(body)));
                        resp.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static(content_type));
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Hooks { port, ca, seen, _rt: rt }
}

/// One webhook of a configuration, for the case `case` (namespaces labelled
/// `webhook-case: <case>`), on configmaps; `extra` is merged in.
fn webhook(name: &str, client: Value, case: &str, extra: Value) -> Value {
    let mut w = json!({
        "name": name,
        "clientConfig": client,
        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "namespaceSelector": {"matchLabels": {"webhook-case": case}},
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "failurePolicy": "Fail",
    });
    if let (Some(w), Some(extra)) = (w.as_object_mut(), extra.as_object()) {
        w.extend(extra.clone());
    }
    w
}

fn url(path: &str) -> Value {
    let ca = base64::engine::general_purpose::STANDARD.encode(&hooks().ca);
    json!({"url": format!("https://127.0.0.1:{}{path}", hooks().port), "caBundle": ca})
}

/// Creates a configuration of `kind` (Validating/Mutating) and a namespace
/// for `case`, and waits until a create in it reaches the webhooks.
fn configure(s: &Server, kind: &str, case: &str, webhooks: Vec<Value>) {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": case, "labels": {"webhook-case": case}}});
    s.request("POST", "/api/v1/namespaces", Some(&ns));
    let config = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": format!("{kind}WebhookConfiguration"),
        "metadata": {"name": case}, "webhooks": webhooks});
    let plural = format!("{}webhookconfigurations", kind.to_lowercase());
    let r = s.request("POST", &format!("/apis/admissionregistration.k8s.io/v1/{plural}"), Some(&config));
    assert_eq!(r.status, 201, "creating the {case} configuration: {}", r.text());
}

/// A fresh name for probing whether a configuration is in effect yet.
fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!("{prefix}-{}", N.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
}

fn configmap(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

fn create(s: &Server, ns: &str, obj: &Value) -> e2e::HttpResponse {
    s.request("POST", &format!("/api/v1/namespaces/{ns}/configmaps"), Some(obj))
}

/// A refusal whose Status carries no reason (the webhook gave none).
#[track_caller]
fn assert_denied_without_reason(r: &e2e::HttpResponse, message: &str) {
    assert_eq!(r.status, 400, "{}", r.text());
    let status = r.json();
    assert_eq!((status["code"].as_u64(), status["message"].as_str()), (Some(400), Some(message)), "{status}");
    assert!(status.get("reason").is_none(), "an unknown reason is left out: {status}");
}

#[track_caller]
fn assert_internal(r: &e2e::HttpResponse, message: &str) {
    let status = r.assert_status(500, "InternalError");
    assert_eq!(status["message"], message, "{status}");
}

#[test]
fn a_refusal_in_upstreams_words_with_warnings_annotations_and_metrics() {
    let s = server();
    configure(s, "Validating", "deny", vec![webhook("deny.example.com", url("/deny"), "deny", json!({}))]);
    // The configuration takes effect within a second of being written.
    let written = Instant::now();
    loop {
        let r = create(s, "deny", &configmap("bad-one", json!({})));
        if r.status == 403 {
            let status = r.assert_status(403, "Forbidden");
            assert_eq!(
                status["message"],
                "admission webhook \"deny.example.com\" denied the request: configmaps named bad-one are not welcome"
            );
            assert_eq!(r.header("Warning"), ["299 - \"the deny webhook looked at this\""]);
            break;
        }
        assert_eq!(r.status, 201, "{}", r.text());
        s.request("DELETE", "/api/v1/namespaces/deny/configmaps/bad-one", None);
        assert!(written.elapsed() < Duration::from_secs(1), "the configuration took effect only after a second");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = create(s, "deny", &configmap("good", json!({})));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("Warning"), ["299 - \"the deny webhook looked at this\""]);
    let got = s.kubectl_fails(&["create", "configmap", "bad-two", "-n", "deny"], None);
    assert!(
        got.contains(
            "admission webhook \"deny.example.com\" denied the request: configmaps named bad-two are not welcome"
        ),
        "{got}"
    );

    // The AdmissionReview carries the request as upstream builds it.
    let reqs = hooks().requests("/deny", "good");
    let req = reqs.last().expect("the webhook saw the create");
    assert_eq!(req["kind"], json!({"group": "", "version": "v1", "kind": "ConfigMap"}));
    assert_eq!(req["resource"], json!({"group": "", "version": "v1", "resource": "configmaps"}));
    assert_eq!(req["requestKind"], req["kind"]);
    assert_eq!(req["requestResource"], req["resource"]);
    assert_eq!((req["namespace"].as_str(), req["operation"].as_str()), (Some("deny"), Some("CREATE")));
    assert_eq!(req["dryRun"], false);
    assert_eq!(req["object"]["data"], json!({"k": "v"}));
    assert_eq!(req["oldObject"], Value::Null);
    assert_eq!(req["options"], json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}));
    assert_eq!(
        req["userInfo"],
        json!({"username": "admin", "groups": ["system:masters", "system:authenticated"]}),
        "{req}"
    );
    assert!(req["uid"].as_str().is_some_and(|u| u.len() == 36), "{req}");

    let metrics = s.curl("GET", "/metrics", e2e::Cred::Admin, &[], None).text();
    for line in [
        "apiserver_admission_webhook_rejection_count{error_type=\"no_error\",name=\"deny.example.com\",operation=\"CREATE\",rejection_code=\"403\",type=\"validating\"}",
        "apiserver_admission_webhook_admission_duration_seconds_count{name=\"deny.example.com\",operation=\"CREATE\",rejected=\"true\",type=\"validating\"}",
        "apiserver_admission_webhook_admission_duration_seconds_count{name=\"deny.example.com\",operation=\"CREATE\",rejected=\"false\",type=\"validating\"}",
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line}");
    }

    // An unlabelled namespace is not selected.
    s.kubectl(&["create", "namespace", "deny-unselected"]);
    let r = create(s, "deny-unselected", &configmap("bad-elsewhere", json!({})));
    assert_eq!(r.status, 201, "{}", r.text());
    // Selected once labelled, and no longer once the label goes: the
    // selector follows the namespace's labels (as upstream's namespace
    // lister, within moments of the change).
    for (label, status) in [("webhook-case=deny", 403), ("webhook-case-", 201)] {
        s.kubectl(&["label", "namespace", "deny-unselected", label]);
        let since = Instant::now();
        loop {
            let r = create(s, "deny-unselected", &configmap(&unique("bad-relabelled"), json!({})));
            if r.status == status {
                break;
            }
            assert!(since.elapsed() < Duration::from_secs(2), "{label}: still {} after 2 s: {}", r.status, r.text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_jsonpatch_mutates_through_a_service_and_reinvocation_reruns_if_needed() {
    let s = server();
    let port = hooks().port;
    s.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: webhook, namespace: default}}\nspec: {{type: ExternalName, externalName: localhost, ports: [{{port: {port}}}]}}\n"
    ));
    let ca = base64::engine::general_purpose::STANDARD.encode(&hooks().ca);
    let service = |path: &str| json!({"service": {"namespace": "default", "name": "webhook", "port": port, "path": path}, "caBundle": ca});
    configure(s, "Mutating", "mutate", vec![webhook("mutate.example.com", service("/mutate"), "mutate", json!({}))]);
    e2e::eventually("the mutating webhook patches", || {
        let r = create(s, "mutate", &configmap(&unique("probe"), json!({})));
        r.status == 201 && r.json()["data"]["mutated"] == "by-webhook"
    });
    let r = create(s, "mutate", &configmap("patched", json!({})));
    assert_eq!(r.status, 201, "{}", r.text());
    let stored = s.kubectl_json(&["get", "configmap", "patched", "-n", "mutate", "-o", "json"]);
    assert_eq!(stored["data"], json!({"k": "v", "mutated": "by-webhook"}), "the patch is stored");

    // a (IfNeeded) runs before b changes the object, so it runs once more
    // and sees b's change.
    configure(
        s,
        "Mutating",
        "reinvoke",
        vec![
            webhook(
                "a.reinvoke.example.com",
                url("/reinvoke-a"),
                "reinvoke",
                json!({"reinvocationPolicy": "IfNeeded"}),
            ),
            webhook("b.reinvoke.example.com", url("/reinvoke-b"), "reinvoke", json!({})),
        ],
    );
    e2e::eventually("the reinvocation webhooks are in effect", || {
        create(s, "reinvoke", &configmap(&unique("probe"), json!({}))).json()["data"]["b"] == "set"
    });
    let r = create(s, "reinvoke", &configmap("twice", json!({})));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["data"], json!({"k": "v", "a-saw": "set", "b": "set"}));
    assert_eq!(hooks().requests("/reinvoke-a", "twice").len(), 2, "a is reinvoked once");
    assert_eq!(hooks().requests("/reinvoke-b", "twice").len(), 1, "b is not reinvoked");
}

#[test]
fn failure_policy_decides_for_unreachable_slow_and_garbage_webhooks() {
    let s = server();
    let ca = base64::engine::general_purpose::STANDARD.encode(&hooks().ca);
    let closed = json!({"url": "https://127.0.0.1:1/x", "caBundle": ca});
    let missing = json!({"service": {"namespace": "default", "name": "nosuch"}, "caBundle": ca});
    let ignore = json!({"failurePolicy": "Ignore"});
    configure(
        s,
        "Validating",
        "ignore",
        vec![
            webhook("closed.example.com", closed.clone(), "ignore", ignore.clone()),
            webhook("missing.example.com", missing.clone(), "ignore", ignore.clone()),
            webhook("garbage.example.com", url("/garbage"), "ignore", ignore.clone()),
        ],
    );
    e2e::eventually("the garbage webhook is called", || {
        let name = unique("through");
        let r = create(s, "ignore", &configmap(&name, json!({})));
        assert_eq!(r.status, 201, "Ignore lets the request through: {}", r.text());
        !hooks().requests("/garbage", &name).is_empty()
    });
    // Each of the three failed and was let through.
    let metrics = s.curl("GET", "/metrics", e2e::Cred::Admin, &[], None).text();
    for hook in ["closed", "missing", "garbage"] {
        let line =
            format!("apiserver_admission_webhook_fail_open_count{{name=\"{hook}.example.com\",type=\"validating\"}}");
        assert!(metrics.contains(&line), "/metrics lacks {line}");
    }

    let port = hooks().port;
    configure(s, "Validating", "closed", vec![webhook("closed.example.com", closed, "closed", json!({}))]);
    configure(s, "Validating", "missing", vec![webhook("missing.example.com", missing, "missing", json!({}))]);
    configure(s, "Validating", "garbage", vec![webhook("garbage.example.com", url("/garbage"), "garbage", json!({}))]);
    configure(
        s,
        "Validating",
        "slow",
        vec![webhook("slow.example.com", url("/slow"), "slow", json!({"timeoutSeconds": 1}))],
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_internal(
        &create(s, "closed", &configmap("c", json!({}))),
        "Internal error occurred: failed calling webhook \"closed.example.com\": failed to call webhook: Post \"https://127.0.0.1:1/x?timeout=10s\": dial tcp 127.0.0.1:1: connect: connection refused",
    );
    assert_internal(
        &create(s, "missing", &configmap("c", json!({}))),
        "Internal error occurred: failed calling webhook \"missing.example.com\": failed to call webhook: Post \"https://nosuch.default.svc:443/?timeout=10s\": service \"nosuch\" not found",
    );
    assert_internal(
        &create(s, "garbage", &configmap("c", json!({}))),
        "Internal error occurred: failed calling webhook \"garbage.example.com\": failed to call webhook: serializer for text/plain doesn't exist",
    );
    let started = Instant::now();
    assert_internal(
        &create(s, "slow", &configmap("c", json!({}))),
        &format!("Internal error occurred: failed calling webhook \"slow.example.com\": failed to call webhook: Post \"https://127.0.0.1:{port}/slow?timeout=1s\": context deadline exceeded"),
    );
    assert!(started.elapsed() < Duration::from_secs(2), "the webhook's timeout bounds the call");
    // Nothing was written, and the server keeps serving.
    for ns in ["closed", "missing", "garbage", "slow"] {
        let r = s.request("GET", &format!("/api/v1/namespaces/{ns}/configmaps/c"), None);
        r.assert_status(404, "NotFound");
    }
    s.kubectl(&["get", "namespaces"]);
    let metrics = s.curl("GET", "/metrics", e2e::Cred::Admin, &[], None).text();
    let line = "apiserver_admission_webhook_rejection_count{error_type=\"calling_webhook_error\",name=\"garbage.example.com\",operation=\"CREATE\",rejection_code=\"503\",type=\"validating\"} 1";
    assert!(metrics.contains(line), "/metrics lacks {line}");
}

#[test]
fn selectors_and_match_conditions_choose_the_requests() {
    let s = server();
    configure(
        s,
        "Validating",
        "select",
        vec![
            webhook(
                "labelled.example.com",
                url("/deny-all"),
                "select",
                json!({"objectSelector": {"matchLabels": {"deny": "yes"}}}),
            ),
            webhook(
                "conditional.example.com",
                url("/deny-all"),
                "select",
                json!({"matchConditions": [{"name": "cond-only", "expression": "object.metadata.name.startsWith('cond-') && request.operation == 'CREATE' && oldObject == null"}]}),
            ),
        ],
    );
    e2e::eventually("the selector webhooks are in effect", || {
        create(s, "select", &configmap(&unique("probe"), json!({"deny": "yes"}))).status == 400
    });
    let r = create(s, "select", &configmap("labelled", json!({"deny": "yes"})));
    assert_denied_without_reason(
        &r,
        "admission webhook \"labelled.example.com\" denied the request without explanation",
    );
    let r = create(s, "select", &configmap("unlabelled", json!({"deny": "no"})));
    assert_eq!(r.status, 201, "{}", r.text());
    let r = create(s, "select", &configmap("cond-x", json!({})));
    assert_denied_without_reason(
        &r,
        "admission webhook \"conditional.example.com\" denied the request without explanation",
    );
    let r = create(s, "select", &configmap("other", json!({})));
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(hooks().requests("/deny-all", "other").is_empty(), "a false matchCondition skips the call");
    assert!(hooks().requests("/deny-all", "unlabelled").is_empty(), "the object selector skips the call");
}

#[test]
fn dry_run_reaches_only_webhooks_without_side_effects() {
    let s = server();
    configure(
        s,
        "Mutating",
        "dryrun",
        vec![webhook("dry.example.com", url("/mutate"), "dryrun", json!({"sideEffects": "NoneOnDryRun"}))],
    );
    e2e::eventually("the dry-run webhook is in effect", || {
        create(s, "dryrun", &configmap(&unique("probe"), json!({}))).json()["data"]["mutated"] == "by-webhook"
    });
    let r = s.request("POST", "/api/v1/namespaces/dryrun/configmaps?dryRun=All", Some(&configmap("dry", json!({}))));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["data"]["mutated"], "by-webhook", "a dry run is mutated too");
    let seen = hooks().requests("/mutate", "dry");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["dryRun"], true);
    assert_eq!(seen[0]["options"]["dryRun"], json!(["All"]));
    s.request("GET", "/api/v1/namespaces/dryrun/configmaps/dry", None).assert_status(404, "NotFound");
}

#[test]
fn invalid_configurations_are_refused_with_field_paths() {
    let s = server();
    let bad = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
    "metadata": {"name": "bad-config"}, "webhooks": [{
        "name": "not-qualified",
        "clientConfig": {"url": "https://example.com/x?y=1#f"},
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
        "namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
        "matchConditions": [{"name": "broken", "expression": "object.metadata.name =="}],
        "sideEffects": "Some",
        "admissionReviewVersions": ["v1"],
    }]});
    let r = s.request("POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", Some(&bad));
    let status = r.assert_status(422, "Invalid");
    let fields: Vec<&str> =
        status["details"]["causes"].as_array().expect("causes").iter().filter_map(|c| c["field"].as_str()).collect();
    for field in [
        "webhooks[0].name",
        "webhooks[0].clientConfig.url",
        "webhooks[0].namespaceSelector.matchExpressions[0].values",
        "webhooks[0].matchConditions[0].expression",
        "webhooks[0].sideEffects",
    ] {
        assert!(fields.contains(&field), "no cause for {field}: {status}");
    }
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(
            "webhooks[0].clientConfig.url: Invalid value: \"y=1\": query parameters are not permitted in the URL"
        ),
        "{message}"
    );
    assert!(
        message.contains("webhooks[0].clientConfig.url: Invalid value: \"f\": fragments are not permitted in the URL"),
        "{message}"
    );
    assert!(
        message.contains(
            "webhooks[0].sideEffects: Unsupported value: \"Some\": supported values: \"None\", \"NoneOnDryRun\""
        ),
        "{message}"
    );
    assert!(message.contains("webhooks[0].matchConditions[0].expression: Invalid value: \"object.metadata.name ==\": compilation failed: "), "{message}");
}

/// A request to a connect subresource goes through admission as upstream's
/// ConnectResource sends it: operation CONNECT, the connect options
/// (PodExecOptions) as the object and the kind, before the kubelet-backed
/// handler answers; a webhook refusing it stops `kubectl exec` with its words.
#[test]
fn connect_requests_are_admitted_by_webhooks() {
    let s = server();
    let rules = json!({"rules": [{"operations": ["CONNECT"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/exec"]}]});
    configure(s, "Validating", "connect", vec![webhook("exec.example.com", url("/deny-exec"), "connect", rules)]);
    s.kubectl(&["run", "web", "-n", "connect", "--image=nginx"]);
    let denied =
        "admission webhook \"exec.example.com\" denied the request: exec of [\"rm\",\"-rf\",\"/tmp\"] is not allowed";
    let start = Instant::now();
    let err = loop {
        let out = s.run(&["exec", "-n", "connect", "web", "--", "rm", "-rf", "/tmp"], None);
        assert_ne!(out.code, 0, "{out:?}");
        if out.stderr.contains(denied) || start.elapsed() > Duration::from_secs(10) {
            break out.stderr;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(err.contains(denied), "{err}");
    let seen = hooks().requests("/deny-exec", "web");
    let r = seen.last().expect("the webhook saw the exec");
    assert_eq!(r["operation"], "CONNECT", "{r}");
    assert_eq!(r["kind"], json!({"group": "", "version": "v1", "kind": "PodExecOptions"}), "{r}");
    assert_eq!(r["resource"], json!({"group": "", "version": "v1", "resource": "pods"}), "{r}");
    assert_eq!((r["subResource"].as_str(), r["namespace"].as_str()), (Some("exec"), Some("connect")), "{r}");
    let object = &r["object"];
    assert_eq!((object["kind"].as_str(), object["apiVersion"].as_str()), (Some("PodExecOptions"), Some("v1")), "{r}");
    assert_eq!(object["command"], json!(["rm", "-rf", "/tmp"]), "{r}");
    assert_eq!((object["container"].as_str(), object["stdout"].as_bool()), (Some("web"), Some(true)), "{r}");
    assert!(r["oldObject"].is_null(), "{r}");

    // Admitted, the request reaches the handler, which has no kubelet to
    // dial; attach is not in the rule and never reaches the webhook.
    s.kubectl_err(&["exec", "-n", "connect", "web", "--", "ls"], None, &["pod web does not have a host assigned"]);
    let calls = hooks().requests("/deny-exec", "web").len();
    let attach = s.request("POST", "/api/v1/namespaces/connect/pods/web/attach?stdout=true", None);
    assert_eq!(attach.status, 400, "{}", attach.text());
    assert_eq!(hooks().requests("/deny-exec", "web").len(), calls, "attach is not in the webhook's rules");
    // A connect request is never a dry run.
    let dry = s.request("POST", "/api/v1/namespaces/connect/pods/web/exec?command=ls&stdout=true&dryRun=All", None);
    assert_eq!(dry.assert_status(400, "BadRequest")["message"], "dryRun is not supported");
}

#[test]
fn match_policy_equivalent_calls_webhooks_in_the_version_their_rules_name() {
    let s = server();
    // Rules on events.k8s.io/v1 Events; the requests are core/v1 Events,
    // the same stored objects.
    let rules = |policy: &str| {
        json!({"matchPolicy": policy, "rules": [{"operations": ["CREATE"], "apiGroups": ["events.k8s.io"],
            "apiVersions": ["v1"], "resources": ["events"]}]})
    };
    configure(
        s,
        "Mutating",
        "equivalent",
        vec![
            webhook("note.equivalent.example.com", url("/note"), "equivalent", rules("Equivalent")),
            webhook("exact.equivalent.example.com", url("/exact"), "equivalent", rules("Exact")),
        ],
    );
    let event = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
            "involvedObject": {"kind": "Pod", "name": "db", "namespace": "equivalent"},
            "reason": "Pulled", "message": "pulled image", "type": "Normal", "source": {"component": "kubelet"}})
    };
    let create = |name: &str| s.request("POST", "/api/v1/namespaces/equivalent/events", Some(&event(name)));
    e2e::eventually("the Equivalent webhook is in effect", || {
        create(&unique("probe")).json()["message"] == "rewritten by the webhook"
    });

    let r = create("converted");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["message"], "rewritten by the webhook", "the patch to note is converted back to message");
    let stored = s.kubectl_json(&["get", "events.v1.events.k8s.io", "converted", "-n", "equivalent", "-o", "json"]);
    assert_eq!(stored["note"], "rewritten by the webhook");

    let reqs = hooks().requests("/note", "converted");
    let [req] = reqs.as_slice() else { panic!("the Equivalent webhook is called once: {reqs:?}") };
    assert_eq!(req["kind"], json!({"group": "events.k8s.io", "version": "v1", "kind": "Event"}));
    assert_eq!(req["resource"], json!({"group": "events.k8s.io", "version": "v1", "resource": "events"}));
    assert_eq!(req["requestKind"], json!({"group": "", "version": "v1", "kind": "Event"}));
    assert_eq!(req["requestResource"], json!({"group": "", "version": "v1", "resource": "events"}));
    let object = &req["object"];
    assert_eq!(object["apiVersion"], "events.k8s.io/v1", "{object}");
    assert_eq!((&object["note"], &object["regarding"]["name"]), (&json!("pulled image"), &json!("db")), "{object}");
    assert!(object.get("message").is_none() && object.get("involvedObject").is_none(), "{object}");
    assert!(hooks().requests("/exact", "converted").is_empty(), "an Exact webhook is not called for another version");

    // Made in the version the rules name, both are called, with that
    // version throughout.
    let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "direct"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "e2e/test", "reportingInstance": "e2e-1",
        "action": "Pull", "reason": "Pulled", "note": "as v1", "type": "Normal",
        "regarding": {"kind": "Pod", "name": "db", "namespace": "equivalent"}});
    let r = s.request("POST", "/apis/events.k8s.io/v1/namespaces/equivalent/events", Some(&v1));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["note"], "rewritten by the webhook");
    let reqs = hooks().requests("/exact", "direct");
    let [req] = reqs.as_slice() else { panic!("the Exact webhook is called for its own version: {reqs:?}") };
    assert_eq!(req["kind"], req["requestKind"]);
    assert_eq!(req["requestKind"], json!({"group": "events.k8s.io", "version": "v1", "kind": "Event"}));
}

/// A subresource's object is admitted as its own kind: the autoscaling/v1
/// Scale of deployments/scale (which a mutating webhook may change), the
/// policy/v1 Eviction of pods/eviction, the Binding of pods/binding; and a
/// rule on the main resource does not see them.
#[test]
fn subresources_are_admitted_as_their_own_kinds() {
    let s = server();
    let rule = |group: &str, resources: &[&str], op: &str| json!({"rules": [{"operations": [op], "apiGroups": [group], "apiVersions": ["v1"], "resources": resources}]});
    configure(
        s,
        "Mutating",
        "subresources",
        vec![
            webhook(
                "scale.subresources.example.com",
                url("/scale"),
                "subresources",
                rule("apps", &["deployments/scale"], "UPDATE"),
            ),
            webhook(
                "main.subresources.example.com",
                url("/main"),
                "subresources",
                rule("apps", &["deployments"], "UPDATE"),
            ),
        ],
    );
    configure(
        s,
        "Validating",
        "subresources-create",
        vec![webhook(
            "create.subresources.example.com",
            url("/created"),
            "subresources",
            rule("", &["pods/eviction", "pods/binding"], "CREATE"),
        )],
    );
    s.kubectl(&["create", "deployment", "web", "-n", "subresources", "--image=nginx", "--replicas=1"]);
    e2e::eventually("the scale webhook sets three replicas", || {
        s.run(&["scale", "deployment", "web", "-n", "subresources", "--replicas=2"], None).code == 0
            && s.kubectl_json(&["get", "deployment", "web", "-n", "subresources", "-o", "json"])["spec"]["replicas"]
                == 3
    });
    let reqs = hooks().requests("/scale", "web");
    let req = reqs.last().expect("the scale webhook was called");
    assert_eq!(req["kind"], json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}), "{req}");
    assert_eq!(req["resource"], json!({"group": "apps", "version": "v1", "resource": "deployments"}), "{req}");
    assert_eq!((req["subResource"].as_str(), req["requestSubResource"].as_str()), (Some("scale"), Some("scale")));
    assert_eq!((req["object"]["kind"].as_str(), req["object"]["spec"]["replicas"].as_i64()), (Some("Scale"), Some(2)));
    assert_eq!(
        (req["oldObject"]["kind"].as_str(), req["oldObject"]["spec"]["replicas"].as_i64()),
        (Some("Scale"), Some(1))
    );
    assert!(hooks().requests("/main", "web").is_empty(), "a scale is not an update of the deployment itself");

    s.kubectl(&["run", "worker", "-n", "subresources", "--image=nginx"]);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "worker"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}});
    let r = s.request("POST", "/api/v1/namespaces/subresources/pods/worker/binding", Some(&binding));
    assert_eq!(r.status, 201, "{}", r.text());
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "worker", "namespace": "subresources"}});
    let r = s.request("POST", "/api/v1/namespaces/subresources/pods/worker/eviction", Some(&eviction));
    assert_eq!(r.status, 201, "{}", r.text());
    let reqs = hooks().requests("/created", "worker");
    let kinds: Vec<(&Value, &Value, &Value)> =
        reqs.iter().map(|r| (&r["kind"], &r["subResource"], &r["object"]["kind"])).collect();
    assert_eq!(
        kinds,
        [
            (&json!({"group": "", "version": "v1", "kind": "Binding"}), &json!("binding"), &json!("Binding")),
            (&json!({"group": "policy", "version": "v1", "kind": "Eviction"}), &json!("eviction"), &json!("Eviction")),
        ],
    );
    assert!(reqs.iter().all(|r| r["resource"] == json!({"group": "", "version": "v1", "resource": "pods"})));
}
