//! What PodSecurity records in the server's metrics, labelled as upstream's
//! pod-security-admission metrics label them.

use generic_server::registry::{AdmissionAttributes, Operation};

use crate::api::{Level, LevelVersion, Version};

/// The minor version of the API this server serves: a policy pinned to a
/// later one is counted as "future".
const SERVER_MINOR: u32 = 33;

/// How a policy was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Audit,
    Warn,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
            Mode::Warn => "warn",
        }
    }
}

/// (operation, resource, subresource): pods are "pod", namespaces
/// "namespace", anything else PodSecurity looks at is a "controller".
fn request<'a>(a: &'a AdmissionAttributes<'_>) -> [&'a str; 3] {
    let operation = match a.operation {
        Operation::Create => "create",
        Operation::Update => "update",
        Operation::Delete => "delete",
        Operation::Connect => "connect",
    };
    let resource = match (a.group(), a.resource()) {
        ("", "pods") => "pod",
        ("", "namespaces") => "namespace",
        _ => "controller",
    };
    [operation, resource, a.subresource]
}

/// The policy_version label: a privileged level is always "latest".
fn version_label(lv: LevelVersion) -> String {
    match lv.version {
        _ if lv.level == Level::Privileged => "latest".into(),
        Version::Latest => "latest".into(),
        Version::Minor(m) if m > SERVER_MINOR => "future".into(),
        v => v.to_string(),
    }
}

pub fn evaluation(a: &AdmissionAttributes<'_>, allowed: bool, lv: LevelVersion, mode: Mode) {
    let version = version_label(lv);
    let policy = [lv.level.as_str(), version.as_str(), mode.as_str()];
    generic_server::metrics::global().observe_pod_security_evaluation(allowed, policy, request(a));
}

pub fn exemption(a: &AdmissionAttributes<'_>) {
    generic_server::metrics::global().observe_pod_security_exemption(request(a));
}

pub fn error(a: &AdmissionAttributes<'_>, fatal: bool) {
    generic_server::metrics::global().observe_pod_security_error(fatal, request(a));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_labels() {
        let lv = |level, version| LevelVersion { level, version };
        assert_eq!(version_label(lv(Level::Restricted, Version::Latest)), "latest");
        assert_eq!(version_label(lv(Level::Restricted, Version::Minor(21))), "v1.21");
        assert_eq!(version_label(lv(Level::Baseline, Version::Minor(33))), "v1.33");
        assert_eq!(version_label(lv(Level::Baseline, Version::Minor(34))), "future");
        assert_eq!(version_label(lv(Level::Privileged, Version::Minor(21))), "latest");
    }
}
