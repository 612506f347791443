//! core/v1 namespaces (upstream pkg/registry/core/namespace): status Active
//! on create, the `kubernetes` spec finalizer that makes deletion a two-step
//! affair (Terminating, then gone once the namespace controller emptied it),
//! the `kubernetes.io/metadata.name` label, and the table.
//!
//! `spec.finalizers` can only be changed through the `/finalize` subresource,
//! which is how the namespace controller clears the `kubernetes` finalizer.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Namespace;

use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedSender;

use generic_server::meta::{self, NameRule};
use generic_server::registry::{Registration, Strategy, Subresource, TableColumn};
use generic_server::status::Cause;

use super::{age, arr_at, child, str_at};

/// The finalizer that stands for "the namespace controller has not emptied
/// this namespace yet".
pub const FINALIZER_KUBERNETES: &str = "kubernetes";
pub const LABEL_METADATA_NAME: &str = "kubernetes.io/metadata.name";

#[derive(Default)]
pub struct NamespaceStrategy {
    /// Tells the namespace controller which namespace to look at now, rather
    /// than at its next periodic pass.
    nudge: Mutex<Option<UnboundedSender<String>>>,
}

impl NamespaceStrategy {
    pub fn new() -> Self {
        <Self as Default>::default()
    }

    /// Where deletions and removals are announced (the namespace controller).
    pub fn set_notifier(&self, tx: UnboundedSender<String>) {
        if let Ok(mut n) = self.nudge.lock() {
            *n = Some(tx);
        }
    }

    fn notify(&self, name: &str) {
        if let Ok(n) = self.nudge.lock() {
            if let Some(tx) = n.as_ref() {
                let _ = tx.send(name.to_string());
            }
        }
    }

    /// The name label; runs after the name is final, so generateName'd
    /// namespaces get it too.
    fn set_name_label(&self, obj: &mut Value) {
        let name = meta::name(obj).to_string();
        if name.is_empty() {
            return;
        }
        let labels = meta::metadata_mut(obj).entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        if let Value::Object(l) = labels {
            l.insert(LABEL_METADATA_NAME.into(), json!(name));
        }
    }
}

/// Namespaces go one at a time, through their finalizer (as upstream): no
/// deletecollection.
pub fn registration(strategy: Arc<NamespaceStrategy>) -> Registration {
    Registration::shared::<Namespace>(strategy)
        .short_names(&["ns"])
        .verbs(generic_server::discovery::VERBS_NO_DELETECOLLECTION)
        .status()
        .subresource(Subresource::Finalize)
}

pub fn spec_finalizers(obj: &Value) -> Vec<String> {
    arr_at(obj, "/spec/finalizers").iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
}

/// Whether the namespace has been asked to go away.
pub fn is_terminating(obj: &Value) -> bool {
    !meta::meta_str(obj, "deletionTimestamp").is_empty() || str_at(obj, "/status/phase") == "Terminating"
}

impl Strategy for NamespaceStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::Dns1123Label
    }

    fn prepare_for_create(&self, object: &mut Value) {
        if let Some(m) = object.as_object_mut() {
            m.insert("status".into(), json!({"phase": "Active"}));
        }
        // Required on create; it may be removed later (by finalization) but
        // that is why it is not a default.
        let spec = child(object, "spec");
        let list = spec.entry("finalizers").or_insert_with(|| json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        if let Value::Array(l) = list {
            if !l.iter().any(|f| f == FINALIZER_KUBERNETES) {
                l.push(json!(FINALIZER_KUBERNETES));
            }
        }
    }

    /// A namespace is not gone while spec.finalizers (or metadata.finalizers)
    /// remain, so delete marks it instead of removing it.
    fn pending_finalizers(&self, obj: &Value) -> bool {
        !meta::finalizers(obj).is_empty() || !spec_finalizers(obj).is_empty()
    }

    fn prepare_for_delete(&self, obj: &mut Value) {
        child(obj, "status").insert("phase".into(), json!("Terminating"));
        self.notify(meta::name(obj));
    }

    fn canonicalize(&self, obj: &mut Value) {
        self.set_name_label(obj);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // Only /finalize changes spec.finalizers.
        let spec = child(new, "spec");
        match old.pointer("/spec/finalizers") {
            Some(f) => spec.insert("finalizers".into(), f.clone()),
            None => spec.remove("finalizers"),
        };
    }

    fn default(&self, object: &mut Value) {
        self.set_name_label(object);
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        for (i, f) in arr_at(obj, "/spec/finalizers").iter().enumerate() {
            let name = f.as_str().unwrap_or("");
            let standard = name == FINALIZER_KUBERNETES || name.starts_with("kubernetes.io/");
            if !standard && !name.contains('/') {
                causes.push(Cause::invalid(
                    format!("spec.finalizers[{i}]"),
                    f,
                    "name is neither a standard finalizer name nor is it fully qualified",
                ));
            }
        }
        if let Some(p) = obj.pointer("/status/phase") {
            if !matches!(p.as_str(), Some("Active" | "Terminating" | "")) {
                causes.push(Cause::not_supported("status.phase", p, &["Active", "Terminating"]));
            }
        }
        causes
    }

    fn field_labels(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![("status.phase", str_at(obj, "/status/phase").to_string())]
    }

    fn supported_field_labels(&self) -> &'static [&'static str] {
        &["status.phase"]
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Status", "string", "The status of the namespace"),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        vec![json!(meta::name(obj)), json!(str_at(obj, "/status/phase")), age(obj)]
    }

    fn after_delete(&self, obj: &Value) {
        // Whatever is left inside must go too.
        self.notify(meta::name(obj));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_sets_phase_finalizer_and_label() {
        let s = NamespaceStrategy::new();
        let mut ns = generic_server::registry::typed::decode_as::<k8s_openapi::api::core::v1::Namespace>(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}, "status": {"phase": "Terminating"}})).unwrap().object;
        s.prepare_for_create(&mut ns);
        s.default(&mut ns);
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["metadata"]["labels"][LABEL_METADATA_NAME], "team-a");
        assert!(s.validate(&ns).is_empty());
        assert!(s.pending_finalizers(&ns));
        assert_eq!(s.table_row(&ns)[..2], [json!("team-a"), json!("Active")]);
        assert_eq!(s.field_labels(&ns), vec![("status.phase", "Active".to_string())]);
    }

    #[test]
    fn a_plain_update_keeps_spec_finalizers() {
        let s = NamespaceStrategy::new();
        let old = json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["kubernetes"]}});
        let mut new = json!({"metadata": {"name": "a"}, "spec": {"finalizers": []}});
        s.prepare_for_update(&mut new, &old);
        assert_eq!(new["spec"]["finalizers"], json!(["kubernetes"]));
        assert!(s.pending_finalizers(&new));
        assert!(!s.pending_finalizers(&json!({"metadata": {"name": "a"}, "spec": {"finalizers": []}})));
    }

    #[test]
    fn delete_marks_terminating_and_notifies() {
        let s = NamespaceStrategy::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        s.set_notifier(tx);
        let mut ns = json!({"metadata": {"name": "a"}, "status": {"phase": "Active"}});
        s.prepare_for_delete(&mut ns);
        assert_eq!(ns["status"]["phase"], "Terminating");
        assert_eq!(rx.try_recv().ok().as_deref(), Some("a"));
    }

    #[test]
    fn finalizer_names() {
        let s = NamespaceStrategy::new();
        let bad = json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["foo"]}});
        assert_eq!(
            s.validate(&bad)[0].full_message(),
            "spec.finalizers[0]: Invalid value: \"foo\": name is neither a standard finalizer name nor is it fully qualified"
        );
    }
}
