//! core/v1 configmaps (upstream pkg/registry/core/configmap): key rules, the
//! 1 MiB size limit, `immutable: true` and the `kubectl get configmaps` table.

use serde_json::{json, Value};

use k8s_openapi::api::core::v1::ConfigMap;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::{age, config_key_problems, map_at, too_long_cause};

/// Upstream's MaxSecretSize, which also bounds configmaps.
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

pub struct ConfigMapStrategy;

pub fn registration() -> Registration {
    Registration::of::<ConfigMap>(ConfigMapStrategy).short_names(&["cm"])
}

/// Keys of `data` and `binaryData`: valid, not shared, within the size limit.
pub(crate) fn validate_data_keys(obj: &Value, causes: &mut Vec<Cause>) {
    let mut total = 0usize;
    let data = map_at(obj, "/data");
    for (k, v) in data.into_iter().flatten() {
        for m in config_key_problems(k) {
            causes.push(Cause::invalid(format!("data[{k}]"), &json!(k), &m));
        }
        total += v.as_str().map(str::len).unwrap_or(0);
    }
    for (k, v) in map_at(obj, "/binaryData").into_iter().flatten() {
        for m in config_key_problems(k) {
            causes.push(Cause::invalid(format!("binaryData[{k}]"), &json!(k), &m));
        }
        if data.is_some_and(|d| d.contains_key(k)) {
            causes.push(Cause::invalid(format!("binaryData[{k}]"), &json!(k), "duplicate of key present in data"));
        }
        // Stored base64: the decoded size is about three quarters of it.
        total += v.as_str().map(|s| s.len() * 3 / 4).unwrap_or(0);
    }
    if total > MAX_DATA_SIZE {
        causes.push(too_long_cause("", MAX_DATA_SIZE));
    }
}

/// `immutable: true` freezes the data and the flag itself.
pub(crate) fn validate_immutable(new: &Value, old: &Value, fields: &[&str], causes: &mut Vec<Cause>) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        causes.push(Cause::forbidden("immutable", "field is immutable when `immutable` is set"));
    }
    for f in fields {
        let n = new.get(*f).filter(|v| !v.is_null());
        let o = old.get(*f).filter(|v| !v.is_null());
        if n != o {
            causes.push(Cause::forbidden(*f, "field is immutable when `immutable` is set"));
        }
    }
}

impl Strategy for ConfigMapStrategy {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_data_keys(obj, &mut causes);
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        validate_immutable(new, old, &["data", "binaryData"], &mut causes);
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Data", "string", "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let n = map_at(obj, "/data").map_or(0, |m| m.len()) + map_at(obj, "/binaryData").map_or(0, |m| m.len());
        vec![json!(generic_server::meta::name(obj)), json!(n), age(obj)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_immutability() {
        let s = ConfigMapStrategy;
        let cm = json!({"metadata": {"name": "c"}, "data": {"ok.key": "v", "bad/key": "v"}, "binaryData": {"ok.key": "dg=="}});
        let msgs: Vec<String> = s.validate(&cm).iter().map(Cause::full_message).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].starts_with("data[bad/key]: Invalid value: \"bad/key\": a valid config key"));
        assert_eq!(msgs[1], "binaryData[ok.key]: Invalid value: \"ok.key\": duplicate of key present in data");

        let old = json!({"metadata": {"name": "c"}, "data": {"a": "1"}, "immutable": true});
        let mut new = old.clone();
        new["data"]["a"] = json!("2");
        let msgs: Vec<String> = s.validate_update(&new, &old).iter().map(Cause::full_message).collect();
        assert_eq!(msgs, vec!["data: Forbidden: field is immutable when `immutable` is set"]);
        let mut unset = old.clone();
        unset["immutable"] = json!(false);
        assert_eq!(s.validate_update(&unset, &old)[0].field, "immutable");
        assert!(s.validate_update(&old, &old).is_empty());
    }

    #[test]
    fn table_counts_both_maps() {
        let s = ConfigMapStrategy;
        let row = s.table_row(&json!({"metadata": {"name": "c"}, "data": {"a": "1"}, "binaryData": {"b": "dg=="}}));
        assert_eq!(row[0], "c");
        assert_eq!(row[1], 2);
    }
}
