//! Authorization: who may do what (upstream's k8s.io/apiserver
//! pkg/authorization). An [`Authorizer`] decides [`Attributes`] (the user and
//! what the request asks, taken from its RequestInfo) as Allow, Deny or no
//! opinion, with a reason; a [`Union`] asks its members in order and the first
//! Allow or Deny wins, as `--authorization-mode` lists them. The members every
//! server knows live here (AlwaysAllow, AlwaysDeny, the privileged group);
//! RBAC is kube-core-server's, as it reads the rbac kinds.
//!
//! A denial is upstream's 403 Forbidden Status ([`Attributes::forbidden`]);
//! [`check_request`] is what the authorization filter runs.

use std::sync::{Arc, OnceLock};

use crate::authn::UserInfo;
use crate::body;
use crate::handler::{Request, Response};
use crate::request_info::RequestInfo;
use crate::status::StatusError;

/// Members of this group may do anything (upstream's SystemPrivilegedGroup):
/// the server's own loopback clients and the admin kubeconfig are in it.
pub const PRIVILEGED_GROUP: &str = "system:masters";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    NoOpinion,
}

/// An authorizer's answer: its decision, why (shown to a denied client and
/// in access reviews), and an evaluation error that did not stop it deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    pub reason: String,
    pub error: Option<String>,
}

impl Verdict {
    pub fn allow(reason: impl Into<String>) -> Self {
        Verdict { decision: Decision::Allow, reason: reason.into(), error: None }
    }
    pub fn no_opinion(reason: impl Into<String>) -> Self {
        Verdict { decision: Decision::NoOpinion, reason: reason.into(), error: None }
    }
    pub fn allowed(&self) -> bool {
        self.decision == Decision::Allow
    }
}

/// What is being asked, by whom (upstream's authorizer.AttributesRecord).
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    pub user: &'a UserInfo,
    pub verb: &'a str,
    pub namespace: &'a str,
    pub api_group: &'a str,
    pub api_version: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub name: &'a str,
    /// The URL path; what a non-resource request is authorized by.
    pub path: &'a str,
    pub resource_request: bool,
    /// The raw field selector of a list, watch or deletecollection ("" for
    /// none); upstream 1.33 hands its requirements to authorizers.
    pub field_selector: &'a str,
    /// Whether the reason of an allow is read (an audit log records it, an
    /// access review returns it). When not, an authorizer may leave it
    /// empty: wording it cost an RBAC decision as much as deciding.
    pub explain: bool,
}

impl<'a> Attributes<'a> {
    /// The attributes of a request (upstream's GetAuthorizerAttributes). A
    /// non-resource request is its verb and path only: upstream's RequestInfo
    /// names no group for `/apis/apps/v1`, so neither do these.
    pub fn of_request(user: &'a UserInfo, info: &'a RequestInfo) -> Self {
        let mut a = Attributes::non_resource(user, &info.verb, &info.path);
        if info.is_resource_request {
            a.resource_request = true;
            a.namespace = &info.namespace;
            a.api_group = &info.api_group;
            a.api_version = &info.api_version;
            a.resource = &info.resource;
            a.subresource = &info.subresource;
            a.name = &info.name;
            a.field_selector = &info.field_selector;
        }
        a
    }

    pub fn non_resource(user: &'a UserInfo, verb: &'a str, path: &'a str) -> Self {
        Attributes {
            user,
            verb,
            namespace: "",
            api_group: "",
            api_version: "",
            resource: "",
            subresource: "",
            name: "",
            path,
            resource_request: false,
            field_selector: "",
            explain: true,
        }
    }

    /// A resource check the server makes itself (impersonate, bind, escalate).
    pub fn resource(
        user: &'a UserInfo,
        verb: &'a str,
        api_group: &'a str,
        resource: &'a str,
        namespace: &'a str,
        name: &'a str,
    ) -> Self {
        Attributes {
            resource_request: true,
            namespace,
            api_group,
            resource,
            name,
            ..Attributes::non_resource(user, verb, "")
        }
    }

    /// Upstream's forbiddenMessage: who cannot do what, where.
    pub fn forbidden_message(&self) -> String {
        let user = &self.user.name;
        if !self.resource_request {
            return format!("User {user:?} cannot {} path {:?}", self.verb, self.path);
        }
        let resource = if self.subresource.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        let scope = if self.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", self.namespace)
        };
        format!("User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}", self.verb, self.api_group)
    }

    /// Upstream's responsewriters.Forbidden: a 403 Status naming the
    /// resource, with the authorizer's reason after the message.
    pub fn forbidden(&self, reason: &str) -> StatusError {
        let mut why = self.forbidden_message();
        if !reason.is_empty() {
            why = format!("{why}: {reason}");
        }
        StatusError::forbidden(self.api_group, self.resource, self.name, &why)
    }
}

/// A rule an authorizer grants, serialized as a rules review lists it
/// (authorization/v1 ResourceRule, empty lists omitted).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRule {
    pub verbs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
}

/// authorization/v1 NonResourceRule.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct NonResourceRule {
    pub verbs: Vec<String>,
    #[serde(rename = "nonResourceURLs", skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

/// What a user may do in a namespace (upstream's RuleResolver.RulesFor).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules {
    pub resource: Vec<ResourceRule>,
    pub non_resource: Vec<NonResourceRule>,
    /// The authorizer cannot list everything it would allow.
    pub incomplete: bool,
    pub error: Option<String>,
}

pub trait Authorizer: Send + Sync {
    fn authorize(&self, attrs: &Attributes<'_>) -> Verdict;

    /// The rules `user` holds in `namespace`; an authorizer that cannot list
    /// them lists none (upstream's privileged-group authorizer is no rule
    /// resolver at all).
    fn rules_for(&self, _user: &UserInfo, _namespace: &str) -> Rules {
        Rules::default()
    }
}

/// Allows everything (`--authorization-mode=AlwaysAllow`).
pub struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn authorize(&self, _: &Attributes<'_>) -> Verdict {
        Verdict::allow("")
    }

    fn rules_for(&self, _: &UserInfo, _: &str) -> Rules {
        let all = || vec!["*".to_string()];
        Rules {
            resource: vec![ResourceRule {
                verbs: all(),
                api_groups: all(),
                resources: all(),
                resource_names: Vec::new(),
            }],
            non_resource: vec![NonResourceRule { verbs: all(), urls: all() }],
            incomplete: false,
            error: None,
        }
    }
}

/// Has no opinion on anything, with upstream's reason
/// (`--authorization-mode=AlwaysDeny`).
pub struct AlwaysDeny;

impl Authorizer for AlwaysDeny {
    fn authorize(&self, _: &Attributes<'_>) -> Verdict {
        Verdict::no_opinion("Everything is forbidden.")
    }
}

/// Allows members of [`PRIVILEGED_GROUP`]; first in every union, as upstream.
pub struct PrivilegedGroup;

impl Authorizer for PrivilegedGroup {
    fn authorize(&self, attrs: &Attributes<'_>) -> Verdict {
        if attrs.user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
            Verdict::allow("")
        } else {
            Verdict::no_opinion("")
        }
    }
}

/// Upstream's union authorizer and rule resolver.
pub struct Union(pub Vec<Arc<dyn Authorizer>>);

impl Authorizer for Union {
    fn authorize(&self, attrs: &Attributes<'_>) -> Verdict {
        let (mut reasons, mut errors) = (Vec::new(), Vec::new());
        for a in &self.0 {
            let v = a.authorize(attrs);
            if v.decision != Decision::NoOpinion {
                return v;
            }
            if !v.reason.is_empty() {
                reasons.push(v.reason);
            }
            errors.extend(v.error);
        }
        Verdict { decision: Decision::NoOpinion, reason: reasons.join("\n"), error: aggregate(&errors) }
    }

    fn rules_for(&self, user: &UserInfo, namespace: &str) -> Rules {
        let mut out = Rules::default();
        let mut errors = Vec::new();
        for a in &self.0 {
            let r = a.rules_for(user, namespace);
            out.resource.extend(r.resource);
            out.non_resource.extend(r.non_resource);
            out.incomplete |= r.incomplete;
            errors.extend(r.error);
        }
        out.error = aggregate(&errors);
        out
    }
}

/// Go's utilerrors aggregate message: one error as itself, several
/// (duplicates dropped) in brackets.
pub fn aggregate(errors: &[String]) -> Option<String> {
    match errors {
        [] => None,
        [one] => Some(one.clone()),
        many => {
            let mut seen: Vec<&str> = Vec::new();
            for e in many {
                if !seen.contains(&e.as_str()) {
                    seen.push(e);
                }
            }
            Some(if seen.len() == 1 { seen[0].to_string() } else { format!("[{}]", seen.join(", ")) })
        }
    }
}

/// An authorizer named before it exists: the access reviews and RBAC's
/// escalation check are built with the Stores, the union they consult only
/// after them. Until bound it has no opinion.
#[derive(Default)]
pub struct Deferred(OnceLock<Arc<dyn Authorizer>>);

impl Deferred {
    /// Sets the authorizer; later calls are ignored.
    pub fn bind(&self, authorizer: Arc<dyn Authorizer>) {
        let _ = self.0.set(authorizer);
    }
}

impl Authorizer for Deferred {
    fn authorize(&self, attrs: &Attributes<'_>) -> Verdict {
        match self.0.get() {
            Some(a) => a.authorize(attrs),
            None => Verdict::no_opinion("no authorizer is configured yet"),
        }
    }

    fn rules_for(&self, user: &UserInfo, namespace: &str) -> Rules {
        match self.0.get() {
            Some(a) => a.rules_for(user, namespace),
            None => Rules { incomplete: true, ..Rules::default() },
        }
    }
}

/// One `--authorization-mode` this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    AlwaysAllow,
    AlwaysDeny,
    Node,
    Rbac,
}

/// Checks `--authorization-mode` as upstream's BuiltInAuthorizationOptions
/// do; the error is upstream's aggregate of every problem. ABAC and Webhook
/// need files this server has no flags for.
pub fn parse_modes(modes: &[String]) -> Result<Vec<Mode>, String> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    if modes.is_empty() {
        errors.push("at least one authorization-mode must be passed".to_string());
    }
    for m in modes {
        match m.as_str() {
            "AlwaysAllow" => out.push(Mode::AlwaysAllow),
            "AlwaysDeny" => out.push(Mode::AlwaysDeny),
            "RBAC" => out.push(Mode::Rbac),
            "Node" => out.push(Mode::Node),
            "ABAC" => errors.push("authorization-mode ABAC's authorization policy file not passed".into()),
            "Webhook" => errors.push("authorization-mode Webhook's authorization config file not passed".into()),
            other => errors.push(format!("authorization-mode {other:?} is not a valid mode")),
        }
    }
    let mut unique = modes.to_vec();
    unique.sort();
    unique.dedup();
    if unique.len() != modes.len() {
        let quoted: Vec<String> = modes.iter().map(|m| format!("{m:?}")).collect();
        errors.push(format!("authorization-mode [{}] has mode specified more than once", quoted.join(" ")));
    }
    match aggregate(&errors) {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The authorizers of the modes that read the API's objects, which the
/// server that holds those objects builds.
#[derive(Clone)]
pub struct ModeAuthorizers {
    pub rbac: Arc<dyn Authorizer>,
    pub node: Arc<dyn Authorizer>,
}

/// The server's authorizer for `modes`: the privileged group first, then
/// each mode in order, as upstream builds it.
pub fn for_modes(modes: &[Mode], by_objects: &ModeAuthorizers) -> Arc<dyn Authorizer> {
    let mut members: Vec<Arc<dyn Authorizer>> = vec![Arc::new(PrivilegedGroup)];
    for m in modes {
        members.push(match m {
            Mode::AlwaysAllow => Arc::new(AlwaysAllow),
            Mode::AlwaysDeny => Arc::new(AlwaysDeny),
            Mode::Node => by_objects.node.clone(),
            Mode::Rbac => by_objects.rbac.clone(),
        });
    }
    Arc::new(Union(members))
}

/// The authorization filter's decision on a request: None to serve it, else
/// the answer refusing it (403, or 500 when the authorizer failed without
/// allowing).
pub fn check_request(authorizer: &dyn Authorizer, req: &Request) -> Option<Response> {
    let info = RequestInfo::of(req)?;
    let anonymous;
    let user = match req.extensions().get::<Arc<UserInfo>>() {
        Some(u) => u,
        None => {
            anonymous = UserInfo::default();
            &anonymous
        }
    };
    let attrs = Attributes { explain: crate::audit::is_audited(req), ..Attributes::of_request(user, info) };
    let verdict = authorizer.authorize(&attrs);
    // The decision is recorded in the audit event as upstream's filter does;
    // an authorizer may allow despite an evaluation error, so allow wins.
    if verdict.allowed() {
        crate::audit::add_annotation(req, DECISION_ANNOTATION, "allow");
        crate::audit::add_annotation(req, REASON_ANNOTATION, &verdict.reason);
        return None;
    }
    if let Some(e) = verdict.error {
        crate::audit::add_annotation(req, REASON_ANNOTATION, "internal error");
        return Some(internal_error(req, &e));
    }
    tracing::debug!(path = %info.path, reason = %verdict.reason, "forbidden");
    crate::audit::add_annotation(req, DECISION_ANNOTATION, "forbid");
    crate::audit::add_annotation(req, REASON_ANNOTATION, &verdict.reason);
    Some(attrs.forbidden(&verdict.reason).into_response())
}

/// The audit annotations the authorization filter leaves (upstream's
/// decisionAnnotationKey and reasonAnnotationKey).
pub const DECISION_ANNOTATION: &str = "authorization.k8s.io/decision";
pub const REASON_ANNOTATION: &str = "authorization.k8s.io/reason";

/// Upstream's responsewriters.InternalError: plain text naming the request.
pub fn internal_error(req: &Request, err: &str) -> Response {
    let uri = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let text = format!("Internal Server Error: {uri:?}: {err}\n");
    http::Response::builder()
        .status(500)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("X-Content-Type-Options", "nosniff")
        .body(body::full(text))
        .unwrap_or_else(|_| http::Response::new(body::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo { name: name.into(), groups: groups.iter().map(|g| g.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn messages_as_upstream() {
        let u = user("u", &[]);
        let info = crate::request_info::parse(&http::Method::GET, "/api/v1/namespaces/ns/pods", None);
        let a = Attributes::of_request(&u, &info);
        let e = a.forbidden("");
        assert_eq!(
            e.message,
            "pods is forbidden: User \"u\" cannot list resource \"pods\" in API group \"\" in the namespace \"ns\""
        );
        let info =
            crate::request_info::parse(&http::Method::GET, "/apis/apps/v1/namespaces/ns/deployments/d/scale", None);
        let a = Attributes::of_request(&u, &info);
        assert_eq!(
            a.forbidden("x").message,
            "deployments.apps \"d\" is forbidden: User \"u\" cannot get resource \"deployments/scale\" in API group \"apps\" in the namespace \"ns\": x"
        );
        let info = crate::request_info::parse(&http::Method::GET, "/apis/apps/v1", None);
        let e = Attributes::of_request(&u, &info).forbidden("");
        assert_eq!(e.message, "forbidden: User \"u\" cannot get path \"/apis/apps/v1\"");
        assert_eq!(e.details.as_deref(), Some(&serde_json::json!({})));
        let info = crate::request_info::parse(&http::Method::GET, "/api/v1/nodes", None);
        assert_eq!(
            Attributes::of_request(&u, &info).forbidden_message(),
            "User \"u\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
        );
    }

    #[test]
    fn union_in_order_with_the_privileged_group_first() {
        let allow = ModeAuthorizers { rbac: Arc::new(AlwaysAllow), node: Arc::new(AlwaysDeny) };
        let deny = for_modes(&[Mode::AlwaysDeny, Mode::AlwaysAllow], &allow);
        let (admin, u) = (user("a", &[PRIVILEGED_GROUP]), user("u", &[]));
        let a = Attributes::non_resource(&admin, "get", "/");
        assert!(deny.authorize(&a).allowed());
        // AlwaysDeny only has no opinion: the next mode decides.
        let v = deny.authorize(&Attributes::non_resource(&u, "get", "/"));
        assert!(v.allowed());
        let only_deny = for_modes(&[Mode::AlwaysDeny], &allow);
        let v = only_deny.authorize(&Attributes::non_resource(&u, "get", "/"));
        assert_eq!((v.decision, v.reason.as_str()), (Decision::NoOpinion, "Everything is forbidden."));
        let rules = for_modes(&[Mode::AlwaysDeny, Mode::AlwaysAllow], &allow).rules_for(&u, "ns");
        // Node and RBAC are the authorizers the object-holding server made.
        let v = for_modes(&[Mode::Node, Mode::Rbac], &allow).authorize(&Attributes::non_resource(&u, "get", "/"));
        assert!(v.allowed());
        assert_eq!((rules.resource.len(), rules.non_resource.len(), rules.incomplete), (1, 1, false));
    }

    #[test]
    fn modes_are_checked_as_upstream() {
        let m = |s: &[&str]| parse_modes(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(m(&["RBAC", "AlwaysAllow"]).unwrap(), vec![Mode::Rbac, Mode::AlwaysAllow]);
        assert_eq!(m(&["Node", "RBAC"]).unwrap(), vec![Mode::Node, Mode::Rbac]);
        assert_eq!(m(&["Foo"]).unwrap_err(), "authorization-mode \"Foo\" is not a valid mode");
        assert_eq!(
            m(&["RBAC", "RBAC", "Bar"]).unwrap_err(),
            "[authorization-mode \"Bar\" is not a valid mode, authorization-mode [\"RBAC\" \"RBAC\" \"Bar\"] has mode specified more than once]"
        );
        assert_eq!(aggregate(&["a".into(), "a".into()]).unwrap(), "a");
    }
}
