//! PodSecurity admission as kube-apiserver 1.33's: namespace labels choose
//! the level each mode checks pods at; enforce refuses a pod with every
//! violation in upstream's words, warn answers with Warning headers, audit
//! annotates the audit event; pod templates of workloads are warned about,
//! never refused; raising a namespace's enforce level warns about the pods
//! already there; --admission-control-config-file sets the defaults (here
//! enforce=baseline for unlabelled namespaces) and the exemptions.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use e2e::{Cred, Server};
use serde_json::{json, Value};

const ADMISSION_CONFIG: &str = r#"
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  path: pod-security.yaml
"#;

const POD_SECURITY_CONFIG: &str = r#"
apiVersion: pod-security.admission.config.k8s.io/v1
kind: PodSecurityConfiguration
defaults:
  enforce: baseline
exemptions:
  namespaces: [psa-exempt]
  usernames: [psa-admin]
  runtimeClasses: [psa-kata]
"#;

const AUDIT_POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
  namespaces: ["psa-audit"]
  resources: [{group: "", resources: ["pods"]}]
"#;

/// Every violation a pod with one bare container has at restricted:latest.
const PLAIN_RESTRICTED: &str = r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#;

const PLAIN_REASONS: &str =
    "allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile";

struct Shared {
    server: Server,
    audit_log: PathBuf,
    _dir: tempfile::TempDir,
}

fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        let dir = e2e::scratch_dir();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.to_str().unwrap().to_string()
        };
        let config = write("admission.yaml", ADMISSION_CONFIG);
        write("pod-security.yaml", POD_SECURITY_CONFIG);
        let policy = write("audit-policy.yaml", AUDIT_POLICY);
        let audit_log = dir.path().join("audit.log");
        let server = Server::start_with(&[
            "--admission-control-config-file",
            &config,
            "--audit-policy-file",
            &policy,
            "--audit-log-path",
            audit_log.to_str().unwrap(),
        ]);
        Shared { server, audit_log, _dir: dir }
    })
}

fn namespace(s: &Server, name: &str, labels: &[(&str, &str)]) {
    let labels: serde_json::Map<String, Value> =
        labels.iter().map(|(k, v)| (format!("pod-security.kubernetes.io/{k}"), json!(v))).collect();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
    let r = s.request("POST", "/api/v1/namespaces", Some(&ns));
    assert_eq!(r.status, 201, "{}", r.text());
}

fn plain_pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
}

fn restricted_pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "c", "image": "nginx", "securityContext": {
                        "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}})
}

fn host_network_pod(name: &str) -> Value {
    let mut p = plain_pod(name);
    p["spec"]["hostNetwork"] = json!(true);
    p
}

fn post_pod(s: &Server, ns: &str, pod: &Value) -> e2e::HttpResponse {
    s.request("POST", &format!("/api/v1/namespaces/{ns}/pods"), Some(pod))
}

/// The Warning headers' texts (upstream's `299 - "text"`, quotes escaped).
fn warnings(r: &e2e::HttpResponse) -> Vec<String> {
    r.header("Warning")
        .iter()
        .map(|w| {
            let text = w.strip_prefix("299 - \"").and_then(|t| t.strip_suffix('"'));
            text.unwrap_or_else(|| panic!("not a 299 warning: {w}")).replace("\\\"", "\"").replace("\\\\", "\\")
        })
        .collect()
}

/// Asserts a create succeeded with no warning.
#[track_caller]
fn created_silently(r: &e2e::HttpResponse) {
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.header("Warning").is_empty(), "{}", r.headers);
}

#[test]
fn restricted_enforce_refuses_a_pod_with_every_violation() {
    let s = &shared().server;
    namespace(s, "psa-restricted", &[("enforce", "restricted")]);
    let r = post_pod(s, "psa-restricted", &plain_pod("bad"));
    let status = r.assert_status(403, "Forbidden");
    assert_eq!(
        status["message"],
        format!(r#"pods "bad" is forbidden: violates PodSecurity "restricted:latest": {PLAIN_RESTRICTED}"#)
    );
    assert_eq!(status["details"], json!({"name": "bad", "kind": "pods"}));
    // A refused pod gets no warning on top.
    assert!(r.header("Warning").is_empty(), "{}", r.headers);
    let missing = s.request("GET", "/api/v1/namespaces/psa-restricted/pods/bad", None);
    missing.assert_status(404, "NotFound");

    // kubectl prints the same message.
    let yaml = serde_json::to_string(&plain_pod("bad")).unwrap();
    s.kubectl_err(
        &["create", "-n", "psa-restricted", "-f", "-"],
        Some(&yaml),
        &[&format!(
            r#"Error from server (Forbidden): error when creating "STDIN": pods "bad" is forbidden: violates PodSecurity "restricted:latest": {PLAIN_RESTRICTED}"#
        )],
    );

    let ok = post_pod(s, "psa-restricted", &restricted_pod("good"));
    created_silently(&ok);

    // A versioned level checks what that version checked: v1.21 knew
    // nothing of capabilities.
    namespace(s, "psa-v121", &[("enforce", "restricted"), ("enforce-version", "v1.21")]);
    let old = post_pod(s, "psa-v121", &plain_pod("bad")).assert_status(403, "Forbidden");
    assert_eq!(
        old["message"],
        r#"pods "bad" is forbidden: violates PodSecurity "restricted:v1.21": allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
    );
}

#[test]
fn baseline_allows_what_baseline_allows() {
    let s = &shared().server;
    namespace(s, "psa-baseline", &[("enforce", "baseline")]);
    let plain = post_pod(s, "psa-baseline", &plain_pod("plain"));
    created_silently(&plain);
    let mut caps = plain_pod("caps");
    caps["spec"]["containers"][0]["securityContext"] = json!({"capabilities": {"add": ["CHOWN", "NET_BIND_SERVICE"]}});
    assert_eq!(post_pod(s, "psa-baseline", &caps).status, 201);

    let host = post_pod(s, "psa-baseline", &host_network_pod("host")).assert_status(403, "Forbidden");
    assert_eq!(
        host["message"],
        r#"pods "host" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true)"#
    );
    let mut privileged = plain_pod("priv");
    privileged["spec"]["containers"][0]["securityContext"] =
        json!({"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}});
    let refused = post_pod(s, "psa-baseline", &privileged).assert_status(403, "Forbidden");
    assert_eq!(
        refused["message"],
        r#"pods "priv" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add), privileged (container "c" must not set securityContext.privileged=true)"#
    );
}

#[test]
fn warn_mode_answers_with_warning_headers() {
    let s = &shared().server;
    namespace(s, "psa-warn", &[("warn", "restricted")]);
    let r = post_pod(s, "psa-warn", &plain_pod("p"));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(warnings(&r), [format!(r#"would violate PodSecurity "restricted:latest": {PLAIN_RESTRICTED}"#)]);

    let yaml = serde_json::to_string(&plain_pod("q")).unwrap();
    let run = s.run(&["create", "-n", "psa-warn", "-f", "-"], Some(&yaml));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "pod/q created\n");
    assert_eq!(run.stderr, format!("Warning: would violate PodSecurity \"restricted:latest\": {PLAIN_RESTRICTED}\n"));

    // The enforce default (baseline, from the configuration) still refuses.
    post_pod(s, "psa-warn", &host_network_pod("host")).assert_status(403, "Forbidden");
}

#[test]
fn workloads_in_an_enforcing_namespace_are_created_with_a_warning() {
    let s = &shared().server;
    namespace(s, "psa-workloads", &[("enforce", "restricted")]);
    let run = s.run(&["create", "deployment", "web", "-n", "psa-workloads", "--image=nginx"], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "deployment.apps/web created\n");
    // Warn follows an enforce label when warn has none; the container is
    // named after the image.
    let expected = PLAIN_RESTRICTED.replace(r#"container "c""#, r#"container "nginx""#);
    assert_eq!(run.stderr, format!("Warning: would violate PodSecurity \"restricted:latest\": {expected}\n"));
    s.kubectl(&["get", "deployment", "web", "-n", "psa-workloads"]);

    let run =
        s.run(&["create", "cronjob", "tick", "-n", "psa-workloads", "--image=busybox", "--schedule=* * * * *"], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.starts_with("Warning: would violate PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"tick\""), "{}", run.stderr);

    // Templates that pass raise no warning.
    let mut ok = restricted_pod("x");
    ok["metadata"] = json!({"labels": {"app": "ok"}});
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ok"},
        "spec": {"selector": {"matchLabels": {"app": "ok"}}, "template": {"metadata": ok["metadata"], "spec": ok["spec"]}}});
    let r = s.request("POST", "/apis/apps/v1/namespaces/psa-workloads/deployments", Some(&deploy));
    created_silently(&r);
}

#[test]
fn raising_the_enforce_level_warns_about_existing_pods() {
    let s = &shared().server;
    namespace(s, "psa-relabel", &[]);
    for pod in [plain_pod("web-b"), plain_pod("web-a"), restricted_pod("fine")] {
        assert_eq!(post_pod(s, "psa-relabel", &pod).status, 201);
    }
    let mut host = host_network_pod("host");
    host["spec"]["hostNetwork"] = json!(false);
    host["spec"]["hostPID"] = json!(true);
    // hostPID is refused by the default (baseline) enforce level.
    post_pod(s, "psa-relabel", &host).assert_status(403, "Forbidden");

    let run =
        s.run(&["label", "ns", "psa-relabel", "--overwrite", "pod-security.kubernetes.io/enforce=restricted"], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "namespace/psa-relabel labeled\n");
    assert_eq!(
        run.stderr,
        format!(
            "Warning: existing pods in namespace \"psa-relabel\" violate the new PodSecurity enforce level \"restricted:latest\"\n\
             Warning: web-a (and 1 other pod): {PLAIN_REASONS}\n"
        )
    );
    // Loosening (or keeping) the level warns about nothing.
    let run =
        s.run(&["label", "ns", "psa-relabel", "--overwrite", "pod-security.kubernetes.io/enforce=baseline"], None);
    assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{run:?}");

    // A label that does not parse is refused (422) with upstream's field path.
    s.kubectl_err(
        &["label", "ns", "psa-relabel", "--overwrite", "pod-security.kubernetes.io/enforce=strict"],
        None,
        &[r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#],
    );
    let bad = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "psa-badlabel",
        "labels": {"pod-security.kubernetes.io/warn-version": "1.25"}}});
    let refused = s.request("POST", "/api/v1/namespaces", Some(&bad)).assert_status(422, "Invalid");
    assert_eq!(
        refused["message"],
        r#"Namespace "psa-badlabel" is invalid: metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "1.25": must be "latest" or "v1.x""#
    );
}

#[test]
fn configured_exemptions_are_honoured() {
    let s = &shared().server;
    // An exempt namespace: anything goes, and relabelling it says so.
    namespace(s, "psa-exempt", &[]);
    let run = s.run(&["label", "ns", "psa-exempt", "pod-security.kubernetes.io/enforce=restricted"], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stderr,
        "Warning: namespace \"psa-exempt\" is exempt from Pod Security, and the policy (enforce=restricted:latest) will be ignored\n"
    );
    let r = post_pod(s, "psa-exempt", &host_network_pod("host"));
    created_silently(&r);

    // An exempt user, elsewhere.
    namespace(s, "psa-users", &[("enforce", "restricted")]);
    let yaml = serde_json::to_string(&plain_pod("by-admin")).unwrap();
    let as_exempt = ["--as=psa-admin", "--as-group=system:masters", "create", "-n", "psa-users", "-f", "-"];
    let run = s.run(&as_exempt, Some(&yaml));
    assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{run:?}");
    let as_other = ["--as=someone", "--as-group=system:masters", "create", "-n", "psa-users", "-f", "-"];
    s.kubectl_err(&as_other, Some(&yaml), &[r#"violates PodSecurity "restricted:latest""#]);

    // An exempt runtime class.
    s.apply("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: psa-kata\nhandler: kata\n");
    let mut pod = plain_pod("kata");
    pod["spec"]["runtimeClassName"] = json!("psa-kata");
    let r = post_pod(s, "psa-users", &pod);
    assert_eq!(r.status, 201, "{}", r.text());

    // The configured default: an unlabelled namespace enforces baseline.
    namespace(s, "psa-default", &[]);
    let refused = post_pod(s, "psa-default", &host_network_pod("host")).assert_status(403, "Forbidden");
    assert_eq!(
        refused["message"],
        r#"pods "host" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true)"#
    );
}

/// The value of one series in /metrics (0 when it is not there yet).
fn series(s: &Server, line: &str) -> u64 {
    let metrics = s.curl("GET", "/metrics", e2e::Cred::Admin, &[], None).text();
    metrics.lines().find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0)
}

#[test]
fn evaluations_exemptions_and_errors_are_counted() {
    let s = &shared().server;
    // Label sets no other test produces, so the counts are exact.
    let denied_future = r#"pod_security_evaluations_total{decision="deny",mode="enforce",policy_level="restricted",policy_version="future",request_operation="create",resource="pod",subresource=""}"#;
    let allowed_v121 = r#"pod_security_evaluations_total{decision="allow",mode="enforce",policy_level="baseline",policy_version="v1.21",request_operation="create",resource="pod",subresource=""}"#;
    let warned_controller = r#"pod_security_evaluations_total{decision="deny",mode="warn",policy_level="restricted",policy_version="v1.30",request_operation="create",resource="controller",subresource=""}"#;
    let exempt = r#"pod_security_exemptions_total{request_operation="create",resource="pod",subresource=""}"#;
    let before = [denied_future, allowed_v121, warned_controller, exempt].map(|l| series(s, l));

    namespace(s, "psa-m-future", &[("enforce", "restricted"), ("enforce-version", "v1.40")]);
    post_pod(s, "psa-m-future", &plain_pod("bad")).assert_status(403, "Forbidden");
    namespace(s, "psa-m-v121", &[("enforce", "baseline"), ("enforce-version", "v1.21")]);
    assert_eq!(post_pod(s, "psa-m-v121", &plain_pod("ok")).status, 201);
    namespace(s, "psa-m-warn", &[("warn", "restricted"), ("warn-version", "v1.30")]);
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}},
                 "template": {"metadata": {"labels": {"app": "d"}}, "spec": plain_pod("x")["spec"]}}});
    let r = s.request("POST", "/apis/apps/v1/namespaces/psa-m-warn/deployments", Some(&deployment));
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(!warnings(&r).is_empty(), "{}", r.headers);
    // The configured exempt user.
    let yaml = serde_json::to_string(&host_network_pod("counted")).unwrap();
    let run =
        s.run(&["--as=psa-admin", "--as-group=system:masters", "create", "-n", "psa-m-v121", "-f", "-"], Some(&yaml));
    assert_eq!(run.code, 0, "{run:?}");

    let after = [denied_future, allowed_v121, warned_controller, exempt].map(|l| series(s, l));
    assert_eq!(after[0] - before[0], 1, "{denied_future}");
    assert_eq!(after[1] - before[1], 1, "{allowed_v121}");
    assert_eq!(after[2] - before[2], 1, "{warned_controller}");
    assert!(after[3] > before[3], "{exempt}");
}

/// The audit event of the request with this ID, once written.
fn audit_event(log: &std::path::Path, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["auditID"] == id && e["stage"] == "ResponseComplete");
        if let Some(e) = found {
            return e;
        }
        assert!(Instant::now() < deadline, "no audit event for {id}:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn audit_mode_annotates_the_audit_event() {
    let sh = shared();
    let s = &sh.server;
    namespace(s, "psa-audit", &[("audit", "restricted")]);
    let body = serde_json::to_vec(&plain_pod("p")).unwrap();
    let id = "4b0e4f5e-psa-audit-allowed";
    let headers = [("Content-Type", "application/json"), ("Audit-ID", id)];
    let r = s.curl("POST", "/api/v1/namespaces/psa-audit/pods", Cred::Admin, &headers, Some(&body));
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.header("Warning").is_empty(), "audit mode does not warn: {}", r.headers);
    let e = audit_event(&sh.audit_log, id);
    assert_eq!(e["annotations"]["pod-security.kubernetes.io/enforce-policy"], "baseline:latest", "{e}");
    assert_eq!(
        e["annotations"]["pod-security.kubernetes.io/audit-violations"],
        format!(r#"would violate PodSecurity "restricted:latest": {PLAIN_RESTRICTED}"#),
        "{e}"
    );

    let body = serde_json::to_vec(&host_network_pod("host")).unwrap();
    let id = "4b0e4f5e-psa-audit-refused";
    let headers = [("Content-Type", "application/json"), ("Audit-ID", id)];
    let r = s.curl("POST", "/api/v1/namespaces/psa-audit/pods", Cred::Admin, &headers, Some(&body));
    assert_eq!(r.status, 403, "{}", r.text());
    let e = audit_event(&sh.audit_log, id);
    assert_eq!(e["annotations"]["pod-security.kubernetes.io/enforce-policy"], "baseline:latest", "{e}");
    assert!(
        e["annotations"]["pod-security.kubernetes.io/audit-violations"]
            .as_str()
            .is_some_and(|v| v
                .starts_with(r#"would violate PodSecurity "restricted:latest": host namespaces (hostNetwork=true), "#)),
        "{e}"
    );
}

#[test]
fn a_bad_configuration_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("admission.yaml");
    std::fs::write(
        &config,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: PodSecurity\n  configuration:\n    apiVersion: pod-security.admission.config.k8s.io/v1\n    kind: PodSecurityConfiguration\n    defaults:\n      enforce: strict\n",
    )
    .unwrap();
    let err = e2e::start_refused(&["--admission-control-config-file", config.to_str().unwrap()]);
    assert!(
        err.contains(r#"PodSecurity invalid: defaults.enforce: Invalid value: "strict": must be one of privileged, baseline, restricted"#),
        "{err}"
    );
    let err = e2e::start_refused(&["--admission-control-config-file", "/nonexistent/admission.yaml"]);
    assert!(
        err.contains(r#"unable to read admission control configuration from "/nonexistent/admission.yaml""#),
        "{err}"
    );
}
