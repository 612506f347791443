//! PolicyRules as upstream compares them (pkg/registry/rbac/validation's
//! Covers): a rule is broken down into single (group, resource, verb, name)
//! or (URL, verb) tuples, and a set of rules covers another when every tuple
//! of the other is allowed by one rule of the set. Reconciliation adds the
//! tuples a role lacks; escalation checks ask the same question and list
//! the missing tuples [`compact`]ed. A rule also decides a request
//! ([`PolicyRule::allows`], upstream's RuleAllows and pkg/apis/rbac/v1's
//! evaluation helpers).

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use generic_server::authz::Attributes;
use generic_server::status::go_quoted;

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

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
    }

    /// `resource` is "pods" or "pods/log"; a `*/log` rule matches any
    /// resource's log subresource.
    fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        self.resources.iter().any(|r| {
            r == "*"
                || r == resource
                || (!subresource.is_empty() && r.strip_prefix("*/").is_some_and(|sub| sub == subresource))
        })
    }

    fn url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|u| {
            u == "*"
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
        self.api_groups.iter().any(|g| g == "*" || g == a.api_group)
            && self.resource_matches(resource, a.subresource)
            && (self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == a.name))
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
        // A `*/scale` rule covers every resource's scale subresource.
        let resources = has(&self.resources, "*")
            || sub.resources.iter().all(|r| {
                has(&self.resources, r)
                    || r.split_once('/').is_some_and(|(_, subres)| has(&self.resources, &format!("*/{subres}")))
            });
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
