//! PolicyRules as upstream compares them (pkg/registry/rbac/validation's
//! Covers): a rule is broken down into single (group, resource, verb, name)
//! or (URL, verb) tuples, and a set of rules covers another when every tuple
//! of the other is allowed by one rule of the set. Reconciliation adds the
//! tuples a role lacks; escalation checks ask the same question.

use serde_json::{json, Map, Value};

/// One rbac/v1 PolicyRule; absent lists are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

const FIELDS: [&str; 5] = ["verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs"];

fn strings(rule: &Value, key: &str) -> Vec<String> {
    rule.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(String::from).collect()
}

impl PolicyRule {
    pub fn from_json(rule: &Value) -> PolicyRule {
        PolicyRule {
            verbs: strings(rule, "verbs"),
            api_groups: strings(rule, "apiGroups"),
            resources: strings(rule, "resources"),
            resource_names: strings(rule, "resourceNames"),
            non_resource_urls: strings(rule, "nonResourceURLs"),
        }
    }

    /// The rule in its JSON form, empty lists left out (as Go's omitempty).
    pub fn to_json(&self) -> Value {
        let lists = [&self.verbs, &self.api_groups, &self.resources, &self.resource_names, &self.non_resource_urls];
        let mut out = Map::new();
        for (key, list) in FIELDS.iter().zip(lists) {
            if !list.is_empty() {
                out.insert((*key).into(), json!(list));
            }
        }
        Value::Object(out)
    }

    /// Upstream's breakdownRule: one rule per group x resource x verb (x
    /// name), then one per URL x verb.
    pub fn breakdown(&self) -> Vec<PolicyRule> {
        let one = |s: &String| vec![s.clone()];
        let mut out = Vec::new();
        for group in &self.api_groups {
            for resource in &self.resources {
                for verb in &self.verbs {
                    let base = PolicyRule {
                        verbs: one(verb),
                        api_groups: one(group),
                        resources: one(resource),
                        ..PolicyRule::default()
                    };
                    if self.resource_names.is_empty() {
                        out.push(base);
                    } else {
                        out.extend(
                            self.resource_names.iter().map(|n| PolicyRule { resource_names: one(n), ..base.clone() }),
                        );
                    }
                }
            }
        }
        for url in &self.non_resource_urls {
            for verb in &self.verbs {
                out.push(PolicyRule { verbs: one(verb), non_resource_urls: one(url), ..PolicyRule::default() });
            }
        }
        out
    }

    /// Upstream's ruleCovers: whether this rule allows everything `sub` (a
    /// broken-down rule) does.
    fn covers(&self, sub: &PolicyRule) -> bool {
        let has = |set: &[String], s: &str| set.iter().any(|x| x == s);
        let has_all = |set: &[String], wanted: &[String]| wanted.iter().all(|w| has(set, w));
        let verbs = has(&self.verbs, "*") || has_all(&self.verbs, &sub.verbs);
        let groups = has(&self.api_groups, "*") || has_all(&self.api_groups, &sub.api_groups);
        let resources = has(&self.resources, "*") || has_all(&self.resources, &sub.resources);
        let urls =
            sub.non_resource_urls.iter().all(|path| self.non_resource_urls.iter().any(|owner| url_covers(owner, path)));
        let names = self.resource_names.is_empty()
            || (!sub.resource_names.is_empty() && has_all(&self.resource_names, &sub.resource_names));
        verbs && groups && resources && urls && names
    }
}

/// A URL rule covers its own path, and a trailing `*` every path it prefixes.
fn url_covers(owner: &str, path: &str) -> bool {
    owner == path || (owner.ends_with('*') && path.starts_with(owner.trim_end_matches('*')))
}

/// Upstream's Covers: the broken-down tuples of `servant` no rule of `owner`
/// covers (empty when `owner` covers them all).
pub fn uncovered(owner: &[PolicyRule], servant: &[PolicyRule]) -> Vec<PolicyRule> {
    servant.iter().flat_map(PolicyRule::breakdown).filter(|sub| !owner.iter().any(|o| o.covers(sub))).collect()
}

/// The rules of a role object (`rules`, absent or null as none).
pub fn rules_of(role: &Value) -> Vec<PolicyRule> {
    role.get("rules").and_then(Value::as_array).into_iter().flatten().map(PolicyRule::from_json).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(v: Value) -> PolicyRule {
        PolicyRule::from_json(&v)
    }

    #[test]
    fn breakdown_is_per_tuple() {
        let r = rule(
            json!({"apiGroups": ["", "apps"], "resources": ["pods"], "verbs": ["get", "list"], "resourceNames": ["a"]}),
        );
        let parts = r.breakdown();
        assert_eq!(parts.len(), 4);
        assert_eq!(
            parts[0].to_json(),
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]})
        );
        let urls = rule(json!({"nonResourceURLs": ["/a", "/b"], "verbs": ["get"]})).breakdown();
        assert_eq!(urls[1].to_json(), json!({"verbs": ["get"], "nonResourceURLs": ["/b"]}));
    }

    #[test]
    fn covering_follows_upstream() {
        let owner = [
            rule(json!({"apiGroups": ["*"], "resources": ["pods"], "verbs": ["*"]})),
            rule(json!({"nonResourceURLs": ["/healthz/*"], "verbs": ["get"]})),
            rule(json!({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s"], "verbs": ["get"]})),
        ];
        let covered = [
            rule(json!({"apiGroups": ["apps", ""], "resources": ["pods"], "verbs": ["get", "delete"]})),
            rule(json!({"nonResourceURLs": ["/healthz/etcd"], "verbs": ["get"]})),
            rule(json!({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s"], "verbs": ["get"]})),
        ];
        assert!(uncovered(&owner, &covered).is_empty());
        let not = [
            // A named grant does not cover every name.
            rule(json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})),
            rule(json!({"nonResourceURLs": ["/healthz"], "verbs": ["get"]})),
            rule(json!({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]})),
        ];
        assert_eq!(uncovered(&owner, &not).len(), 3);
    }
}
