//! storage.k8s.io/v1 storageclasses (upstream pkg/registry/storage/
//! storageclass): reclaim policy and binding mode defaulted, provisioner
//! required, provisioner, parameters and reclaim policy fixed once created,
//! and the table, which marks the default class.

use serde_json::{json, Value};

use k8s_openapi::api::storage::v1::StorageClass;

use generic_server::meta::qualified_name_problem;
use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::{age, default_field, str_at};

pub struct StorageClassStrategy;

pub fn registration() -> Registration {
    Registration::of::<StorageClass>(StorageClassStrategy).short_names(&["sc"]).returns_deleted_object()
}

const RECLAIM_POLICIES: &[&str] = &["Delete", "Retain"];
const BINDING_MODES: &[&str] = &["Immediate", "WaitForFirstConsumer"];

/// The annotations that make a class the default (the beta one still counts).
const DEFAULT_ANNOTATIONS: &[&str] =
    &["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"];

/// Whether the class is marked the default (upstream's IsDefaultAnnotation).
pub fn is_default_class(obj: &Value) -> bool {
    let annotations = super::map_at(obj, "/metadata/annotations");
    DEFAULT_ANNOTATIONS.iter().any(|a| annotations.and_then(|m| m.get(*a)) == Some(&json!("true")))
}

impl Strategy for StorageClassStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(m) = obj.as_object_mut() else { return };
        default_field(m, "reclaimPolicy", json!("Delete"));
        default_field(m, "volumeBindingMode", json!("Immediate"));
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let provisioner = str_at(obj, "/provisioner");
        if provisioner.is_empty() {
            causes.push(Cause::required("provisioner", ""));
        } else if let Some(p) = qualified_name_problem(&provisioner.to_lowercase()) {
            causes.push(Cause::invalid("provisioner", &json!(provisioner.to_lowercase()), &p));
        }
        for (field, allowed) in [("reclaimPolicy", RECLAIM_POLICIES), ("volumeBindingMode", BINDING_MODES)] {
            if let Some(v) = obj.get(field).filter(|v| !v.is_null()) {
                if !v.as_str().is_some_and(|v| allowed.contains(&v)) {
                    causes.push(Cause::not_supported(field, v, allowed));
                }
            }
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        let get = |o: &Value, f: &str| o.get(f).filter(|v| !v.is_null()).cloned();
        if get(new, "parameters") != get(old, "parameters") {
            causes.push(Cause::forbidden("parameters", "updates to parameters are forbidden."));
        }
        if str_at(new, "/provisioner") != str_at(old, "/provisioner") {
            causes.push(Cause::forbidden("provisioner", "updates to provisioner are forbidden."));
        }
        if str_at(new, "/reclaimPolicy") != str_at(old, "/reclaimPolicy") {
            causes.push(Cause::forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."));
        }
        if get(new, "volumeBindingMode") != get(old, "volumeBindingMode") {
            causes.push(Cause::immutable("volumeBindingMode", &get(new, "volumeBindingMode").unwrap_or(Value::Null)));
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Provisioner", "string", "provisioner indicates the type of the provisioner."),
            TableColumn::new("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete."),
            TableColumn::new("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature."),
            TableColumn::new("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let mut name = generic_server::meta::name(obj).to_string();
        if is_default_class(obj) {
            name.push_str(" (default)");
        }
        let or = |f: &str, d: &'static str| {
            let v = str_at(obj, f);
            if v.is_empty() {
                d.to_string()
            } else {
                v.to_string()
            }
        };
        let expansion = obj.get("allowVolumeExpansion").and_then(Value::as_bool).unwrap_or(false);
        vec![
            json!(name),
            json!(str_at(obj, "/provisioner")),
            json!(or("/reclaimPolicy", "Delete")),
            json!(or("/volumeBindingMode", "Immediate")),
            json!(expansion.to_string()),
            age(obj),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_fixed_fields() {
        let s = StorageClassStrategy;
        let mut old = json!({"metadata": {"name": "fast", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "csi.example.com"});
        s.default(&mut old);
        assert_eq!(
            (old["reclaimPolicy"].as_str(), old["volumeBindingMode"].as_str()),
            (Some("Delete"), Some("Immediate"))
        );
        assert_eq!(s.table_row(&old)[0], "fast (default)");
        assert_eq!(s.validate(&json!({}))[0].full_message(), "provisioner: Required value");
        let mut new = old.clone();
        new["provisioner"] = json!("other.example.com");
        new["parameters"] = json!({"type": "ssd"});
        let msgs: Vec<String> = s.validate_update(&new, &old).iter().map(Cause::full_message).collect();
        assert_eq!(
            msgs,
            [
                "parameters: Forbidden: updates to parameters are forbidden.",
                "provisioner: Forbidden: updates to provisioner are forbidden."
            ]
        );
    }
}
