//! coordination.k8s.io/v1 leases (upstream pkg/registry/coordination/lease):
//! duration and transition counts checked, the holder shown in the table.

use serde_json::{json, Value};

use k8s_openapi::api::coordination::v1::Lease;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::{age, str_at};

pub struct LeaseStrategy;

pub fn registration() -> Registration {
    Registration::of::<Lease>(LeaseStrategy)
}

impl Strategy for LeaseStrategy {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        if let Some(d) = obj.pointer("/spec/leaseDurationSeconds").and_then(Value::as_i64).filter(|d| *d <= 0) {
            causes.push(Cause::invalid("spec.leaseDurationSeconds", &json!(d), "must be greater than 0"));
        }
        if let Some(t) = obj.pointer("/spec/leaseTransitions").and_then(Value::as_i64).filter(|t| *t < 0) {
            causes.push(Cause::invalid("spec.leaseTransitions", &json!(t), "must be greater than or equal to 0"));
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Holder", "string", "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        vec![json!(generic_server::meta::name(obj)), json!(str_at(obj, "/spec/holderIdentity")), age(obj)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let bad = json!({"spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}});
        let msgs: Vec<String> = LeaseStrategy.validate(&bad).iter().map(Cause::full_message).collect();
        assert_eq!(
            msgs,
            [
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0"
            ]
        );
    }
}
