//! The Pod Security Standards checks (upstream's pod-security-admission/policy
//! check_*.go), each a function of the pod's metadata and spec, with the
//! versions of the standards it applies to. Reasons and details are
//! upstream's words: clients and tests compare them.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ContainerPort, PodSpec, SecurityContext, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::Level;

/// Why a pod fails one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub reason: &'static str,
    pub detail: String,
}

pub type CheckFn = fn(&ObjectMeta, &PodSpec) -> Option<Violation>;

/// One check: its level, the implementation from each minor version on, and
/// (restricted checks only) the baseline checks it replaces.
pub struct Check {
    pub id: &'static str,
    pub level: Level,
    /// (first minor version, implementation), in increasing order.
    pub versions: &'static [(u32, CheckFn)],
    pub overrides: &'static [&'static str],
}

/// Every check, baseline then restricted, each sorted by id: the order
/// upstream reports violations in.
pub static CHECKS: &[Check] = &[
    baseline("appArmorProfile", &[(0, app_armor_profile)]),
    baseline("capabilities_baseline", &[(0, capabilities_baseline)]),
    baseline("hostNamespaces", &[(0, host_namespaces)]),
    baseline("hostPathVolumes", &[(0, host_path_volumes)]),
    baseline("hostPorts", &[(0, host_ports)]),
    baseline("privileged", &[(0, privileged)]),
    baseline("procMount", &[(0, proc_mount)]),
    baseline("seLinuxOptions", &[(0, se_linux_options_1_0), (31, se_linux_options_1_31)]),
    baseline("seccompProfile_baseline", &[(0, seccomp_annotations), (19, seccomp_baseline)]),
    baseline("sysctls", &[(0, sysctls_1_0), (27, sysctls_1_27), (29, sysctls_1_29), (32, sysctls_1_32)]),
    baseline("windowsHostProcess", &[(0, windows_host_process)]),
    restricted("allowPrivilegeEscalation", &[(8, allow_privilege_escalation), (25, unless_windows::<0>)], &[]),
    restricted(
        "capabilities_restricted",
        &[(22, capabilities_restricted), (25, unless_windows::<1>)],
        &["capabilities_baseline"],
    ),
    restricted("restrictedVolumes", &[(0, restricted_volumes)], &["hostPathVolumes"]),
    restricted("runAsNonRoot", &[(0, run_as_non_root)], &[]),
    restricted("runAsUser", &[(23, run_as_user)], &[]),
    restricted(
        "seccompProfile_restricted",
        &[(19, seccomp_restricted), (25, unless_windows::<2>)],
        &["seccompProfile_baseline"],
    ),
];

const fn baseline(id: &'static str, versions: &'static [(u32, CheckFn)]) -> Check {
    Check { id, level: Level::Baseline, versions, overrides: &[] }
}

const fn restricted(
    id: &'static str,
    versions: &'static [(u32, CheckFn)],
    overrides: &'static [&'static str],
) -> Check {
    Check { id, level: Level::Restricted, versions, overrides }
}

/// From 1.25 the Linux-only restricted checks pass Windows pods (N picks the
/// check, so that each stays a plain fn pointer).
fn unless_windows<const N: u8>(meta: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    if spec.os.as_ref().is_some_and(|os| os.name == "windows") {
        return None;
    }
    match N {
        0 => allow_privilege_escalation(meta, spec),
        1 => capabilities_restricted(meta, spec),
        _ => seccomp_restricted(meta, spec),
    }
}

/// A container of any kind, as the checks see it.
struct Ctr<'a> {
    name: &'a str,
    sc: Option<&'a SecurityContext>,
    ports: &'a [ContainerPort],
}

/// Init containers, containers, then ephemeral containers (upstream's visitor).
fn containers(spec: &PodSpec) -> Vec<Ctr<'_>> {
    let regular = spec.init_containers.iter().flatten().chain(&spec.containers).map(|c| Ctr {
        name: &c.name,
        sc: c.security_context.as_ref(),
        ports: c.ports.as_deref().unwrap_or_default(),
    });
    let ephemeral = spec.ephemeral_containers.iter().flatten().map(|c| Ctr {
        name: &c.name,
        sc: c.security_context.as_ref(),
        ports: c.ports.as_deref().unwrap_or_default(),
    });
    regular.chain(ephemeral).collect()
}

/// Names of the containers `bad` picks.
fn names_where(spec: &PodSpec, bad: impl Fn(&Ctr) -> bool) -> Vec<String> {
    containers(spec).iter().filter(|c| bad(c)).map(|c| c.name.to_string()).collect()
}

/// `"a", "b"` (upstream's joinQuote: no escaping).
fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let inner: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("\"{}\"", inner.join("\", \""))
}

fn pluralize(singular: &'static str, plural: &'static str, n: usize) -> &'static str {
    if n == 1 {
        singular
    } else {
        plural
    }
}

/// `container "a"` / `containers "a", "b"`.
fn containers_phrase(names: &[String]) -> String {
    format!("{} {}", pluralize("container", "containers", names.len()), join_quote(names))
}

fn sorted(set: BTreeSet<String>) -> Vec<String> {
    set.into_iter().collect()
}

fn violation(reason: &'static str, detail: String) -> Option<Violation> {
    Some(Violation { reason, detail })
}

/// "pod and containers ..." setters, `pod_bad` first.
fn setters(pod_bad: bool, containers: &[String]) -> Vec<String> {
    let mut s = Vec::new();
    if pod_bad {
        s.push("pod".to_string());
    }
    if !containers.is_empty() {
        s.push(containers_phrase(containers));
    }
    s
}

const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

fn app_armor_profile(meta: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    let allowed = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    let mut bad_values = BTreeSet::new();
    let mut pod_bad = false;
    if let Some(p) = spec.security_context.as_ref().and_then(|sc| sc.app_armor_profile.as_ref()) {
        if !allowed(&p.type_) {
            pod_bad = true;
            bad_values.insert(p.type_.clone());
        }
    }
    let mut bad_containers = Vec::new();
    for c in containers(spec) {
        if let Some(p) = c.sc.and_then(|sc| sc.app_armor_profile.as_ref()) {
            if !allowed(&p.type_) {
                bad_containers.push(c.name.to_string());
                bad_values.insert(p.type_.clone());
            }
        }
    }
    let mut bad_setters = setters(pod_bad, &bad_containers);
    let mut forbidden_annotations: Vec<String> = meta
        .annotations
        .iter()
        .flatten()
        .filter(|(k, v)| {
            k.starts_with(APPARMOR_ANNOTATION_PREFIX)
                && !(v.is_empty() || *v == "runtime/default" || v.starts_with("localhost/"))
        })
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    let mut values = sorted(bad_values);
    if !forbidden_annotations.is_empty() {
        forbidden_annotations.sort();
        bad_setters.push(pluralize("annotation", "annotations", forbidden_annotations.len()).to_string());
        values.extend(forbidden_annotations);
    }
    if bad_setters.is_empty() {
        return None;
    }
    violation(
        pluralize("forbidden AppArmor profile", "forbidden AppArmor profiles", values.len()),
        format!("{} must not set AppArmor profile type to {}", bad_setters.join(" and "), join_quote(&values)),
    )
}

const CAPABILITIES_ALLOWED_BASELINE: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added_capabilities<'a>(c: &Ctr<'a>) -> &'a [String] {
    c.sc.and_then(|sc| sc.capabilities.as_ref()).and_then(|caps| caps.add.as_deref()).unwrap_or_default()
}

fn capabilities_baseline(_: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    let mut bad_containers = Vec::new();
    let mut forbidden = BTreeSet::new();
    for c in containers(spec) {
        let extra: Vec<&String> = added_capabilities(&c)
            .iter()
            .filter(|cap| !CAPABILITIES_ALLOWED_BASELINE.contains(&cap.as_str()))
            .collect();
        if !extra.is_empty() {
            bad_containers.push(c.name.to_string());
            forbidden.extend(extra.into_iter().cloned());
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad_containers),
            join_quote(&sorted(forbidden))
        ),
    )
}

fn capabilities_restricted(_: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    let mut missing_drop_all = Vec::new();
    let mut adding = Vec::new();
    let mut forbidden = BTreeSet::new();
    for c in containers(spec) {
        let Some(caps) = c.sc.and_then(|sc| sc.capabilities.as_ref()) else {
            missing_drop_all.push(c.name.to_string());
            continue;
        };
        if !caps.drop.iter().flatten().any(|d| d == "ALL") {
            missing_drop_all.push(c.name.to_string());
        }
        let extra: Vec<&String> = caps.add.iter().flatten().filter(|a| *a != "NET_BIND_SERVICE").collect();
        if !extra.is_empty() {
            adding.push(c.name.to_string());
            forbidden.extend(extra.into_iter().cloned());
        }
    }
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            r#"{} must set securityContext.capabilities.drop=["ALL"]"#,
            containers_phrase(&missing_drop_all)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(&sorted(forbidden))
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

fn host_namespaces(_: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    let set =
        [(spec.host_network, "hostNetwork=true"), (spec.host_pid, "hostPID=true"), (spec.host_ipc, "hostIPC=true")];
    let on: Vec<&str> = set.iter().filter(|(v, _)| *v == Some(true)).map(|(_, s)| *s).collect();
    if on.is_empty() {
        return None;
    }
    violation("host namespaces", on.join(", "))
}

fn volumes(spec: &PodSpec) -> &[Volume] {
    spec.volumes.as_deref().unwrap_or_default()
}

fn host_path_volumes(_: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    let names: Vec<&str> = volumes(spec).iter().filter(|v| v.host_path.is_some()).map(|v| v.name.as_str()).collect();
    if names.is_empty() {
        return None;
    }
    violation("hostPath volumes", format!("{} {}", pluralize("volume", "volumes", names.len()), join_quote(&names)))
}

fn host_ports(_: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    let mut bad_containers = Vec::new();
    let mut ports = BTreeSet::new();
    for c in containers(spec) {
        let used: Vec<String> =
            c.ports.iter().filter_map(|p| p.host_port).filter(|p| *p != 0).map(|p| p.to_string()).collect();
        if !used.is_empty() {
            bad_containers.push(c.name.to_string());
            ports.extend(used);
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad_containers),
            pluralize("uses", "use", bad_containers.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            // Sorted as strings, as upstream's string set.
            sorted(ports).join(", ")
        ),
    )
}

fn privileged(_: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    let bad = names_where(spec, |c| c.sc.and_then(|sc| sc.privileged) == Some(true));
    if bad.is_empty() {
        return None;
    }
    violation("privileged", format!("{} must not set securityContext.privileged=true", containers_phrase(&bad)))
}

fn proc_mount(_: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for c in containers(spec) {
        if let Some(pm) = c.sc.and_then(|sc| sc.proc_mount.as_ref()) {
            if pm != "Default" {
                bad.push(c.name.to_string());
                types.insert(pm.clone());
            }
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "procMount",
        format!("{} must not set securityContext.procMount to {}", containers_phrase(&bad), join_quote(&sorted(types))),
    )
}

fn restricted_volumes(_: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for v in volumes(spec) {
        let allowed = v.config_map.is_some()
            || v.csi.is_some()
            || v.downward_api.is_some()
            || v.empty_dir.is_some()
            || v.ephemeral.is_some()
            || v.image.is_some()
            || v.persistent_volume_claim.is_some()
            || v.projected.is_some()
            || v.secret.is_some();
        if allowed {
            continue;
        }
        bad.push(v.name.clone());
        types.insert(restricted_volume_type(v));
    }
    if bad.is_empty() {
        return None;
    }
    let types = sorted(types.into_iter().map(str::to_string).collect());
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("restricted volume type", "restricted volume types", types.len()),
            join_quote(&types)
        ),
    )
}

fn restricted_volume_type(v: &Volume) -> &'static str {
    let kinds = [
        (v.host_path.is_some(), "hostPath"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.nfs.is_some(), "nfs"),
        (v.iscsi.is_some(), "iscsi"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.rbd.is_some(), "rbd"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.cinder.is_some(), "cinder"),
        (v.cephfs.is_some(), "cephfs"),
        (v.flocker.is_some(), "flocker"),
        (v.fc.is_some(), "fc"),
        (v.azure_file.is_some(), "azureFile"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
        (v.quobyte.is_some(), "quobyte"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.storageos.is_some(), "storageos"),
    ];
    kinds.iter().find(|(set, _)| *set).map(|(_, k)| *k).unwrap_or("unknown")
}

fn run_as_non_root(_: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    let pod = spec.security_context.as_ref().and_then(|sc| sc.run_as_non_root);
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match c.sc.and_then(|sc| sc.run_as_non_root) {
            Some(false) => explicit.push(c.name.to_string()),
            Some(true) => {}
            None if pod != Some(true) => implicit.push(c.name.to_string()),
            None => {}
        }
    }
    let bad_setters = setters(pod == Some(false), &explicit);
    if !bad_setters.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!("{} must not set securityContext.runAsNonRoot=false", bad_setters.join(" and ")),
        );
    }
    if !implicit.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!("pod or {} must set securityContext.runAsNonRoot=true", containers_phrase(&implicit)),
        );
    }
    None
}

fn run_as_user(_: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    let pod_bad = spec.security_context.as_ref().and_then(|sc| sc.run_as_user) == Some(0);
    let bad = names_where(spec, |c| c.sc.and_then(|sc| sc.run_as_user) == Some(0));
    let bad_setters = setters(pod_bad, &bad);
    if bad_setters.is_empty() {
        return None;
    }
    violation("runAsUser=0", format!("{} must not set runAsUser=0", bad_setters.join(" and ")))
}

const SELINUX_TYPES_1_0: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t"];
const SELINUX_TYPES_1_31: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"];

fn se_linux_options_1_0(meta: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    se_linux_options(meta, spec, SELINUX_TYPES_1_0)
}

fn se_linux_options_1_31(meta: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    se_linux_options(meta, spec, SELINUX_TYPES_1_31)
}

fn se_linux_options(_: &ObjectMeta, spec: &PodSpec, allowed: &[&str]) -> Option<Violation> {
    let mut bad_types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut valid = |o: &k8s_openapi::api::core::v1::SELinuxOptions| {
        let t = o.type_.as_deref().unwrap_or_default();
        let mut ok = true;
        if !allowed.contains(&t) {
            ok = false;
            bad_types.insert(t.to_string());
        }
        if o.user.as_deref().is_some_and(|u| !u.is_empty()) {
            ok = false;
            set_user = true;
        }
        if o.role.as_deref().is_some_and(|r| !r.is_empty()) {
            ok = false;
            set_role = true;
        }
        ok
    };
    let pod_bad = spec.security_context.as_ref().and_then(|sc| sc.se_linux_options.as_ref()).is_some_and(|o| !valid(o));
    let mut bad = Vec::new();
    for c in containers(spec) {
        if let Some(o) = c.sc.and_then(|sc| sc.se_linux_options.as_ref()) {
            if !valid(o) {
                bad.push(c.name.to_string());
            }
        }
    }
    let bad_setters = setters(pod_bad, &bad);
    if bad_setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        let types = sorted(bad_types);
        data.push(format!("{} {}", pluralize("type", "types", types.len()), join_quote(&types)));
    }
    if set_user {
        data.push("user may not be set".to_string());
    }
    if set_role {
        data.push("role may not be set".to_string());
    }
    violation(
        "seLinuxOptions",
        format!("{} set forbidden securityContext.seLinuxOptions: {}", bad_setters.join(" and "), data.join("; ")),
    )
}

const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

fn valid_seccomp(t: &str) -> bool {
    t == "Localhost" || t == "RuntimeDefault"
}

/// Before 1.19 the profile was set by annotations.
fn seccomp_annotations(meta: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    let annotations = meta.annotations.as_ref();
    let valid = |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let mut forbidden = BTreeSet::new();
    let mut check = |key: String| {
        if let Some(v) = annotations.and_then(|a| a.get(&key)) {
            if !valid(v) {
                forbidden.insert(format!("{key}={v:?}"));
            }
        }
    };
    check(SECCOMP_POD_ANNOTATION.to_string());
    for c in containers(spec) {
        check(format!("{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{}", c.name));
    }
    if forbidden.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", forbidden.len()),
            sorted(forbidden).join(", ")
        ),
    )
}

/// The explicitly bad seccomp setters: whether the pod sets a bad type, and
/// the containers that do, with the bad types.
struct SeccompFindings {
    pod_bad: bool,
    pod_set: bool,
    explicit: Vec<String>,
    implicit: Vec<String>,
    values: BTreeSet<String>,
}

fn seccomp_findings(spec: &PodSpec) -> SeccompFindings {
    let mut f =
        SeccompFindings { pod_bad: false, pod_set: false, explicit: vec![], implicit: vec![], values: BTreeSet::new() };
    if let Some(p) = spec.security_context.as_ref().and_then(|sc| sc.seccomp_profile.as_ref()) {
        if valid_seccomp(&p.type_) {
            f.pod_set = true;
        } else {
            f.pod_bad = true;
            f.values.insert(p.type_.clone());
        }
    }
    for c in containers(spec) {
        match c.sc.and_then(|sc| sc.seccomp_profile.as_ref()) {
            Some(p) if !valid_seccomp(&p.type_) => {
                f.explicit.push(c.name.to_string());
                f.values.insert(p.type_.clone());
            }
            Some(_) => {}
            None if !f.pod_set => f.implicit.push(c.name.to_string()),
            None => {}
        }
    }
    f
}

fn seccomp_explicit_violation(f: &SeccompFindings) -> Option<Violation> {
    let bad_setters = setters(f.pod_bad, &f.explicit);
    if bad_setters.is_empty() {
        return None;
    }
    let values: Vec<&String> = f.values.iter().collect();
    violation(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            bad_setters.join(" and "),
            join_quote(&values)
        ),
    )
}

fn seccomp_baseline(_: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    seccomp_explicit_violation(&seccomp_findings(spec))
}

fn seccomp_restricted(_: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    let f = seccomp_findings(spec);
    if let Some(v) = seccomp_explicit_violation(&f) {
        return Some(v);
    }
    if f.implicit.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            r#"pod or {} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
            containers_phrase(&f.implicit)
        ),
    )
}

const SYSCTLS_1_0: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];
const SYSCTLS_1_27: &[&str] = &["net.ipv4.ip_local_reserved_ports"];
const SYSCTLS_1_29: &[&str] = &[
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const SYSCTLS_1_32: &[&str] = &["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"];

fn sysctls_1_0(meta: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    sysctls(meta, spec, &[SYSCTLS_1_0])
}

fn sysctls_1_27(meta: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    sysctls(meta, spec, &[SYSCTLS_1_0, SYSCTLS_1_27])
}

fn sysctls_1_29(meta: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    sysctls(meta, spec, &[SYSCTLS_1_0, SYSCTLS_1_27, SYSCTLS_1_29])
}

fn sysctls_1_32(meta: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    sysctls(meta, spec, &[SYSCTLS_1_0, SYSCTLS_1_27, SYSCTLS_1_29, SYSCTLS_1_32])
}

fn sysctls(_: &ObjectMeta, spec: &PodSpec, allowed: &[&[&str]]) -> Option<Violation> {
    let forbidden: Vec<&str> = spec
        .security_context
        .iter()
        .flat_map(|sc| sc.sysctls.iter().flatten())
        .map(|s| s.name.as_str())
        .filter(|n| !allowed.iter().any(|set| set.contains(n)))
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    violation("forbidden sysctls", forbidden.join(", "))
}

fn windows_host_process(_: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    let bad = names_where(spec, |c| {
        c.sc.and_then(|sc| sc.windows_options.as_ref()).and_then(|w| w.host_process) == Some(true)
    });
    let pod_bad =
        spec.security_context.as_ref().and_then(|sc| sc.windows_options.as_ref()).and_then(|w| w.host_process)
            == Some(true);
    let bad_setters = setters(pod_bad, &bad);
    if bad_setters.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!("{} must not set securityContext.windowsOptions.hostProcess=true", bad_setters.join(" and ")),
    )
}

fn allow_privilege_escalation(_: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    let bad = names_where(spec, |c| c.sc.and_then(|sc| sc.allow_privilege_escalation) != Some(false));
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!("{} must set securityContext.allowPrivilegeEscalation=false", containers_phrase(&bad)),
    )
}
