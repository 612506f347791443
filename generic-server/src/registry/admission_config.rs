//! --admission-control-config-file (upstream's k8s.io/apiserver
//! admission/config.go): an AdmissionConfiguration naming, per plugin, its
//! configuration inline or a file holding it (relative to the configuration
//! file's directory). Read once at start into plugin name -> configuration,
//! which each plugin interprets itself.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

const API_VERSIONS: &[&str] =
    &["apiserver.config.k8s.io/v1", "apiserver.config.k8s.io/v1alpha1", "apiserver.k8s.io/v1alpha1"];
const KIND: &str = "AdmissionConfiguration";

/// The configuration of each plugin the file names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdmissionConfig {
    plugins: BTreeMap<String, Value>,
}

impl AdmissionConfig {
    /// Reads the file; every problem is an error the server refuses to start
    /// with.
    pub fn load(path: &Path) -> Result<AdmissionConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!("unable to read admission control configuration from {:?} [{e}]", path.display().to_string())
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, dir).map_err(|e| format!("admission control configuration {}: {e}", path.display()))
    }

    /// Parses a configuration whose relative paths are under `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<AdmissionConfig, String> {
        let doc = yaml_value(text)?;
        let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind != KIND || !API_VERSIONS.contains(&api_version) {
            return Err(format!(
                "expected kind {KIND} of apiVersion {}, got kind {kind:?} of apiVersion {api_version:?}",
                API_VERSIONS[0]
            ));
        }
        let mut plugins = BTreeMap::new();
        let entries = match doc.get("plugins") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => return Err("plugins: must be a list".into()),
        };
        for (i, entry) in entries.iter().enumerate() {
            let name = entry.get("name").and_then(Value::as_str).unwrap_or_default();
            if name.is_empty() {
                return Err(format!("plugins[{i}].name: Required value"));
            }
            let path = entry.get("path").and_then(Value::as_str).filter(|p| !p.is_empty());
            // Upstream reads the path when one is given, else the inline configuration.
            let config = match path {
                Some(p) => {
                    let file = dir.join(p);
                    let text = std::fs::read_to_string(&file)
                        .map_err(|e| format!("plugins[{i}] ({name}): reading {}: {e}", file.display()))?;
                    yaml_value(&text).map_err(|e| format!("plugins[{i}] ({name}): {}: {e}", file.display()))?
                }
                None => entry.get("configuration").cloned().unwrap_or(Value::Null),
            };
            if plugins.insert(name.to_string(), config).is_some() {
                return Err(format!("plugins[{i}].name: Duplicate value: {name:?}"));
            }
        }
        Ok(AdmissionConfig { plugins })
    }

    /// The configuration of `plugin`, if the file gives one.
    pub fn plugin(&self, plugin: &str) -> Option<&Value> {
        self.plugins.get(plugin).filter(|v| !v.is_null())
    }
}

/// YAML (JSON included) as a JSON value.
fn yaml_value(text: &str) -> Result<Value, String> {
    let v: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| format!("not valid YAML or JSON: {e}"))?;
    serde_json::to_value(v).map_err(|e| format!("not valid YAML or JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_file_configurations_are_read() {
        let dir = std::env::temp_dir().join(format!("admission-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("limits.yaml"), "kind: Configuration\nlimits: [1]\n").unwrap();
        let text = "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n\
                    - name: PodSecurity\n  configuration:\n    kind: PodSecurityConfiguration\n\
                    - name: EventRateLimit\n  path: limits.yaml\n";
        let c = AdmissionConfig::parse(text, &dir).unwrap();
        assert_eq!(c.plugin("PodSecurity"), Some(&serde_json::json!({"kind": "PodSecurityConfiguration"})));
        assert_eq!(c.plugin("EventRateLimit"), Some(&serde_json::json!({"kind": "Configuration", "limits": [1]})));
        assert_eq!(c.plugin("ResourceQuota"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_files_are_refused() {
        let dir = Path::new("/nonexistent");
        assert!(AdmissionConfig::parse("kind: Foo", dir).unwrap_err().contains("expected kind AdmissionConfiguration"));
        assert!(AdmissionConfig::parse("{", dir).unwrap_err().contains("not valid YAML"));
        let missing = "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: X\n  path: nope.yaml\n";
        assert!(AdmissionConfig::parse(missing, dir)
            .unwrap_err()
            .contains("plugins[0] (X): reading /nonexistent/nope.yaml"));
        let dup =
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: X\n- name: X\n";
        assert_eq!(AdmissionConfig::parse(dup, dir).unwrap_err(), "plugins[1].name: Duplicate value: \"X\"");
    }
}
