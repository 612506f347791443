//! core/v1 podtemplates (upstream pkg/registry/core/podtemplate): the
//! template's PodSpec defaults and validation under `template`, and the
//! table (no Age column upstream).

use serde_json::{json, Value};

use k8s_openapi::api::core::v1::PodTemplate;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::podspec::validate_pod_spec;
use super::workload::{at, container_cells, default_template};
use super::{format_labels, map_at};

pub struct PodTemplateStrategy;

pub fn registration() -> Registration {
    Registration::of::<PodTemplate>(PodTemplateStrategy)
}

impl Strategy for PodTemplateStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, object: &mut Value) {
        if at(object, "template").is_some() {
            default_template(object, "template");
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_pod_spec(at(obj, "template.spec").unwrap_or(&Value::Null), "template.spec")
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Containers", "string", "Names of each container in the template."),
            TableColumn::new("Images", "string", "Images referenced by each container in the template."),
            TableColumn::new("Pod Labels", "string", "The labels for the pod template."),
        ]
    }

    fn table_row(&self, o: &Value) -> Vec<Value> {
        let [names, images] = container_cells(o, "template");
        vec![
            json!(generic_server::meta::name(o)),
            names,
            images,
            json!(format_labels(map_at(o, "/template/metadata/labels"))),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validation_and_row() {
        let s = PodTemplateStrategy;
        let mut t = json!({"metadata": {"name": "t"}, "template": {"metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}});
        s.default(&mut t);
        assert_eq!(t["template"]["spec"]["restartPolicy"], "Always");
        assert!(s.validate(&t).is_empty());
        assert_eq!(s.table_row(&t), [json!("t"), json!("c"), json!("nginx"), json!("a=b")]);
        let causes = s.validate(&json!({"template": {"spec": {}}}));
        assert_eq!(causes[0].full_message(), "template.spec.containers: Required value");
    }
}
