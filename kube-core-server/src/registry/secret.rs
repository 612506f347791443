//! core/v1 secrets (upstream pkg/registry/core/secret): `stringData` folded
//! into `data` on every write (it is write-only, as upstream), type defaulted to
//! Opaque and immutable, the per-type required keys, `immutable: true`, the
//! `type` field selector and the `kubectl get secrets` table.

use base64::Engine;
use serde_json::{json, Value};

use k8s_openapi::api::core::v1::Secret;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::configmap::{validate_data_keys, validate_immutable};
use super::{age, map_at, str_at};

pub struct SecretStrategy;

pub fn registration() -> Registration {
    Registration::of::<Secret>(SecretStrategy).converted(fold_string_data)
}

/// Moves `stringData` into `data` (base64), where its keys win, as upstream's
/// conversion does; `stringData` is never stored.
pub(crate) fn fold_string_data(obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else { return };
    let Some(Value::Object(sd)) = m.remove("stringData") else { return };
    let data = m.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    if let Value::Object(d) = data {
        for (k, v) in sd {
            let s = v.as_str().unwrap_or("");
            d.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(s)));
        }
    }
}

impl Strategy for SecretStrategy {
    fn default(&self, object: &mut Value) {
        if let Some(m) = object.as_object_mut() {
            if m.get("type").and_then(Value::as_str).unwrap_or("").is_empty() {
                m.insert("type".into(), json!("Opaque"));
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_data_keys(obj, &mut causes);
        let data = map_at(obj, "/data");
        let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
        let require = |causes: &mut Vec<Cause>, k: &str| {
            if !has(k) {
                causes.push(Cause::required(format!("data[{k}]"), ""));
            }
        };
        match str_at(obj, "/type") {
            "kubernetes.io/service-account-token" => {
                let sa =
                    obj.pointer("/metadata/annotations/kubernetes.io~1service-account.name").and_then(Value::as_str);
                if sa.unwrap_or("").is_empty() {
                    causes.push(Cause::required("metadata.annotations[kubernetes.io/service-account.name]", ""));
                }
            }
            "kubernetes.io/dockercfg" => require(&mut causes, ".dockercfg"),
            "kubernetes.io/dockerconfigjson" => require(&mut causes, ".dockerconfigjson"),
            "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
                causes.push(Cause::required("data[username]", ""));
                causes.push(Cause::required("data[password]", ""));
            }
            "kubernetes.io/ssh-auth" => require(&mut causes, "ssh-privatekey"),
            "kubernetes.io/tls" => {
                require(&mut causes, "tls.key");
                require(&mut causes, "tls.crt");
            }
            _ => {}
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        let (nt, ot) = (str_at(new, "/type"), str_at(old, "/type"));
        if nt != ot {
            causes.push(Cause::immutable("type", &json!(nt)));
        }
        validate_immutable(new, old, &["data"], &mut causes);
        causes
    }

    fn field_labels(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![("type", str_at(obj, "/type").to_string())]
    }

    fn supported_field_labels(&self) -> &'static [&'static str] {
        &["type"]
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Type", "string", "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types"),
            TableColumn::new("Data", "string", "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4"),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        vec![
            json!(generic_server::meta::name(obj)),
            json!(str_at(obj, "/type")),
            json!(map_at(obj, "/data").map_or(0, |m| m.len())),
            age(obj),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_and_type() {
        let s = SecretStrategy;
        let mut v = registration()
            .schema
            .decode(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                "data": {"a": "eA=="}, "stringData": {"b": "hello", "a": "y"}}))
            .unwrap()
            .object;
        s.default(&mut v);
        assert_eq!(v["type"], "Opaque");
        assert_eq!(v["data"], json!({"a": "eQ==", "b": "aGVsbG8="}));
        assert!(v.get("stringData").is_none());
        assert_eq!(s.table_row(&v)[..3], [json!("s"), json!("Opaque"), json!(2)]);
        assert_eq!(s.field_labels(&v), vec![("type", "Opaque".to_string())]);
    }

    #[test]
    fn type_rules() {
        let s = SecretStrategy;
        let tls = json!({"metadata": {"name": "t"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
        let msgs: Vec<String> = s.validate(&tls).iter().map(Cause::full_message).collect();
        assert_eq!(msgs, vec!["data[tls.key]: Required value"]);
        let old = json!({"metadata": {"name": "t"}, "type": "Opaque"});
        let new = json!({"metadata": {"name": "t"}, "type": "kubernetes.io/basic-auth", "data": {"username": "eA=="}});
        let msgs: Vec<String> = s.validate_update(&new, &old).iter().map(Cause::full_message).collect();
        assert_eq!(msgs, vec!["type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable"]);
    }

    #[test]
    fn bad_base64_is_a_bad_request() {
        let e = registration().schema.decode(json!({"metadata": {"name": "s"}, "data": {"a": "!!"}})).err();
        assert_eq!(e.map(|e| e.code), Some(400));
    }
}
