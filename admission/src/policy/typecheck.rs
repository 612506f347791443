//! status.typeChecking of ValidatingAdmissionPolicies (upstream's
//! validating/typechecking.go and the policy status controller): each
//! validation's expression and messageExpression is checked against the
//! schema of every kind the policy's resourceRules name without wildcards
//! (at most ten), and of its paramKind. What is checked is what
//! `cel_k8s::fields` can: that every field selected on `object`,
//! `oldObject` and `params` exists in the kind's OpenAPI schema. Built-in
//! kinds have schemas here; custom resources are not checked.

use std::sync::Arc;

use serde_json::{json, Value};

use generic_server::registry::{Store, StoreRegistry, Subresource, WriteOptions};

/// Upstream's maxTypesToCheck.
const MAX_TYPES: usize = 10;

pub struct TypeChecker {
    stores: Arc<StoreRegistry>,
    policies: Arc<Store>,
}

/// A kind to check against: Go's GroupVersionKind.String() and its schema.
struct Kind {
    gvk: String,
    schema: &'static Value,
}

fn definitions() -> &'static serde_json::Map<String, Value> {
    generic_server::openapi::builtin_definitions()
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

impl TypeChecker {
    pub fn new(stores: Arc<StoreRegistry>, policies: Arc<Store>) -> Arc<TypeChecker> {
        Arc::new(TypeChecker { stores, policies })
    }

    fn schema_of(store: &Store) -> Option<&'static Value> {
        store.schema.definition.and_then(|d| definitions().get(d))
    }

    /// Upstream's typesToCheck: the kinds of the rules' exact groups,
    /// versions and resources that this server serves.
    fn kinds(&self, policy: &Value) -> Vec<Kind> {
        let mut out: Vec<Kind> = Vec::new();
        let rules = policy.pointer("/spec/matchConstraints/resourceRules").and_then(Value::as_array);
        for rule in rules.into_iter().flatten() {
            let (groups, versions) = (strings(rule, "apiGroups"), strings(rule, "apiVersions"));
            let resources: Vec<String> =
                strings(rule, "resources").into_iter().map(|r| r.split('/').next().unwrap_or("").to_string()).collect();
            if [&groups, &versions, &resources].iter().any(|l| l.is_empty() || l.iter().any(|x| x.contains('*'))) {
                continue;
            }
            for g in &groups {
                for v in &versions {
                    for r in &resources {
                        let Some(store) = self.stores.of_gvr(g, v, r) else {
                            continue;
                        };
                        let Some(schema) = Self::schema_of(&store) else { continue };
                        let gvk = format!("{g}/{v}, Kind={}", store.info.kind);
                        if !out.iter().any(|k| k.gvk == gvk) {
                            out.push(Kind { gvk, schema });
                        }
                        if out.len() == MAX_TYPES {
                            return out;
                        }
                    }
                }
            }
        }
        out.sort_by(|a, b| a.gvk.cmp(&b.gvk));
        out
    }

    /// Upstream's TypeChecker.Check: the expression warnings of a policy.
    pub fn check(&self, policy: &Value) -> Vec<Value> {
        let kinds = self.kinds(policy);
        if kinds.is_empty() {
            return Vec::new();
        }
        let params = policy.pointer("/spec/paramKind").and_then(|pk| {
            let api_version = pk.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let store = self.stores.of_gvk(group, version, pk.get("kind").and_then(Value::as_str).unwrap_or(""))?;
            Self::schema_of(&store)
        });
        let resolve = |name: &str| definitions().get(name);
        let mut warnings = Vec::new();
        let validations = policy.pointer("/spec/validations").and_then(Value::as_array);
        for (i, v) in validations.into_iter().flatten().enumerate() {
            for field in ["expression", "messageExpression"] {
                let Some(src) = v.get(field).and_then(Value::as_str).filter(|s| !s.is_empty()) else { continue };
                let Ok(program) = cel_k8s::compile(src) else { continue };
                let results: Vec<String> = kinds
                    .iter()
                    .filter_map(|k| {
                        let mut vars = vec![("object", k.schema), ("oldObject", k.schema)];
                        vars.extend(params.map(|p| ("params", p)));
                        let issues = cel_k8s::fields::undefined_fields(&program, &vars, &resolve);
                        (!issues.is_empty()).then(|| format!("{}: compilation failed: {}\n", k.gvk, issues.join("\n")))
                    })
                    .collect();
                if !results.is_empty() {
                    warnings.push(json!({
                        "fieldRef": format!("spec.validations[{i}].{field}"),
                        "warning": results.join("\n"),
                    }));
                }
            }
        }
        warnings
    }

    /// Writes status.observedGeneration and status.typeChecking for a policy
    /// whose generation the status has not seen yet.
    pub fn observe(self: &Arc<Self>, policy: &Value) {
        let generation = policy.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
        if policy.pointer("/status/observedGeneration").and_then(Value::as_i64) == Some(generation) {
            return;
        }
        let warnings = self.check(policy);
        let name = generic_server::meta::name(policy).to_string();
        let me = self.clone();
        tokio::spawn(async move {
            let opts = WriteOptions::default();
            let write = me.policies.update_with("", &name, Some(&Subresource::Status), &opts, |cur| {
                let mut p = cur.cloned().ok_or_else(|| {
                    generic_server::status::StatusError::not_found(super::GROUP, "validatingadmissionpolicies", &name)
                })?;
                if p.pointer("/metadata/generation").and_then(Value::as_i64) != Some(generation) {
                    // A newer generation is on its way; its own event writes.
                    return Ok(p);
                }
                p["status"] =
                    json!({"observedGeneration": generation, "typeChecking": {"expressionWarnings": warnings}});
                if warnings.is_empty() {
                    p["status"]["typeChecking"] = json!({});
                }
                Ok(p)
            });
            if let Err(e) = write.await {
                tracing::debug!(policy = %name, error = %e, "writing the policy's typeChecking status");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_definitions_resolve_fields() {
        let pod = definitions().get("io.k8s.api.core.v1.Pod").expect("Pod");
        let resolve = |name: &str| definitions().get(name);
        let p = cel_k8s::compile("object.spec.containers.all(c, c.image != '') && object.spec.replica > 0")
            .expect("compiles");
        let issues = cel_k8s::fields::undefined_fields(&p, &[("object", pod)], &resolve);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(issues[0].contains("undefined field 'replica'"), "{issues:?}");
    }
}
