//! A webhook of a stored configuration, compiled once when the configuration
//! changes (upstream's webhook accessors with their cached matchers and REST
//! clients): rules, selectors and matchConditions parsed, the TLS client
//! built from the caBundle, the AdmissionReview version chosen.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use generic_server::meta::str_at;

use crate::matching::{Rule, Selectors};

/// Upstream's default timeoutSeconds.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A matchCondition: its name and compiled expression.
pub(crate) struct Condition {
    pub name: String,
    pub metered: cel_k8s::meter::Metered,
}

/// One webhook, ready to match and call.
pub(crate) struct Hook {
    pub name: String,
    pub configuration: String,
    /// The clientConfig, compiled.
    pub client: generic_server::webhook::Client,
    pub rules: Vec<Rule>,
    /// matchPolicy Equivalent: rules may match another version of the
    /// request's resource.
    pub equivalent: bool,
    pub selectors: Selectors,
    pub conditions: Result<Vec<Condition>, String>,
    /// failurePolicy Ignore.
    pub fail_open: bool,
    /// sideEffects None or NoneOnDryRun: a dry run may be sent.
    pub dry_run_safe: bool,
    /// sideEffects was unset (only possible for objects stored long ago).
    pub side_effects_unset: bool,
    pub timeout: Duration,
    /// reinvocationPolicy IfNeeded.
    pub reinvoke: bool,
    /// The first admissionReviewVersions entry this server speaks.
    pub review_version: Option<&'static str>,
}

impl Hook {
    /// Compiles the webhook `hook` of the configuration named `configuration`.
    /// What cannot be compiled is kept as an error the call reports, so a bad
    /// webhook fails (or is ignored) by its own failurePolicy.
    pub fn compile(configuration: &str, hook: &Value) -> Hook {
        let client =
            generic_server::webhook::Client::from_client_config(hook.get("clientConfig").unwrap_or(&Value::Null));
        let rules = hook.get("rules").and_then(Value::as_array).map(|r| r.iter().map(Rule::parse).collect());
        let conditions = hook
            .get("matchConditions")
            .and_then(Value::as_array)
            .map(|cs| cs.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|c| {
                let name = str_at(c, "/name").to_string();
                cel_k8s::compile(str_at(c, "/expression"))
                    .map(|program| Condition { name: name.clone(), metered: cel_k8s::meter::Metered::new(&program) })
                    .map_err(|e| format!("matchCondition {name:?}: {e}"))
            })
            .collect();
        let side_effects = str_at(hook, "/sideEffects");
        let review_version = hook
            .get("admissionReviewVersions")
            .and_then(Value::as_array)
            .map(|v| v.as_slice())
            .unwrap_or_default()
            .iter()
            .find_map(|v| match v.as_str() {
                Some("v1") => Some("v1"),
                Some("v1beta1") => Some("v1beta1"),
                _ => None,
            });
        Hook {
            name: str_at(hook, "/name").to_string(),
            configuration: configuration.to_string(),
            client,
            rules: rules.unwrap_or_default(),
            equivalent: str_at(hook, "/matchPolicy") == "Equivalent",
            selectors: Selectors::parse(hook),
            conditions,
            fail_open: str_at(hook, "/failurePolicy") == "Ignore",
            dry_run_safe: matches!(side_effects, "None" | "NoneOnDryRun"),
            side_effects_unset: side_effects.is_empty(),
            timeout: hook
                .get("timeoutSeconds")
                .and_then(Value::as_u64)
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_TIMEOUT),
            reinvoke: str_at(hook, "/reinvocationPolicy") == "IfNeeded",
            review_version,
        }
    }

    /// Every webhook of the configurations, in upstream's order: configurations
    /// by name, webhooks in their order within each.
    pub fn compile_all(mut configurations: Vec<Value>) -> Vec<Arc<Hook>> {
        configurations.sort_by(|a, b| str_at(a, "/metadata/name").cmp(str_at(b, "/metadata/name")));
        configurations
            .iter()
            .flat_map(|c| {
                let name = str_at(c, "/metadata/name");
                c.get("webhooks")
                    .and_then(Value::as_array)
                    .map(|h| h.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .map(move |h| Arc::new(Hook::compile(name, h)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_compile_in_configuration_order() {
        let config = |name: &str, hooks: &[&str]| {
            serde_json::json!({"metadata": {"name": name}, "webhooks": hooks.iter().map(|h| serde_json::json!({
                "name": h, "sideEffects": "None", "admissionReviewVersions": ["v2", "v1beta1", "v1"],
                "clientConfig": {"url": "https://example.com/"}, "failurePolicy": "Ignore"})).collect::<Vec<_>>()})
        };
        let hooks = Hook::compile_all(vec![config("b", &["b1.io"]), config("a", &["a1.io", "a2.io"])]);
        let names: Vec<_> = hooks.iter().map(|h| (h.configuration.as_str(), h.name.as_str())).collect();
        assert_eq!(names, [("a", "a1.io"), ("a", "a2.io"), ("b", "b1.io")]);
        assert_eq!(hooks[0].review_version, Some("v1beta1"));
        assert!(hooks[0].fail_open && hooks[0].dry_run_safe && !hooks[0].reinvoke);
        assert_eq!(hooks[0].timeout, DEFAULT_TIMEOUT);
    }
}
