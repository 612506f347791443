//! node.k8s.io/v1 runtimeclasses (upstream pkg/registry/node/runtimeclass):
//! the handler is a DNS label and immutable.

use serde_json::{json, Value};

use k8s_openapi::api::node::v1::RuntimeClass;

use generic_server::meta::is_dns1123_label;
use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::{age, str_at};

pub struct RuntimeClassStrategy;

pub fn registration() -> Registration {
    Registration::of::<RuntimeClass>(RuntimeClassStrategy)
}

impl Strategy for RuntimeClassStrategy {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let handler = str_at(obj, "/handler");
        is_dns1123_label(handler).map(|p| Cause::invalid("handler", &json!(handler), &p)).into_iter().collect()
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        if str_at(new, "/handler") != str_at(old, "/handler") {
            causes.push(Cause::immutable("handler", &json!(str_at(new, "/handler"))));
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Handler", "string", "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class. The possible values are specific to the node & CRI configuration.  It is assumed that all handlers are available on every node, and handlers of the same name are equivalent on every node. For example, a handler called \"runc\" might specify that the runc OCI runtime (using native Linux containers) will be used to run the containers in a pod. The Handler must be lowercase, conform to the DNS Label (RFC 1123) requirements, and is immutable."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        vec![json!(generic_server::meta::name(obj)), json!(str_at(obj, "/handler")), age(obj)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_is_a_dns_label_and_immutable() {
        let s = RuntimeClassStrategy;
        assert_eq!(s.validate(&json!({"handler": "Bad_Handler"}))[0].field, "handler");
        let msgs: Vec<String> = s
            .validate_update(&json!({"handler": "kata"}), &json!({"handler": "runc"}))
            .iter()
            .map(Cause::full_message)
            .collect();
        assert_eq!(msgs, ["handler: Invalid value: \"kata\": field is immutable"]);
    }
}
