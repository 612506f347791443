//! admission: what validating admission configured in the cluster costs a
//! create that it does not concern, and what one policy that does costs.
//! Three variants in one run, each on a namespace of its own: creates with
//! no webhooks or policies; with 20 ValidatingWebhookConfigurations (pointing
//! at a real HTTPS webhook loadgen serves, with a self-signed caBundle) and
//! 20 ValidatingAdmissionPolicies with bindings, none selecting the
//! namespace; and the same in a namespace one of the policies selects (its
//! CEL expression allows the object). The configurations are proven active
//! before the measurement by probe creates they refuse, and proven gone by
//! the same probes admitted before the second half of the baseline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::client::{Client, Creds};
use crate::driver::{drive, Sample};
use crate::targets::{configmap, ApiTarget, Target};
use crate::Run;

/// Webhooks and policies installed, as issue 12 counts them.
pub const CONFIGURED: usize = 20;
pub const NONE: &str = "creates, no webhooks or policies";
pub const NOT_MATCHING: &str = "creates, 20 webhooks + 20 policies not matching";
pub const ONE_MATCHING: &str = "creates, 1 of the 20 policies matching";
/// Labels a probe object carries to be refused by the webhook or a policy.
const DENY_WEBHOOK: &str = "loadgen-deny-webhook";
const DENY_POLICY: &str = "loadgen-deny-policy";
const GROUP: &str = "/apis/admissionregistration.k8s.io/v1";

/// The webhook loadgen serves: allows everything but objects labelled
/// [`DENY_WEBHOOK`], and counts the reviews it got.
struct Webhook {
    port: u16,
    ca_pem: String,
    calls: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn review_answer(review: &Value) -> Value {
    let req = &review["request"];
    let denied = req["object"]["metadata"]["labels"].get(DENY_WEBHOOK).is_some();
    let mut response = json!({"uid": req["uid"], "allowed": !denied});
    if denied {
        response["status"] = json!({"code": 403, "message": "denied by loadgen's probe label"});
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

async fn start_webhook() -> Result<Webhook, String> {
    let (acceptor, ca_pem) = e2e::self_signed_acceptor(&["127.0.0.1"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("binding: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let (acceptor, counter) = (acceptor.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::Relaxed);
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let review: Value = serde_json::from_slice(&body).unwrap_or_default();
                        let answer = Bytes::from(review_answer(&review).to_string());
                        let mut resp = hyper::Response::new(http_body_util::Full::new(answer));
                        resp.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(Webhook { port, ca_pem, calls, task })
}

/// Configuration `k` of `CONFIGURED`, labelled so one deletecollection
/// removes them all. Webhook 0 selects the probe namespace, policy 0 the
/// probe and "match" namespaces; the rest select labels no namespace has.
fn configurations(prefix: &str, hook: &Webhook, k: usize) -> [(String, Value); 3] {
    let name = format!("{prefix}-admission-{k}");
    let meta = json!({"name": name, "labels": {"loadgen": prefix}});
    let rules =
        json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]);
    let webhook_ns = if k == 0 { "probe".to_string() } else { format!("never-{k}") };
    let policy_ns = if k == 0 { "match".to_string() } else { format!("never-{k}") };
    let ca = base64::engine::general_purpose::STANDARD.encode(&hook.ca_pem);
    let webhook = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": meta,
        "webhooks": [{
            "name": format!("nomatch-{k}.loadgen.example.com"),
            "clientConfig": {"url": format!("https://127.0.0.1:{}/validate", hook.port), "caBundle": ca},
            "rules": rules,
            "namespaceSelector": {"matchLabels": {"loadgen-webhook": webhook_ns}},
            "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Fail", "timeoutSeconds": 5,
        }],
    });
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy", "metadata": meta,
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": rules},
            "validations": [{
                "expression": format!("!has(object.metadata.labels) || !('{DENY_POLICY}' in object.metadata.labels)"),
                "message": "denied by loadgen's probe label",
            }],
        },
    });
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding", "metadata": meta,
        "spec": {
            "policyName": name, "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"loadgen-policy": policy_ns}}},
        },
    });
    [
        ("validatingwebhookconfigurations".into(), webhook),
        ("validatingadmissionpolicies".into(), policy),
        ("validatingadmissionpolicybindings".into(), binding),
    ]
}

async fn post(client: &Client, path: &str, body: &Value) -> Result<Bytes, String> {
    client.ok(hyper::Method::POST, path, Some(Bytes::from(body.to_string()))).await
}

async fn namespace(client: &Client, name: &str, labels: Value) -> Result<(), String> {
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
    post(client, "/api/v1/namespaces", &body).await.map(|_| ())
}

/// Waits until a create labelled `label` in `ns` is refused (`refused`:
/// the webhook or policy that refuses it is in force) or admitted (it is
/// gone).
async fn until(client: &Client, ns: &str, label: &str, refused: bool) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    loop {
        let probe = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"generateName": "probe-", "labels": {label: "yes"}}});
        let a = client.request(hyper::Method::POST, &path, Some(Bytes::from(probe.to_string()))).await?;
        if (200..300).contains(&a.status) != refused {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            let state = if refused { "still admitted" } else { "still refused" };
            return Err(format!("a create labelled {label} was {state} 15 s after the configurations changed"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Removes every configuration this run made.
async fn remove(client: &Client, prefix: &str) -> Result<(), String> {
    for kind in ["validatingwebhookconfigurations", "validatingadmissionpolicybindings", "validatingadmissionpolicies"]
    {
        let path = format!("{GROUP}/{kind}?labelSelector=loadgen%3D{prefix}");
        client.ok(hyper::Method::DELETE, &path, None).await.map_err(|e| format!("removing the {kind}: {e}"))?;
    }
    Ok(())
}

pub async fn run(run: &mut Run, creds: &Creds, backend: &str, prefix: &str) {
    if let Err(e) = measure(run, creds, backend, prefix).await {
        run.skip("admission", format!("{backend}: {e}"));
    }
    // Whatever happened, leave no configuration behind to slow later scenarios.
    if let Ok(client) = Client::connect(creds, 1).await {
        if let Err(e) = remove(&client, prefix).await {
            eprintln!("admission: {e}");
        }
    }
}

/// The store grows by every create measured, and creates slow as it grows,
/// so the variants are bracketed: half of each baseline runs before and half
/// after what it is compared with (none, not matching, matching, not
/// matching, none), and every figure is centred on the same point of the
/// store's growth.
async fn measure(run: &mut Run, creds: &Creds, backend: &str, prefix: &str) -> Result<(), String> {
    let client = Client::connect(creds, 1).await?;
    let hook = start_webhook().await?;
    let ns = |v: &str| format!("{prefix}-admission-{v}");
    // Each slice writes into a namespace of its own: names restart at 0.
    for v in ["none", "none-2", "nomatch", "nomatch-2"] {
        namespace(&client, &ns(v), json!({})).await?;
    }
    namespace(&client, &ns("match"), json!({"loadgen-policy": "match"})).await?;
    namespace(&client, &ns("probe"), json!({"loadgen-policy": "match", "loadgen-webhook": "probe"})).await?;
    let (full, half) = (run.s.duration(), run.s.duration() / 2);
    let calls = || hook.calls.load(Ordering::Relaxed);

    let start = calls();
    let mut none = creates(run, &client, &ns("none"), half).await;
    let none_calls = calls() - start;
    for k in 0..CONFIGURED {
        for (resource, body) in configurations(prefix, &hook, k) {
            post(&client, &format!("{GROUP}/{resource}"), &body).await?;
        }
    }
    until(&client, &ns("probe"), DENY_WEBHOOK, true).await?;
    until(&client, &ns("probe"), DENY_POLICY, true).await?;
    let before = calls();
    let mut not_matching = creates(run, &client, &ns("nomatch"), half).await;
    let during = calls();
    let matching = creates(run, &client, &ns("match"), full).await;
    let after = calls();
    not_matching.merge_slice(creates(run, &client, &ns("nomatch-2"), half).await);
    let not_matching_calls = (during - before) + (calls() - after);
    remove(&client, prefix).await?;
    until(&client, &ns("probe"), DENY_WEBHOOK, false).await?;
    until(&client, &ns("probe"), DENY_POLICY, false).await?;
    let removed = calls();
    none.merge_slice(creates(run, &client, &ns("none-2"), half).await);
    let none_calls = none_calls + (calls() - removed);

    for (variant, sample, webhook_calls) in [
        (NONE, none, none_calls),
        (NOT_MATCHING, not_matching, not_matching_calls),
        (ONE_MATCHING, matching, after - during),
    ] {
        run.push("admission", variant, Some(backend), sample.summary());
        // None is selected by a measured namespace: a call here is a bug.
        if let Some(m) = run.measurements.last_mut() {
            m.extra = json!({"webhook_calls": webhook_calls});
        }
    }
    Ok(())
}

/// Creates in `ns` for `duration`.
async fn creates(run: &Run, client: &Client, ns: &str, duration: std::time::Duration) -> Sample {
    let target: Arc<dyn Target> = Arc::new(ApiTarget::json(client.clone()));
    let (scope, bytes) = (ns.to_string(), run.s.object_bytes);
    drive(run.s.concurrency, duration, None, move |i| {
        let (t, sc) = (target.clone(), scope.clone());
        async move { t.create(&sc, i, configmap(&sc, i, bytes, &[])).await }
    })
    .await
}
