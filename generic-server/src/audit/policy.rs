//! The audit policy (audit.k8s.io/v1 `Policy`, `--audit-policy-file`): loaded
//! and validated as upstream's policy reader, and evaluated as its checker:
//! rules in order, the first that matches decides the level; no match is
//! level None.

use serde::Deserialize;
use serde_json::Value;

use crate::authn::UserInfo;
use crate::request_info::RequestInfo;
use crate::status::Cause;

/// How much of a request is recorded, weakest first (the order matters: a
/// level "less than" another records less).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

const LEVELS: &[&str] = &["None", "Metadata", "Request", "RequestResponse"];

impl Level {
    pub fn name(self) -> &'static str {
        LEVELS[self as usize]
    }

    fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "None" => Level::None,
            "Metadata" => Level::Metadata,
            "Request" => Level::Request,
            "RequestResponse" => Level::RequestResponse,
            _ => return None,
        })
    }
}

/// When in a request's life an event is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}

const STAGES: &[&str] = &["RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"];

impl Stage {
    fn parse(s: &str) -> Option<Stage> {
        Some(match s {
            "RequestReceived" => Stage::RequestReceived,
            "ResponseStarted" => Stage::ResponseStarted,
            "ResponseComplete" => Stage::ResponseComplete,
            "Panic" => Stage::Panic,
            _ => return None,
        })
    }
}

/// What the policy decided for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestAuditConfig {
    pub level: Level,
    pub omit_stages: Vec<Stage>,
    pub omit_managed_fields: bool,
}

/// The file's form (audit.k8s.io/v1 Policy); unknown fields are ignored as
/// upstream's non-strict decoder does.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
struct PolicyDoc {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    rules: Vec<RuleDoc>,
    #[serde(default)]
    omit_stages: Vec<String>,
    #[serde(default)]
    omit_managed_fields: bool,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
struct RuleDoc {
    #[serde(default)]
    level: String,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    #[serde(default)]
    omit_stages: Vec<String>,
    omit_managed_fields: Option<bool>,
}

/// The resources of one API group a rule names ("" is the core group).
#[derive(Deserialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GroupResources {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub level: Level,
    pub users: Vec<String>,
    pub user_groups: Vec<String>,
    pub verbs: Vec<String>,
    pub resources: Vec<GroupResources>,
    pub namespaces: Vec<String>,
    pub non_resource_urls: Vec<String>,
    pub omit_stages: Vec<Stage>,
    pub omit_managed_fields: Option<bool>,
}

/// A loaded, valid policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub omit_stages: Vec<Stage>,
    pub omit_managed_fields: bool,
}

/// What a request is, as far as the policy asks.
pub struct Attributes<'a> {
    pub user: Option<&'a UserInfo>,
    pub info: &'a RequestInfo,
}

impl Policy {
    /// Reads `--audit-policy-file`; errors read as upstream's
    /// (`failed decoding: ...: from file PATH`, the field errors aggregated).
    pub fn load(path: &std::path::Path) -> Result<Policy, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("failed to read file path {:?}: {e}", path.display()))?;
        Policy::from_bytes(&bytes).map_err(|e| format!("{e}: from file {}", path.display()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Policy, String> {
        let doc: PolicyDoc = if bytes.iter().all(u8::is_ascii_whitespace) {
            PolicyDoc::default()
        } else {
            serde_yaml::from_slice(bytes).map_err(|e| format!("failed decoding: {e}"))?
        };
        let kind = doc.kind.clone().unwrap_or_default();
        if kind.is_empty() {
            return Err(format!("failed decoding: Object 'Kind' is missing in '{}'", String::from_utf8_lossy(bytes)));
        }
        let api_version = doc.api_version.clone().unwrap_or_default();
        if api_version != "audit.k8s.io/v1" || kind != "Policy" {
            return Err(format!(
                "failed decoding: no kind {kind:?} is registered for version {api_version:?} in scheme \
                 \"k8s.io/apiserver/pkg/audit/scheme.go:30\""
            ));
        }
        let mut errs = Vec::new();
        let omit_stages = stages(&doc.omit_stages, "omitStages", &mut errs);
        let rules: Vec<Rule> = doc.rules.iter().enumerate().map(|(i, r)| rule(r, i, &mut errs)).collect();
        match errs.as_slice() {
            [] => {}
            [one] => return Err(one.full_message()),
            many => {
                let all: Vec<String> = many.iter().map(Cause::full_message).collect();
                return Err(format!("[{}]", all.join(", ")));
            }
        }
        if rules.is_empty() {
            return Err("loaded illegal policy with 0 rules".into());
        }
        Ok(Policy { rules, omit_stages, omit_managed_fields: doc.omit_managed_fields })
    }

    /// The first matching rule's level, with the policy's omitted stages added
    /// to the rule's and the rule's omitManagedFields overriding the policy's.
    pub fn evaluate(&self, attrs: &Attributes) -> RequestAuditConfig {
        match self.rules.iter().find(|r| r.matches(attrs)) {
            Some(r) => {
                let mut omit_stages = r.omit_stages.clone();
                omit_stages.extend(self.omit_stages.iter().filter(|s| !r.omit_stages.contains(s)));
                RequestAuditConfig {
                    level: r.level,
                    omit_stages,
                    omit_managed_fields: r.omit_managed_fields.unwrap_or(self.omit_managed_fields),
                }
            }
            None => RequestAuditConfig {
                level: Level::None,
                omit_stages: self.omit_stages.clone(),
                omit_managed_fields: self.omit_managed_fields,
            },
        }
    }
}

fn stages(names: &[String], path: &str, errs: &mut Vec<Cause>) -> Vec<Stage> {
    let mut out = Vec::new();
    for (i, s) in names.iter().enumerate() {
        match Stage::parse(s) {
            Some(st) => out.push(st),
            None => errs.push(Cause::invalid(
                format!("{path}[{i}]"),
                &Value::String(s.clone()),
                &format!("allowed stages are {}", STAGES.join(",")),
            )),
        }
    }
    out
}

fn rule(r: &RuleDoc, i: usize, errs: &mut Vec<Cause>) -> Rule {
    let path = format!("rules[{i}]");
    let level = match r.level.as_str() {
        "" => {
            errs.push(Cause::required(format!("{path}.level"), ""));
            Level::None
        }
        l => Level::parse(l).unwrap_or_else(|| {
            errs.push(Cause::not_supported(format!("{path}.level"), &Value::String(l.into()), LEVELS));
            Level::None
        }),
    };
    for (j, url) in r.non_resource_urls.iter().enumerate() {
        if url == "*" {
            continue;
        }
        let field = format!("{path}.nonResourceURLs[{j}]");
        if !url.starts_with('/') {
            errs.push(Cause::invalid(
                &field,
                &Value::String(url.clone()),
                "non-resource URL rules must begin with a '/' character",
            ));
        }
        if url.len() > 1 && url[..url.len() - 1].contains('*') {
            errs.push(Cause::invalid(
                &field,
                &Value::String(url.clone()),
                "non-resource URL wildcards '*' must be the final character of the rule",
            ));
        }
    }
    for gr in &r.resources {
        if !gr.group.is_empty() {
            let msgs = crate::meta::dns1123_subdomain_problems(&gr.group);
            if !msgs.is_empty() {
                errs.push(Cause::invalid(
                    format!("{path}.resources.group"),
                    &Value::String(gr.group.clone()),
                    &msgs.join(","),
                ));
            }
        }
        if !gr.resource_names.is_empty() && gr.resources.is_empty() {
            errs.push(Cause::invalid(
                format!("{path}.resources.resourceNames"),
                &serde_json::json!(gr.resource_names),
                "using resourceNames requires at least one resource",
            ));
        }
    }
    let omit_stages = stages(&r.omit_stages, &format!("{path}.omitStages"), errs);
    if !r.non_resource_urls.is_empty() && (!r.resources.is_empty() || !r.namespaces.is_empty()) {
        errs.push(Cause::invalid(
            format!("{path}.nonResourceURLs"),
            &serde_json::json!(r.non_resource_urls),
            "rules cannot apply to both regular resources and non-resource URLs",
        ));
    }
    Rule {
        level,
        users: r.users.clone(),
        user_groups: r.user_groups.clone(),
        verbs: r.verbs.clone(),
        resources: r.resources.clone(),
        namespaces: r.namespaces.clone(),
        non_resource_urls: r.non_resource_urls.clone(),
        omit_stages,
        omit_managed_fields: r.omit_managed_fields,
    }
}

impl Rule {
    fn matches(&self, a: &Attributes) -> bool {
        if !self.users.is_empty() && !a.user.is_some_and(|u| self.users.contains(&u.name)) {
            return false;
        }
        if !self.user_groups.is_empty()
            && !a.user.is_some_and(|u| u.groups.iter().any(|g| self.user_groups.contains(g)))
        {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.iter().any(|v| *v == a.info.verb) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return self.matches_resource(a.info);
        }
        if !self.non_resource_urls.is_empty() {
            return !a.info.is_resource_request
                && self.non_resource_urls.iter().any(|spec| path_matches(&a.info.path, spec));
        }
        true
    }

    fn matches_resource(&self, info: &RequestInfo) -> bool {
        if !info.is_resource_request {
            return false;
        }
        // Cluster-scoped requests have the empty namespace, which a rule may name.
        if !self.namespaces.is_empty() && !self.namespaces.iter().any(|n| *n == info.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let combined = if info.subresource.is_empty() {
            info.resource.to_string()
        } else {
            format!("{}/{}", info.resource, info.subresource)
        };
        self.resources.iter().filter(|gr| gr.group == info.api_group).any(|gr| {
            if gr.resources.is_empty() {
                return true;
            }
            if !gr.resource_names.is_empty() && !gr.resource_names.iter().any(|n| *n == info.name) {
                return false;
            }
            gr.resources.iter().any(|res| {
                res == &combined
                    || res == "*"
                    || (!info.subresource.is_empty() && res.strip_prefix("*/") == Some(info.subresource.as_str()))
                    || res.strip_suffix("/*") == Some(info.resource.as_str())
            })
        })
    }
}

/// A non-resource URL rule: `*`, the exact path, or a prefix ending in `*`.
fn path_matches(path: &str, spec: &str) -> bool {
    spec == "*"
        || spec == path
        || spec.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> Policy {
        Policy::from_bytes(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn req(method: &str, path: &str) -> RequestInfo {
        let (p, q) = path.split_once('?').map(|(p, q)| (p, Some(q))).unwrap_or((path, None));
        crate::request_info::parse(&method.parse().expect("method"), p, q)
    }

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo { name: name.into(), groups: groups.iter().map(|g| g.to_string()).collect(), ..Default::default() }
    }

    fn level(p: &Policy, u: Option<&UserInfo>, method: &str, path: &str) -> Level {
        p.evaluate(&Attributes { user: u, info: &req(method, path) }).level
    }

    #[test]
    fn first_matching_rule_decides() {
        let p = policy(
            r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: ["system:kube-proxy"]
- level: RequestResponse
  userGroups: ["auditors"]
  verbs: ["create"]
- level: Request
  resources:
  - group: ""
    resources: ["pods/log", "configmaps"]
    resourceNames: ["watched"]
- level: Metadata
  resources:
  - group: "apps"
  namespaces: ["kube-system", ""]
- level: Request
  resources:
  - group: ""
    resources: ["*/status", "secrets/*"]
- level: Metadata
  nonResourceURLs: ["/healthz*", "/version"]
"#,
        );
        let a = user("alice", &["auditors"]);
        let proxy = user("system:kube-proxy", &["auditors"]);
        assert_eq!(level(&p, Some(&proxy), "POST", "/api/v1/namespaces/d/configmaps"), Level::None);
        assert_eq!(level(&p, Some(&a), "POST", "/api/v1/namespaces/d/configmaps"), Level::RequestResponse);
        assert_eq!(level(&p, Some(&a), "GET", "/api/v1/namespaces/d/configmaps/watched"), Level::Request);
        assert_eq!(level(&p, Some(&a), "GET", "/api/v1/namespaces/d/configmaps/other"), Level::None);
        assert_eq!(level(&p, Some(&a), "GET", "/api/v1/namespaces/d/pods/watched/log"), Level::Request);
        assert_eq!(level(&p, Some(&a), "GET", "/api/v1/namespaces/d/pods/watched"), Level::None);
        // Namespaces: "" is a cluster-scoped request.
        assert_eq!(level(&p, None, "GET", "/apis/apps/v1/namespaces/kube-system/deployments"), Level::Metadata);
        assert_eq!(level(&p, None, "GET", "/apis/apps/v1/namespaces/default/deployments"), Level::None);
        assert_eq!(level(&p, None, "GET", "/apis/apps/v1/deployments"), Level::Metadata);
        // "*/sub" and "res/*" (which, as upstream's, takes the resource itself too).
        assert_eq!(level(&p, None, "PUT", "/api/v1/namespaces/d/pods/x/status"), Level::Request);
        assert_eq!(level(&p, None, "GET", "/api/v1/namespaces/d/services/x/status"), Level::Request);
        assert_eq!(level(&p, None, "GET", "/api/v1/namespaces/d/services/x"), Level::None);
        assert_eq!(level(&p, None, "GET", "/api/v1/namespaces/d/secrets/x"), Level::Request);
        assert_eq!(level(&p, None, "GET", "/api/v1/namespaces/d/secrets/x/anything"), Level::Request);
        // Non-resource URLs never match resource rules and vice versa.
        assert_eq!(level(&p, None, "GET", "/healthz/etcd"), Level::Metadata);
        assert_eq!(level(&p, None, "GET", "/version"), Level::Metadata);
        assert_eq!(level(&p, None, "GET", "/versions"), Level::None);
        // The policy's omitted stages go with every decision.
        let c = p.evaluate(&Attributes { user: None, info: &req("GET", "/version") });
        assert_eq!(c.omit_stages, vec![Stage::RequestReceived]);
    }

    #[test]
    fn omit_stages_and_managed_fields_merge() {
        let p = policy(
            r#"{"apiVersion":"audit.k8s.io/v1","kind":"Policy","omitStages":["RequestReceived"],"omitManagedFields":true,
                "rules":[{"level":"Metadata","verbs":["get"],"omitStages":["ResponseStarted"],"omitManagedFields":false},
                         {"level":"Request","nonResourceURLs":["*"]}]}"#,
        );
        let c = p.evaluate(&Attributes { user: None, info: &req("GET", "/api/v1/namespaces/a/pods/b") });
        assert_eq!(c.omit_stages, vec![Stage::ResponseStarted, Stage::RequestReceived]);
        assert!(!c.omit_managed_fields);
        let c = p.evaluate(&Attributes { user: None, info: &req("POST", "/anything/at/all") });
        assert_eq!(c.level, Level::Request);
        assert!(c.omit_managed_fields);
        // No rule matched: None.
        assert_eq!(level(&p, None, "POST", "/api/v1/namespaces/a/pods"), Level::None);
    }

    #[test]
    fn invalid_policies_are_refused_with_upstreams_words() {
        let err = |s: &str| Policy::from_bytes(s.as_bytes()).expect_err("accepted");
        assert_eq!(err("apiVersion: audit.k8s.io/v1\nkind: Policy\n"), "loaded illegal policy with 0 rules");
        assert_eq!(
            err("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n"),
            "rules[0].level: Unsupported value: \"Everything\": supported values: \"None\", \"Metadata\", \"Request\", \"RequestResponse\""
        );
        assert_eq!(
            err("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n- {}\n"),
            "rules[1].level: Required value"
        );
        let e = err("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  nonResourceURLs: [\"a*b\"]\n  omitStages: [Later]\n");
        assert!(e.starts_with('['), "{e}");
        assert!(e.contains("rules[0].nonResourceURLs[0]: Invalid value: \"a*b\": non-resource URL rules must begin with a '/' character"), "{e}");
        assert!(e.contains("non-resource URL wildcards '*' must be the final character of the rule"), "{e}");
        assert!(e.contains("rules[0].omitStages[0]: Invalid value: \"Later\": allowed stages are RequestReceived,ResponseStarted,ResponseComplete,Panic"), "{e}");
        let e = err("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  nonResourceURLs: [\"/a\"]\n  namespaces: [x]\n");
        assert!(e.contains("rules cannot apply to both regular resources and non-resource URLs"), "{e}");
        let e = err("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  resources: [{group: \"Bad_Group\"}, {resourceNames: [x]}]\n");
        assert!(e.contains("rules[0].resources.group: Invalid value: \"Bad_Group\""), "{e}");
        assert!(e.contains("using resourceNames requires at least one resource"), "{e}");
        assert!(err("apiVersion: audit.k8s.io/v2\nkind: Policy\nrules: []\n")
            .contains("no kind \"Policy\" is registered for version \"audit.k8s.io/v2\""));
        assert!(err("rules: []\n").contains("Object 'Kind' is missing"));
        assert!(err("kind: Policy\nrules: [").starts_with("failed decoding: "));
    }
}
