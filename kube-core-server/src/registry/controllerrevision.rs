//! apps/v1 controllerrevisions (upstream pkg/registry/apps/controllerrevision):
//! snapshots of a controller's template; data is required and immutable,
//! revision non-negative. The table names the owning controller.

use serde_json::{json, Value};

use k8s_openapi::api::apps::v1::ControllerRevision;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::workload::{at, immutable, non_negative};
use super::{age, arr_at, str_at};

pub struct ControllerRevisionStrategy;

pub fn registration() -> Registration {
    Registration::of::<ControllerRevision>(ControllerRevisionStrategy)
}

/// "kind.group/name" of the controlling owner, as upstream's
/// formatResourceName prints it; "<none>" without one.
fn controller(o: &Value) -> String {
    let owners = arr_at(o, "/metadata/ownerReferences");
    let Some(owner) = owners.iter().find(|r| r.get("controller").and_then(Value::as_bool) == Some(true)) else {
        return "<none>".into();
    };
    let group = str_at(owner, "/apiVersion").rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let kind = str_at(owner, "/kind").to_ascii_lowercase();
    let kind = if group.is_empty() { kind } else { format!("{kind}.{group}") };
    format!("{kind}/{}", str_at(owner, "/name"))
}

impl Strategy for ControllerRevisionStrategy {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        if at(obj, "data").is_none() {
            causes.push(Cause::required("data", "data is mandatory"));
        }
        non_negative(&mut causes, obj, &["revision"]);
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        immutable(&mut causes, new, old, "data");
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Controller", "string", "Controller of the object"),
            TableColumn::new("Revision", "string", "Revision indicates the revision of the state represented by Data."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, o: &Value) -> Vec<Value> {
        let revision = o.get("revision").and_then(Value::as_i64).unwrap_or(0);
        vec![json!(generic_server::meta::name(o)), json!(controller(o)), json!(revision), age(o)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_row() {
        let s = ControllerRevisionStrategy;
        let rev = json!({"metadata": {"name": "web-1", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u", "controller": true}]},
            "data": {"a": 1}, "revision": 1});
        assert!(s.validate(&rev).is_empty());
        assert_eq!(s.table_row(&rev)[1..3], [json!("statefulset.apps/web"), json!(1)]);
        let msgs: Vec<String> = s.validate(&json!({"revision": -1})).iter().map(Cause::full_message).collect();
        assert_eq!(
            msgs,
            [
                "data: Required value: data is mandatory",
                "revision: Invalid value: -1: must be greater than or equal to 0"
            ]
        );
        let mut changed = rev.clone();
        changed["data"] = json!({"a": 2});
        assert_eq!(s.validate_update(&changed, &rev)[0].field, "data");
        assert_eq!(s.table_row(&json!({}))[1], json!("<none>"));
    }
}
