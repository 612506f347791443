//! Multi-version CRDs: the None conversion strategy, and a conversion webhook
//! served by a real HTTPS server this test starts (verified with caBundle).

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use e2e::Server;
use serde_json::{json, Value};

const GIZMOS_NONE: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gizmos.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gizmos, singular: gizmo, kind: Gizmo}
  versions:
  - name: v1alpha1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}, old: {type: string, default: legacy}}}
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
  - name: v0
    served: false
    storage: false
    schema:
      openAPIV3Schema: {type: object}
"#;

#[test]
fn crd_versions_none_conversion() {
    let s = Server::start();
    s.apply_crd(GIZMOS_NONE, "gizmos.example.com");
    s.kubectl_stdin(
        &["create", "-f", "-"],
        Some("apiVersion: example.com/v1alpha1\nkind: Gizmo\nmetadata: {name: g}\nspec: {size: 3}\n"),
    );
    // Stored as v1; read in either served version with its apiVersion.
    let v1 = s.raw("/apis/example.com/v1/namespaces/default/gizmos/g");
    assert_eq!(v1["apiVersion"], "example.com/v1");
    assert_eq!(v1["spec"], json!({"size": 3}), "v1 has no old field: {v1}");
    let alpha = s.kubectl_json(&["get", "gizmos.v1alpha1.example.com", "g"]);
    assert_eq!(alpha["apiVersion"], "example.com/v1alpha1");
    assert_eq!(alpha["spec"]["old"], "legacy", "defaulted on read: {alpha}");
    // The preferred version is v1 (GA over alpha); v0 is not served.
    let group = s.raw("/apis/example.com");
    assert_eq!(group["preferredVersion"]["version"], "v1", "{group}");
    let versions: Vec<&str> =
        group["versions"].as_array().into_iter().flatten().filter_map(|v| v["version"].as_str()).collect();
    assert_eq!(versions, vec!["v1", "v1alpha1"]);
    let err = s.kubectl_fails(&["get", "--raw", "/apis/example.com/v0/gizmos"], None);
    assert!(err.contains("NotFound") || err.contains("not found"), "{err}");
    // Writes through the older version land in the storage version.
    s.kubectl(&["patch", "gizmos.v1alpha1.example.com", "g", "--type", "merge", "-p", r#"{"spec":{"size":4}}"#]);
    assert_eq!(s.raw("/apis/example.com/v1/namespaces/default/gizmos/g")["spec"]["size"], 4);
    let crd = s.kubectl_json(&["get", "crd", "gizmos.example.com"]);
    assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
}

/// A conversion webhook: v1beta1 has spec.size as a string ("3"), v1 has
/// spec.replicas as an integer.
fn convert(obj: &Value, desired: &str) -> Value {
    let mut out = obj.clone();
    let spec = out.get_mut("spec").and_then(Value::as_object_mut);
    if let Some(spec) = spec {
        if desired.ends_with("/v1") {
            if let Some(size) = spec.remove("size") {
                let n: i64 = size.as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
                spec.insert("replicas".into(), json!(n));
            }
        } else if let Some(r) = spec.remove("replicas") {
            spec.insert("size".into(), json!(r.as_i64().unwrap_or(0).to_string()));
        }
    }
    out["apiVersion"] = json!(desired);
    out
}

struct Webhook {
    port: u16,
    ca_pem: String,
    calls: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

/// The conversion webhook, serving a certificate for `names`.
fn start_webhook(names: &[&str]) -> Webhook {
    use http_body_util::{BodyExt, Full};

    let (acceptor, ca_pem) = e2e::self_signed_acceptor(names);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("binding the webhook port");
    let port = listener.local_addr().expect("an address").port();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    rt.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let counter = counter.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let desired = review["request"]["desiredAPIVersion"].as_str().unwrap_or_default().to_string();
                        let objects = review["request"]["objects"].as_array().cloned().unwrap_or_default();
                        counter.fetch_add(1, Ordering::SeqCst);
                        let converted: Vec<Value> = objects.iter().map(|o| convert(o, &desired)).collect();
                        let resp = json!({
                            "apiVersion": review["apiVersion"],
                            "kind": "ConversionReview",
                            "response": {"uid": review["request"]["uid"], "result": {"status": "Success"}, "convertedObjects": converted},
                        });
                        let bytes = bytes::Bytes::from(resp.to_string());
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(bytes)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Webhook { port, ca_pem, calls, _rt: rt }
}

/// The CRD, its webhook called at `https://localhost:<port>/convert`.
fn webhook_crd(port: u16, ca_pem: &str) -> String {
    webhook_crd_at(&format!("url: https://localhost:{port}/convert"), ca_pem)
}

/// The CRD, its webhook at `client` (a clientConfig's url or service line).
fn webhook_crd_at(client: &str, ca_pem: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: sprockets.example.com}}
spec:
  group: example.com
  scope: Namespaced
  names: {{plural: sprockets, singular: sprocket, kind: Sprocket}}
  conversion:
    strategy: Webhook
    webhook:
      conversionReviewVersions: [v1]
      clientConfig:
        {client}
        caBundle: {ca}
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, properties: {{size: {{type: string}}}}}}
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, properties: {{replicas: {{type: integer}}}}}}
"#
    )
}

#[test]
fn crd_conversion_webhook() {
    let hook = start_webhook(&["localhost"]);
    let s = Server::start();
    s.apply_crd(&webhook_crd(hook.port, &hook.ca_pem), "sprockets.example.com");
    s.kubectl_stdin(
        &["create", "-f", "-"],
        Some("apiVersion: example.com/v1beta1\nkind: Sprocket\nmetadata: {name: s1}\nspec: {size: \"3\"}\n"),
    );
    assert!(hook.calls.load(Ordering::SeqCst) >= 1, "the webhook converted the write to the storage version");
    let v1 = s.raw("/apis/example.com/v1/namespaces/default/sprockets/s1");
    assert_eq!(v1["apiVersion"], "example.com/v1");
    assert_eq!(v1["spec"], json!({"replicas": 3}), "{v1}");
    let beta = s.raw("/apis/example.com/v1beta1/namespaces/default/sprockets/s1");
    assert_eq!(beta["apiVersion"], "example.com/v1beta1");
    assert_eq!(beta["spec"], json!({"size": "3"}), "{beta}");
    assert_eq!(beta["metadata"]["name"], "s1");
    let list = s.kubectl_json(&["get", "sprockets.v1beta1.example.com"]);
    assert_eq!(list["items"][0]["spec"]["size"], "3", "{list}");

    // A CRD whose webhook cannot be verified (wrong CA) fails conversions
    // with an error rather than serving unconverted objects.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("a certificate");
    let broken = webhook_crd(hook.port, &other.cert.pem());
    s.kubectl_stdin(&["apply", "-f", "-"], Some(&broken));
    let mut failed = false;
    for _ in 0..50 {
        let out =
            s.kubectl_output(&["get", "--raw", "/apis/example.com/v1beta1/namespaces/default/sprockets/s1"], None);
        if !out.status.success() {
            failed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(failed, "conversion through an unverifiable webhook must fail");

    // A webhook as the Service `conv` (an ExternalName for localhost here),
    // whose certificate names only conv.default.svc: it is verified as the
    // Service is named, as upstream verifies it.
    let by_service = start_webhook(&["conv.default.svc"]);
    s.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: conv, namespace: default}}\n\
         spec: {{type: ExternalName, externalName: localhost, ports: [{{port: {}}}]}}\n",
        by_service.port
    ));
    let client = format!("service: {{namespace: default, name: conv, port: {}, path: /convert}}", by_service.port);
    s.kubectl_stdin(&["apply", "-f", "-"], Some(&webhook_crd_at(&client, &by_service.ca_pem)));
    let mut beta = Value::Null;
    for _ in 0..50 {
        let out =
            s.kubectl_output(&["get", "--raw", "/apis/example.com/v1beta1/namespaces/default/sprockets/s1"], None);
        if out.status.success() {
            beta = serde_json::from_slice(&out.stdout).expect("JSON");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(beta["spec"], json!({"size": "3"}), "converted through the Service: {beta}");
    assert!(by_service.calls.load(Ordering::SeqCst) >= 1, "the Service's webhook was called");
}

e2e::on_etcd!(crd_versions_none_conversion, crd_conversion_webhook);
