//! core/v1 serviceaccounts (upstream pkg/registry/core/serviceaccount): the
//! type's own rules are few; the table counts referenced secrets; the
//! `token` subresource is [`super::tokenrequest`].

use serde_json::{json, Value};

use k8s_openapi::api::core::v1::ServiceAccount;

use std::sync::Arc;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::serviceaccount::ServiceAccountTokens;
use generic_server::status::Cause;

use super::peers::Peers;
use super::tokenrequest::TokenRequestHandler;
use super::{age, arr_at, str_at};

pub struct ServiceAccountStrategy;

pub fn registration(tokens: Option<Arc<ServiceAccountTokens>>, peers: &Arc<Peers>) -> Registration {
    Registration::of::<ServiceAccount>(ServiceAccountStrategy)
        .short_names(&["sa"])
        .returns_deleted_object()
        .handler(TokenRequestHandler { tokens, peers: peers.clone() })
}

impl Strategy for ServiceAccountStrategy {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        for (i, s) in arr_at(obj, "/secrets").iter().enumerate() {
            let name = str_at(s, "/name");
            if !name.is_empty() {
                if let Some(m) = generic_server::meta::is_dns1123_subdomain(name) {
                    causes.push(Cause::invalid(format!("secrets[{i}].name"), &json!(name), &m));
                }
            }
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        vec![json!(generic_server::meta::name(obj)), json!(arr_at(obj, "/secrets").len()), age(obj)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_counts_secrets() {
        let s = ServiceAccountStrategy;
        let row = s.table_row(&json!({"metadata": {"name": "default"}, "secrets": [{"name": "a"}]}));
        assert_eq!(&row[..2], &[json!("default"), json!(1)]);
        assert_eq!(s.table_row(&json!({"metadata": {"name": "x"}}))[1], 0);
        assert_eq!(
            s.table_columns().into_iter().map(|c| c.name.into_owned()).collect::<Vec<_>>(),
            ["Name", "Secrets", "Age"]
        );
    }
}
