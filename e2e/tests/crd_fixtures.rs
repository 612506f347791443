//! Two real-world CRDs (cert-manager's Certificate, prometheus-operator's
//! ServiceMonitor), written out by hand from their public schemas: they are
//! accepted, established, serve realistic objects, reject invalid ones with
//! field paths, default and explain.

use e2e::Server;

const CERTIFICATES: &str = include_str!("fixtures/cert-manager-certificates-crd.yaml");
const SERVICE_MONITORS: &str = include_str!("fixtures/prometheus-servicemonitors-crd.yaml");

const CERT: &str = r#"
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: example-com}
spec:
  secretName: example-com-tls
  duration: 2160h
  renewBefore: 360h
  commonName: example.com
  dnsNames: [example.com, www.example.com]
  privateKey: {algorithm: ECDSA, size: 256, rotationPolicy: Always}
  usages: [server auth, client auth]
  issuerRef: {name: letsencrypt, kind: ClusterIssuer, group: cert-manager.io}
"#;

const MONITOR: &str = r#"
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: web, labels: {release: prometheus}}
spec:
  selector:
    matchLabels: {app: web}
  namespaceSelector: {matchNames: [default]}
  endpoints:
  - port: metrics
    interval: 30s
    path: /metrics
    targetPort: 8080
    relabelings:
    - sourceLabels: [__meta_kubernetes_pod_name]
      targetLabel: pod
"#;

#[test]
fn crd_real_world_fixtures() {
    let s = Server::start();
    s.kubectl_stdin(&["apply", "-f", "-"], Some(CERTIFICATES));
    s.kubectl_stdin(&["apply", "-f", "-"], Some(SERVICE_MONITORS));
    s.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=10s",
        "crd/certificates.cert-manager.io",
        "crd/servicemonitors.monitoring.coreos.com",
    ]);

    // cert-manager Certificate.
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(CERT));
    assert!(out.contains("certificate.cert-manager.io/example-com created"), "{out}");
    let cert = s.kubectl_json(&["get", "cert", "example-com"]);
    assert_eq!(cert["spec"]["dnsNames"][1], "www.example.com");
    let table = s.kubectl(&["get", "certificates"]);
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "READY", "SECRET", "AGE"], "{table}");
    assert!(table.lines().nth(1).unwrap_or_default().contains("example-com-tls"), "{table}");
    let wide = s.kubectl(&["get", "certificates", "-o", "wide"]);
    assert!(wide.lines().next().unwrap_or_default().contains("ISSUER"), "{wide}");
    assert!(wide.lines().nth(1).unwrap_or_default().contains("letsencrypt"), "{wide}");
    let err = s.kubectl_fails(
        &["apply", "-f", "-"],
        Some(&CERT.replace("algorithm: ECDSA", "algorithm: DSA").replace("name: example-com}", "name: bad}")),
    );
    assert!(
        err.contains(
            r#"spec.privateKey.algorithm: Unsupported value: "DSA": supported values: "RSA", "ECDSA", "Ed25519""#
        ),
        "{err}"
    );
    let err = s.kubectl_fails(
        &["apply", "-f", "-"],
        Some(&CERT.replace("  secretName: example-com-tls\n", "").replace("name: example-com}", "name: bad}")),
    );
    assert!(err.contains("spec.secretName: Required value"), "{err}");
    // Status through the status subresource, shown in the Ready column.
    s.kubectl(&[
        "patch",
        "certificate",
        "example-com",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True","message":"Certificate is up to date and has not expired","lastTransitionTime":"2024-01-01T00:00:00Z"}]}}"#,
    ]);
    let table = s.kubectl(&["get", "certificates"]);
    assert!(table.lines().nth(1).unwrap_or_default().split_whitespace().nth(1) == Some("True"), "{table}");
    let err = s.kubectl_fails(
        &[
            "patch",
            "certificate",
            "example-com",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"notAfter":"tomorrow"}}"#,
        ],
        None,
    );
    assert!(err.contains("status.notAfter: Invalid value: \"tomorrow\""), "{err}");
    let explain = s.kubectl(&["explain", "certificate.spec.issuerRef"]);
    assert!(explain.contains("Reference to the issuer responsible for issuing the certificate."), "{explain}");

    // prometheus-operator ServiceMonitor.
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(MONITOR));
    assert!(out.contains("servicemonitor.monitoring.coreos.com/web created"), "{out}");
    let mon = s.kubectl_json(&["get", "smon", "web"]);
    assert_eq!(mon["spec"]["endpoints"][0]["targetPort"], 8080, "int-or-string kept: {mon}");
    assert_eq!(mon["spec"]["endpoints"][0]["relabelings"][0]["action"], "replace", "defaulted: {mon}");
    let err = s.kubectl_fails(
        &["apply", "-f", "-"],
        Some(&MONITOR.replace("interval: 30s", "interval: 30 seconds").replace("name: web,", "name: bad,")),
    );
    assert!(err.contains("spec.endpoints[0].interval: Invalid value: \"30 seconds\": spec.endpoints[0].interval in body should match"), "{err}");
    let err = s.kubectl_fails(
        &["apply", "-f", "-"],
        Some(&MONITOR.replace("targetPort: 8080", "targetPort: [1]").replace("name: web,", "name: bad,")),
    );
    assert!(err.contains("spec.endpoints[0].targetPort: Invalid value"), "{err}");
    assert_eq!(
        s.kubectl(&["get", "prometheus-operator", "-o", "name"]).trim(),
        "servicemonitor.monitoring.coreos.com/web"
    );
    let explain = s.kubectl(&["explain", "servicemonitors.spec.endpoints.port"]);
    assert!(explain.contains("Name of the Service port which this endpoint refers to."), "{explain}");
    assert_eq!(s.kubectl(&["get", "servicemonitors", "-l", "release=prometheus", "-o", "name"]).lines().count(), 1);
}

e2e::on_etcd!(crd_real_world_fixtures);
