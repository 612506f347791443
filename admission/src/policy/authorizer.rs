//! The `authorizer` and `authorizer.requestResource` variables of a
//! policy's expressions (upstream's NewAuthorizerVal and
//! NewResourceAuthorizerVal): checks asked of the server's own authorizer
//! for the user whose request is admitted.

use std::sync::Arc;

use cel_k8s::authz::{Authorize, Check, Decision};
use generic_server::authn::UserInfo;
use generic_server::authz::{Attributes, Authorizer, PRIVILEGED_GROUP};
use generic_server::registry::AdmissionAttributes;

/// The server's authorizer bound to one request's user.
struct ForUser {
    authorizer: Arc<dyn Authorizer>,
    user: UserInfo,
}

impl Authorize for ForUser {
    fn authorize(&self, service_account: Option<(&str, &str)>, check: &Check) -> Decision {
        // Upstream's ServiceAccountInfo.UserInfo: the account's name and groups.
        let account;
        let user = match service_account {
            Some((ns, name)) => {
                account = UserInfo {
                    name: generic_server::serviceaccount::username(ns, name),
                    groups: vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}")],
                    ..UserInfo::default()
                };
                &account
            }
            None => &self.user,
        };
        let attrs = match &check.path {
            Some(path) => Attributes::non_resource(user, &check.verb, path),
            None => Attributes {
                api_version: "*",
                subresource: &check.subresource,
                field_selector: &check.field_selector,
                ..Attributes::resource(user, &check.verb, &check.group, &check.resource, &check.namespace, &check.name)
            },
        };
        let verdict = self.authorizer.authorize(&attrs);
        Decision { allowed: verdict.allowed(), reason: verdict.reason, error: verdict.error }
    }
}

/// The two variables for request `a`. The server's own writes (no user)
/// are checked as its loopback client, which is privileged.
pub fn variables(authorizer: &Arc<dyn Authorizer>, a: &AdmissionAttributes<'_>) -> (cel::Value, cel::Value) {
    let user = a.user.cloned().unwrap_or_else(|| UserInfo {
        name: "system:apiserver".into(),
        groups: vec![PRIVILEGED_GROUP.into()],
        ..UserInfo::default()
    });
    let authz: Arc<dyn Authorize> = Arc::new(ForUser { authorizer: authorizer.clone(), user });
    let resource = cel_k8s::authz::request_resource(
        authz.clone(),
        &a.info.group,
        &a.info.plural,
        a.subresource,
        a.namespace,
        a.name,
    );
    (cel_k8s::authz::authorizer(authz), resource)
}
