//! admission: what validating admission configured in the cluster costs a
//! create that it does not concern, and what one policy that does costs.
//! Three variants in one run, each on a namespace of its own: creates with
//! no webhooks or policies; with 20 ValidatingWebhookConfigurations (pointing
//! at a real HTTPS webhook loadgen serves, with a self-signed caBundle) and
//! 20 ValidatingAdmissionPolicies with bindings, none selecting the
//! namespace; and the same in a namespace one of the policies selects (its
//! CEL expression allows the object). The variants run in alternating
//! rounds ([`measure`]); each time the configurations are added they are
//! proven active by probe creates they refuse, and each time they are
//! removed, proven gone by the same probes admitted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::client::{Client, Creds};
use crate::driver::{alternating, drive, Sample, ROUNDS};
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

/// The store grows by every create measured, and creates slow as it grows
/// (fastest on a fresh store), so no variant may run only early or only
/// late: the three run in rounds, none / not matching / matching and back
/// (N B C C B N N B C C B N), the configurations added before and removed
/// after each pair of configured slices. Every variant is centred on the
/// same point of the store's growth, and a stall of the machine or of etcd
/// weighs on all alike.
async fn measure(run: &mut Run, creds: &Creds, backend: &str, prefix: &str) -> Result<(), String> {
    let client = Client::connect(creds, 1).await?;
    let hook = start_webhook().await?;
    let ns = |v: &str| format!("{prefix}-admission-{v}");
    // Each slice writes into a namespace of its own: names restart at 0.
    for round in 0..ROUNDS {
        namespace(&client, &ns(&format!("none-{round}")), json!({})).await?;
        namespace(&client, &ns(&format!("nomatch-{round}")), json!({})).await?;
        namespace(&client, &ns(&format!("match-{round}")), json!({"loadgen-policy": "match"})).await?;
    }
    namespace(&client, &ns("probe"), json!({"loadgen-policy": "match", "loadgen-webhook": "probe"})).await?;
    let slice = run.s.duration() / ROUNDS as u32;
    let calls = || hook.calls.load(Ordering::Relaxed);

    let variants = [("none", NONE), ("nomatch", NOT_MATCHING), ("match", ONE_MATCHING)];
    let mut samples: [Sample; 3] = Default::default();
    let mut webhook_calls = [0u64; 3];
    let mut configured = false;
    for (round, v) in alternating(variants.len()) {
        if (v != 0) != configured {
            configured = !configured;
            configure(&client, prefix, &hook, &ns("probe"), configured).await?;
        }
        let before = calls();
        let sample = creates(run, &client, &ns(&format!("{}-{round}", variants[v].0)), slice).await;
        samples[v].merge_slice(sample);
        webhook_calls[v] += calls() - before;
    }
    if configured {
        configure(&client, prefix, &hook, &ns("probe"), false).await?;
    }
    for ((_, variant), (sample, calls)) in variants.into_iter().zip(samples.into_iter().zip(webhook_calls)) {
        run.push("admission", variant, Some(backend), sample.summary());
        // None is selected by a measured namespace: a call here is a bug.
        if let Some(m) = run.measurements.last_mut() {
            m.extra = json!({"webhook_calls": calls});
        }
    }
    Ok(())
}

/// Adds (`on`) or removes the configurations, returning once a create in
/// the probe namespace shows both the webhook and the policy in effect (or
/// neither).
async fn configure(client: &Client, prefix: &str, hook: &Webhook, probe: &str, on: bool) -> Result<(), String> {
    if on {
        for k in 0..CONFIGURED {
            for (resource, body) in configurations(prefix, hook, k) {
                post(client, &format!("{GROUP}/{resource}"), &body).await?;
            }
        }
    } else {
        remove(client, prefix).await?;
    }
    until(client, probe, DENY_WEBHOOK, on).await?;
    until(client, probe, DENY_POLICY, on).await
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
