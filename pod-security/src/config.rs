//! PodSecurityConfiguration (pod-security.admission.config.k8s.io/v1, and
//! the identical v1beta1 and v1alpha1): the policy of namespaces without
//! labels and the exempt usernames, namespaces and runtime classes, as the
//! PodSecurity entry of --admission-control-config-file gives them.

use generic_server::meta::{is_dns1123_label, is_dns1123_subdomain};
use generic_server::status::Cause;
use serde_json::{json, Value};

use crate::api::{aggregate, Level, LevelVersion, Policy, Version};

const GROUP: &str = "pod-security.admission.config.k8s.io";
const VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha1"];
const KIND: &str = "PodSecurityConfiguration";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exemptions {
    pub usernames: Vec<String>,
    pub namespaces: Vec<String>,
    pub runtime_classes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Configuration {
    /// For namespaces whose labels leave a mode unset.
    pub defaults: Policy,
    pub exemptions: Exemptions,
}

impl Configuration {
    /// Reads the plugin's configuration; none means upstream's defaults
    /// (privileged:latest for every mode, nothing exempt). The error is the
    /// reason the server refuses to start.
    pub fn from_value(v: Option<&Value>) -> Result<Configuration, String> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(Configuration::default());
        };
        let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default();
        let known_version = api_version.split_once('/').is_some_and(|(g, ver)| g == GROUP && VERSIONS.contains(&ver));
        if !known_version || kind != KIND {
            return Err(format!(
                "PodSecurity configuration error: expected {KIND} of {GROUP}/v1, got kind {kind:?} of apiVersion {api_version:?}"
            ));
        }
        let text = |section: &str, field: &str| -> String {
            v.get(section).and_then(|s| s.get(field)).and_then(Value::as_str).unwrap_or_default().to_string()
        };
        let list = |field: &str| -> Vec<String> {
            let items = v.get("exemptions").and_then(|e| e.get(field)).and_then(Value::as_array);
            items.into_iter().flatten().map(|i| i.as_str().unwrap_or_default().to_string()).collect()
        };
        let mut errs = Vec::new();
        let mut mode = |level_field: &str, version_field: &str| {
            let (level, version) = (text("defaults", level_field), text("defaults", version_field));
            // Upstream's SetDefaults_PodSecurityDefaults.
            let level = if level.is_empty() { "privileged".to_string() } else { level };
            let version = if version.is_empty() { "latest".to_string() } else { version };
            LevelVersion {
                level: Level::parse(&level).unwrap_or_else(|why| {
                    errs.push(Cause::invalid(format!("defaults.{level_field}"), &json!(level), &why));
                    Level::Privileged
                }),
                version: Version::parse(&version).unwrap_or_else(|why| {
                    errs.push(Cause::invalid(format!("defaults.{version_field}"), &json!(version), &why));
                    Version::Latest
                }),
            }
        };
        let enforce = mode("enforce", "enforce-version");
        let warn = mode("warn", "warn-version");
        let audit = mode("audit", "audit-version");
        let exemptions = Exemptions {
            namespaces: list("namespaces"),
            runtime_classes: list("runtimeClasses"),
            usernames: list("usernames"),
        };
        check_names(&mut errs, "exemptions.namespaces", &exemptions.namespaces, is_dns1123_label);
        check_names(&mut errs, "exemptions.runtimeClasses", &exemptions.runtime_classes, is_dns1123_subdomain);
        check_names(&mut errs, "exemptions.usernames", &exemptions.usernames, |u| {
            u.is_empty().then(|| "username must not be empty".to_string())
        });
        if !errs.is_empty() {
            return Err(format!("PodSecurity invalid: {}", aggregate(&errs)));
        }
        Ok(Configuration { defaults: Policy { enforce, audit, warn }, exemptions })
    }
}

/// Each name valid by `problem` and none twice.
fn check_names(errs: &mut Vec<Cause>, path: &str, names: &[String], problem: impl Fn(&str) -> Option<String>) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, n) in names.iter().enumerate() {
        let field = format!("{path}[{i}]");
        if let Some(why) = problem(n) {
            errs.push(Cause::invalid(field, &json!(n), &why));
        } else if !seen.insert(n) {
            errs.push(Cause::duplicate(field, &json!(n)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_configuration_is_privileged_everywhere() {
        let c = Configuration::from_value(None).unwrap();
        assert!(c.defaults.fully_privileged());
        assert_eq!(c.exemptions, Exemptions::default());
    }

    #[test]
    fn defaults_and_exemptions_are_read() {
        let v = json!({
            "apiVersion": "pod-security.admission.config.k8s.io/v1",
            "kind": "PodSecurityConfiguration",
            "defaults": {"enforce": "baseline", "warn": "restricted", "warn-version": "v1.24"},
            "exemptions": {"usernames": ["admin"], "namespaces": ["kube-system"], "runtimeClasses": ["kata"]}
        });
        let c = Configuration::from_value(Some(&v)).unwrap();
        assert_eq!(c.defaults.enforce.to_string(), "baseline:latest");
        assert_eq!(c.defaults.warn.to_string(), "restricted:v1.24");
        assert_eq!(c.defaults.audit.to_string(), "privileged:latest");
        assert_eq!(c.exemptions.usernames, ["admin"]);
        assert_eq!(c.exemptions.runtime_classes, ["kata"]);
    }

    #[test]
    fn bad_configuration_is_refused_with_field_paths() {
        let v = json!({
            "apiVersion": "pod-security.admission.config.k8s.io/v1",
            "kind": "PodSecurityConfiguration",
            "defaults": {"enforce": "strict"},
            "exemptions": {"namespaces": ["a", "a", "Bad"], "usernames": [""]}
        });
        let err = Configuration::from_value(Some(&v)).unwrap_err();
        assert!(
            err.starts_with("PodSecurity invalid: [defaults.enforce: Invalid value: \"strict\": must be one of"),
            "{err}"
        );
        assert!(err.contains("exemptions.namespaces[1]: Duplicate value: \"a\""), "{err}");
        assert!(err.contains("exemptions.namespaces[2]: Invalid value: \"Bad\""), "{err}");
        assert!(err.contains("exemptions.usernames[0]: Invalid value: \"\": username must not be empty"), "{err}");
        let wrong = json!({"apiVersion": "v1", "kind": "ConfigMap"});
        assert!(Configuration::from_value(Some(&wrong)).unwrap_err().contains("expected PodSecurityConfiguration"));
    }
}
