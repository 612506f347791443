//! RBAC policy rules: whether one allows a request (upstream's RuleAllows and
//! pkg/apis/rbac/v1 evaluation helpers), whether a set of rules covers
//! another (component-helpers' Covers, for the escalation check), and the
//! compact form upstream's escalation error lists missing rules in.

use std::collections::HashMap;

use serde_json::Value;

use generic_server::authz::Attributes;

const ALL: &str = "*";

/// One rule of a Role or ClusterRole.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn has(set: &[String], s: &str) -> bool {
    set.iter().any(|x| x == s)
}

fn has_all(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| has(set, w))
}

/// Go's `%q` of a []string: `["a" "b"]`.
pub fn go_quoted(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", q.join(" "))
}

impl PolicyRule {
    pub fn from_json(v: &Value) -> Self {
        PolicyRule {
            verbs: strings(v, "verbs"),
            api_groups: strings(v, "apiGroups"),
            resources: strings(v, "resources"),
            resource_names: strings(v, "resourceNames"),
            non_resource_urls: strings(v, "nonResourceURLs"),
        }
    }

    /// The rules of a role object.
    pub fn all_of(role: &Value) -> Vec<PolicyRule> {
        role.get("rules").and_then(Value::as_array).map(|r| r.iter().map(Self::from_json).collect()).unwrap_or_default()
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == ALL || v == verb)
    }

    /// `resource` is "pods" or "pods/log"; a `*/log` rule matches any
    /// resource's log subresource.
    fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        self.resources.iter().any(|r| {
            r == ALL
                || r == resource
                || (!subresource.is_empty() && r.strip_prefix("*/").is_some_and(|sub| sub == subresource))
        })
    }

    fn url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|u| {
            u == ALL
                || u == path
                || u.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
        })
    }

    /// Upstream's RuleAllows.
    pub fn allows(&self, a: &Attributes<'_>) -> bool {
        if !self.verb_matches(a.verb) {
            return false;
        }
        if !a.resource_request {
            return self.url_matches(a.path);
        }
        let combined;
        let resource = if a.subresource.is_empty() {
            a.resource
        } else {
            combined = format!("{}/{}", a.resource, a.subresource);
            &combined
        };
        self.api_groups.iter().any(|g| g == ALL || g == a.api_group)
            && self.resource_matches(resource, a.subresource)
            && (self.resource_names.is_empty() || has(&self.resource_names, a.name))
    }

    /// Upstream's CompactString, the form the escalation error lists.
    pub fn compact_string(&self) -> String {
        let mut parts = Vec::new();
        for (label, items) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !items.is_empty() {
                parts.push(format!("{label}:{}", go_quoted(items)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }

    /// Upstream's BreakdownRule: one rule per group, resource, verb and name,
    /// and per URL and verb.
    fn breakdown(&self) -> Vec<PolicyRule> {
        let one = |s: &String| vec![s.clone()];
        let mut out = Vec::new();
        for g in &self.api_groups {
            for r in &self.resources {
                for v in &self.verbs {
                    let base =
                        PolicyRule { api_groups: one(g), resources: one(r), verbs: one(v), ..Default::default() };
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
        for u in &self.non_resource_urls {
            for v in &self.verbs {
                out.push(PolicyRule { non_resource_urls: one(u), verbs: one(v), ..Default::default() });
            }
        }
        out
    }

    /// Upstream's ruleCovers: whether this rule grants all of `sub`, a rule
    /// of at most one verb, resource and name.
    fn covers(&self, sub: &PolicyRule) -> bool {
        let verbs = has(&self.verbs, ALL) || has_all(&self.verbs, &sub.verbs);
        let groups = has(&self.api_groups, ALL) || has_all(&self.api_groups, &sub.api_groups);
        let resources = has(&self.resources, ALL)
            || has_all(&self.resources, &sub.resources)
            || sub.resources.iter().all(|r| {
                has(&self.resources, r)
                    || r.split_once('/').is_some_and(|(_, subres)| has(&self.resources, &format!("*/{subres}")))
            });
        let urls = sub.non_resource_urls.iter().all(|p| {
            self.non_resource_urls
                .iter()
                .any(|o| o == p || o.strip_suffix('*').is_some_and(|pre| p.starts_with(pre.trim_end_matches('*'))))
        });
        let names = if sub.resource_names.is_empty() {
            self.resource_names.is_empty()
        } else {
            self.resource_names.is_empty() || has_all(&self.resource_names, &sub.resource_names)
        };
        verbs && groups && resources && urls && names
    }
}

/// The parts of `servant` that no rule of `owner` grants (upstream's Covers).
pub fn uncovered(owner: &[PolicyRule], servant: &[PolicyRule]) -> Vec<PolicyRule> {
    servant.iter().flat_map(PolicyRule::breakdown).filter(|sub| !owner.iter().any(|o| o.covers(sub))).collect()
}

/// Upstream's CompactRules: rules naming one group, one resource and at most
/// one name, differing only in verbs, become one rule with all the verbs.
pub fn compact(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    let mut simple: HashMap<(String, String, Option<String>), usize> = HashMap::new();
    let mut merged: Vec<PolicyRule> = Vec::new();
    for rule in rules {
        let is_simple = rule.resource_names.len() <= 1
            && rule.non_resource_urls.is_empty()
            && rule.api_groups.len() == 1
            && rule.resources.len() == 1;
        if !is_simple {
            out.push(rule);
            continue;
        }
        let key = (rule.api_groups[0].clone(), rule.resources[0].clone(), rule.resource_names.first().cloned());
        match simple.get(&key) {
            Some(&i) => merged[i].verbs.extend(rule.verbs),
            None => {
                simple.insert(key, merged.len());
                merged.push(rule);
            }
        }
    }
    out.extend(merged);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use generic_server::authn::UserInfo;
    use serde_json::json;

    fn rule(v: Value) -> PolicyRule {
        PolicyRule::from_json(&v)
    }

    fn attrs<'a>(
        u: &'a UserInfo,
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        sub: &'a str,
        name: &'a str,
    ) -> Attributes<'a> {
        let mut a = Attributes::resource(u, verb, group, resource, "ns", name);
        a.subresource = sub;
        a
    }

    #[test]
    fn resource_rules_match_as_upstream() {
        let u = UserInfo::default();
        let pods = rule(json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]}));
        assert!(pods.allows(&attrs(&u, "get", "", "pods", "", "p")));
        assert!(pods.allows(&attrs(&u, "list", "", "pods", "", "")));
        assert!(pods.allows(&attrs(&u, "get", "", "pods", "log", "p")));
        assert!(!pods.allows(&attrs(&u, "get", "", "pods", "exec", "p")));
        assert!(!pods.allows(&attrs(&u, "watch", "", "pods", "", "")));
        assert!(!pods.allows(&attrs(&u, "get", "apps", "pods", "", "")));
        let scale = rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*/scale"]}));
        assert!(scale.allows(&attrs(&u, "update", "apps", "deployments", "scale", "d")));
        assert!(!scale.allows(&attrs(&u, "update", "apps", "deployments", "", "d")));
        assert!(!scale.allows(&attrs(&u, "update", "apps", "deployments", "status", "d")));
        let named =
            rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"]}));
        assert!(named.allows(&attrs(&u, "get", "", "secrets", "", "a")));
        assert!(!named.allows(&attrs(&u, "get", "", "secrets", "", "b")));
        // A named rule never allows a list, whose name is empty.
        assert!(!named.allows(&attrs(&u, "list", "", "secrets", "", "")));
    }

    #[test]
    fn non_resource_urls_match_with_a_trailing_star() {
        let u = UserInfo::default();
        let r = rule(json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"]}));
        assert!(r.allows(&Attributes::non_resource(&u, "get", "/healthz")));
        assert!(!r.allows(&Attributes::non_resource(&u, "get", "/healthz/ping")));
        assert!(r.allows(&Attributes::non_resource(&u, "get", "/apis/apps/v1")));
        assert!(!r.allows(&Attributes::non_resource(&u, "get", "/apis")));
        assert!(!r.allows(&Attributes::non_resource(&u, "post", "/healthz")));
        // A resource rule never allows a URL, nor a URL rule a resource.
        assert!(!r.allows(&attrs(&u, "get", "", "healthz", "", "")));
    }

    #[test]
    fn coverage_and_the_missing_rules_as_upstream_lists_them() {
        let owner = vec![
            rule(json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "*/log"]})),
            rule(json!({"verbs": ["get"], "nonResourceURLs": ["/logs/*"]})),
        ];
        let wanted = vec![
            rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods", "pods/log"]})),
            rule(json!({"verbs": ["get"], "nonResourceURLs": ["/logs/a"]})),
        ];
        assert!(uncovered(&owner, &wanted).is_empty());
        let more = vec![rule(
            json!({"verbs": ["get", "delete", "create"], "apiGroups": [""], "resources": ["pods", "secrets"], "resourceNames": ["x"]}),
        )];
        let missing: Vec<String> = compact(uncovered(&owner, &more)).iter().map(PolicyRule::compact_string).collect();
        assert_eq!(
            missing,
            [
                r#"{APIGroups:[""], Resources:["pods"], ResourceNames:["x"], Verbs:["delete" "create"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], ResourceNames:["x"], Verbs:["get" "delete" "create"]}"#,
            ]
        );
        // A named owner rule does not cover the unnamed.
        let named =
            vec![rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]}))];
        let all_pods = vec![rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}))];
        assert_eq!(uncovered(&named, &all_pods).len(), 1);
        assert!(uncovered(&all_pods, &named).is_empty());
    }
}
