//! The checks against upstream's own expectations (its check_*_test.go
//! cases), and which checks each level and version runs.

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Value};

use crate::api::{Level, LevelVersion, Version};
use crate::evaluator::{evaluate, Outcome};

fn lv(level: Level, version: Version) -> LevelVersion {
    LevelVersion { level, version }
}

const RESTRICTED: LevelVersion = LevelVersion { level: Level::Restricted, version: Version::Latest };
const BASELINE: LevelVersion = LevelVersion { level: Level::Baseline, version: Version::Latest };

fn eval_at(at: LevelVersion, pod: Value) -> Outcome {
    let meta: ObjectMeta = serde_json::from_value(pod.get("metadata").cloned().unwrap_or(json!({}))).unwrap();
    let spec: PodSpec = serde_json::from_value(pod["spec"].clone()).unwrap();
    evaluate(at, &meta, &spec)
}

fn spec(spec: Value) -> Value {
    json!({"spec": spec})
}

fn restricted_pod() -> Value {
    spec(json!({
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "image": "i", "securityContext": {
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
    }))
}

#[test]
fn a_plain_pod_violates_restricted_four_ways_in_upstream_order() {
    let out = eval_at(RESTRICTED, spec(json!({"containers": [{"name": "c", "image": "i"}]})));
    assert_eq!(
        out.details(),
        r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
    );
    assert_eq!(
        out.reasons(),
        "allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"
    );
    assert!(eval_at(BASELINE, spec(json!({"containers": [{"name": "c", "image": "i"}]}))).allowed());
    let privileged = lv(Level::Privileged, Version::Latest);
    assert!(eval_at(privileged, spec(json!({"hostNetwork": true, "containers": [{"name": "c"}]}))).allowed());
}

#[test]
fn a_restricted_pod_passes_restricted() {
    assert_eq!(eval_at(RESTRICTED, restricted_pod()), Outcome::default());
}

#[test]
fn baseline_violations_are_reported_at_restricted_too() {
    let pod = spec(json!({
        "hostNetwork": true, "hostIPC": true, "hostPID": true,
        "containers": [
            {"name": "a", "ports": [{"containerPort": 1, "hostPort": 0}]},
            {"name": "b", "ports": [{"containerPort": 1, "hostPort": 10}, {"containerPort": 2, "hostPort": 20}]},
            {"name": "c", "ports": [{"containerPort": 1, "hostPort": 10}, {"containerPort": 3, "hostPort": 30}],
             "securityContext": {"privileged": true}}
        ]
    }));
    let out = eval_at(BASELINE, pod.clone());
    assert_eq!(
        out.details(),
        r#"host namespaces (hostNetwork=true, hostPID=true, hostIPC=true), hostPort (containers "b", "c" use hostPorts 10, 20, 30), privileged (container "c" must not set securityContext.privileged=true)"#
    );
    assert!(eval_at(RESTRICTED, pod).details().starts_with("host namespaces (hostNetwork=true"));
}

#[test]
fn capabilities_as_upstream() {
    let pod = spec(json!({"containers": [
        {"name": "a", "securityContext": {"capabilities": {"add": ["FOO", "BAR"]}}},
        {"name": "b", "securityContext": {"capabilities": {"add": ["BAR", "BAZ"]}}},
        {"name": "c", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"], "drop": ["ALL", "FOO"]}}}
    ]}));
    let restricted = eval_at(RESTRICTED, pod.clone());
    let caps = restricted.violations.iter().find(|v| v.reason == "unrestricted capabilities").unwrap();
    assert_eq!(
        caps.detail,
        r#"containers "a", "b" must set securityContext.capabilities.drop=["ALL"]; containers "a", "b", "c" must not include "BAR", "BAZ", "CHOWN", "FOO" in securityContext.capabilities.add"#
    );
    // Restricted's check replaces baseline's.
    assert!(restricted.violations.iter().all(|v| v.reason != "non-default capabilities"));
    assert_eq!(
        eval_at(BASELINE, pod).details(),
        r#"non-default capabilities (containers "a", "b" must not include "BAR", "BAZ", "FOO" in securityContext.capabilities.add)"#
    );
}

#[test]
fn volumes_as_upstream() {
    let pod = spec(json!({"containers": [], "volumes": [
        {"name": "a", "hostPath": {"path": "/"}},
        {"name": "b", "hostPath": {"path": "/"}},
        {"name": "c", "emptyDir": {}},
        {"name": "d", "nfs": {"server": "s", "path": "/"}}
    ]}));
    assert_eq!(eval_at(BASELINE, pod.clone()).details(), r#"hostPath volumes (volumes "a", "b")"#);
    assert_eq!(
        eval_at(RESTRICTED, pod).details(),
        r#"restricted volume types (volumes "a", "b", "d" use restricted volume types "hostPath", "nfs")"#
    );
}

#[test]
fn run_as_checks_as_upstream() {
    let pod = spec(json!({
        "securityContext": {"runAsNonRoot": false, "runAsUser": 0, "seccompProfile": {"type": "Unconfined"}},
        "containers": [
            {"name": "a", "securityContext": {"runAsNonRoot": false, "runAsUser": 0,
              "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}},
            {"name": "b", "securityContext": {"seccompProfile": {"type": "Unconfined"},
              "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}
        ]
    }));
    assert_eq!(
        eval_at(RESTRICTED, pod).details(),
        r#"runAsNonRoot != true (pod and container "a" must not set securityContext.runAsNonRoot=false), runAsUser=0 (pod and container "a" must not set runAsUser=0), seccompProfile (pod and container "b" must not set securityContext.seccompProfile.type to "Unconfined")"#
    );
}

#[test]
fn other_baseline_checks_as_upstream() {
    let pod = json!({
        "metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/a": "unconfined"}},
        "spec": {
            "securityContext": {
                "sysctls": [{"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.tcp_rmem", "value": "1"}],
                "seLinuxOptions": {"type": "spc_t", "user": "u"},
                "windowsOptions": {"hostProcess": true}
            },
            "containers": [{"name": "a", "securityContext": {"procMount": "Unmasked",
                "appArmorProfile": {"type": "Unconfined"}}}]
        }
    });
    assert_eq!(
        eval_at(BASELINE, pod.clone()).details(),
        r#"forbidden AppArmor profiles (container "a" and annotation must not set AppArmor profile type to "Unconfined", "container.apparmor.security.beta.kubernetes.io/a="unconfined""), procMount (container "a" must not set securityContext.procMount to "Unmasked"), seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: type "spc_t"; user may not be set), forbidden sysctls (kernel.msgmax), hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)"#
    );
    // net.ipv4.tcp_rmem is allowed from v1.32 only.
    let at_31 = eval_at(lv(Level::Baseline, Version::Minor(31)), pod);
    assert!(at_31.details().contains("forbidden sysctls (kernel.msgmax, net.ipv4.tcp_rmem)"), "{}", at_31.details());
}

#[test]
fn versions_change_what_is_checked() {
    let plain = || spec(json!({"containers": [{"name": "c"}]}));
    // Before v1.8 nothing required allowPrivilegeEscalation; capabilities
    // from v1.22; seccomp fields from v1.19.
    assert_eq!(eval_at(lv(Level::Restricted, Version::Minor(0)), plain()).reasons(), "runAsNonRoot != true");
    assert_eq!(
        eval_at(lv(Level::Restricted, Version::Minor(21)), plain()).reasons(),
        "allowPrivilegeEscalation != false, runAsNonRoot != true, seccompProfile"
    );
    assert_eq!(
        eval_at(lv(Level::Restricted, Version::Minor(22)), plain()).reasons(),
        eval_at(RESTRICTED, plain()).reasons()
    );
    // A future version runs the newest checks.
    assert_eq!(eval_at(lv(Level::Restricted, Version::Minor(99)), plain()), eval_at(RESTRICTED, plain()));
    // Windows pods skip the Linux-only checks from v1.25.
    let windows = || spec(json!({"os": {"name": "windows"}, "containers": [{"name": "c"}]}));
    assert_eq!(eval_at(RESTRICTED, windows()).reasons(), "runAsNonRoot != true");
    assert_eq!(
        eval_at(lv(Level::Restricted, Version::Minor(24)), windows()).reasons(),
        "allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"
    );
    // Before v1.19 restricted checks the seccomp annotations (baseline's,
    // reported first).
    let annotated = json!({
        "metadata": {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}},
        "spec": {"containers": [{"name": "c"}]}
    });
    assert_eq!(
        eval_at(lv(Level::Restricted, Version::Minor(18)), annotated).details(),
        r#"seccompProfile (forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined"), allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true)"#
    );
    // container_engine_t is allowed from v1.31.
    let engine =
        || spec(json!({"securityContext": {"seLinuxOptions": {"type": "container_engine_t"}}, "containers": []}));
    assert!(eval_at(BASELINE, engine()).allowed());
    assert_eq!(eval_at(lv(Level::Baseline, Version::Minor(30)), engine()).reasons(), "seLinuxOptions");
}
