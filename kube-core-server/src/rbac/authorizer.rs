//! The RBAC authorizer (upstream's plugin/pkg/auth/authorizer/rbac over
//! pkg/registry/rbac/validation's rule resolver).
//!
//! Upstream lists every binding and tests each against the user. Here the
//! bindings are indexed by subject (user name, group, ServiceAccount) as the
//! informers report them, so a decision looks up the user's name and groups
//! and reads only the bindings naming them, however many bindings exist.
//! The lookups take the user's own strings and the index holds the bindings
//! themselves, so a decision allocates nothing; its "allowed by" reason is
//! worded only when someone reads it (`Attributes::explain`). Bindings are
//! visited in name order (cluster-wide first, then the namespace's), so
//! that reason is stable.

use std::collections::{BTreeMap, BTreeSet};

// Every decision makes a dozen lookups by short strings: foldhash, not SipHash.
use hashbrown::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use generic_server::authn::UserInfo;
use generic_server::authz::{aggregate, Attributes, Authorizer, NonResourceRule, ResourceRule, Rules, Verdict};
use generic_server::impersonation::SERVICE_ACCOUNT_PREFIX;
use generic_server::informer::{Change, Informer};
use generic_server::meta;
use generic_server::registry::Store;

use super::rules::{rules_of, PolicyRule};

/// Whom a binding subject names, as the index keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum SubjectKey {
    User(String),
    Group(String),
    /// (namespace, name)
    ServiceAccount(String, String),
}

#[derive(Debug, Clone)]
struct Subject {
    kind: SubjectKind,
    name: String,
    namespace: String,
}

/// A subject's kind, read once when its binding is indexed rather than
/// compared as text on every decision.
#[derive(Debug, Clone, PartialEq)]
enum SubjectKind {
    User,
    Group,
    ServiceAccount,
    /// A kind RBAC does not know; it names nobody.
    Other(String),
}

impl SubjectKind {
    fn of(kind: String) -> Self {
        match kind.as_str() {
            "User" => SubjectKind::User,
            "Group" => SubjectKind::Group,
            "ServiceAccount" => SubjectKind::ServiceAccount,
            _ => SubjectKind::Other(kind),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            SubjectKind::User => "User",
            SubjectKind::Group => "Group",
            SubjectKind::ServiceAccount => "ServiceAccount",
            SubjectKind::Other(k) => k,
        }
    }
}

impl Subject {
    /// The key of this subject in a binding of `binding_ns` ("" cluster-wide);
    /// None when it can never apply (a ServiceAccount with no namespace).
    fn key(&self, binding_ns: &str) -> Option<SubjectKey> {
        match self.kind {
            SubjectKind::User => Some(SubjectKey::User(self.name.clone())),
            SubjectKind::Group => Some(SubjectKey::Group(self.name.clone())),
            SubjectKind::ServiceAccount => {
                let ns = if self.namespace.is_empty() { binding_ns } else { &self.namespace };
                (!ns.is_empty()).then(|| SubjectKey::ServiceAccount(ns.to_string(), self.name.clone()))
            }
            SubjectKind::Other(_) => None,
        }
    }

    /// Whether this subject of a binding in `binding_ns` names `who`
    /// (upstream's appliesTo), compared in place.
    fn names(&self, binding_ns: &str, who: &Identity<'_>) -> bool {
        match self.kind {
            SubjectKind::User => self.name == who.name,
            SubjectKind::Group => who.groups.contains(&self.name),
            SubjectKind::ServiceAccount => {
                let ns = if self.namespace.is_empty() { binding_ns } else { &self.namespace };
                !ns.is_empty() && who.service_account == Some((ns, self.name.as_str()))
            }
            SubjectKind::Other(_) => false,
        }
    }

    /// Upstream's describeSubject.
    fn describe(&self, binding_ns: &str) -> String {
        let kind = self.kind.as_str();
        if self.kind == SubjectKind::ServiceAccount {
            let ns = if self.namespace.is_empty() { binding_ns } else { &self.namespace };
            return format!("{kind} {:?}", format!("{}/{ns}", self.name));
        }
        format!("{kind} {:?}", self.name)
    }
}

#[derive(Debug, Clone)]
struct Binding {
    name: String,
    /// "" for a ClusterRoleBinding.
    namespace: String,
    role_kind: String,
    role_name: String,
    subjects: Vec<Subject>,
}

impl Binding {
    fn from_json(v: &Value) -> Binding {
        let s = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        Binding {
            name: meta::name(v).to_string(),
            namespace: meta::namespace(v).to_string(),
            role_kind: s(v, "/roleRef/kind"),
            role_name: s(v, "/roleRef/name"),
            subjects: v
                .get("subjects")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|x| Subject {
                            kind: SubjectKind::of(s(x, "/kind")),
                            name: s(x, "/name"),
                            namespace: s(x, "/namespace"),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn keys(&self) -> BTreeSet<SubjectKey> {
        self.subjects.iter().filter_map(|s| s.key(&self.namespace)).collect()
    }

    /// The first subject naming `who` (upstream's appliesTo).
    fn subject_for(&self, who: &Identity<'_>) -> Option<&Subject> {
        self.subjects.iter().find(|s| s.names(&self.namespace, who))
    }
}

/// What a user answers to as a binding subject: its name, each group, and
/// the ServiceAccount its name denotes (upstream's MatchesUsername),
/// borrowed from the user, as every request asks.
struct Identity<'a> {
    name: &'a str,
    groups: &'a [String],
    /// (namespace, name)
    service_account: Option<(&'a str, &'a str)>,
}

impl<'a> Identity<'a> {
    fn of(user: &'a UserInfo) -> Self {
        let service_account = user.name.strip_prefix(SERVICE_ACCOUNT_PREFIX).and_then(|r| r.split_once(':'));
        Identity { name: &user.name, groups: &user.groups, service_account }
    }
}

/// Where a rule came from, as upstream's "allowed by" reason names it.
struct Source<'a> {
    binding: &'a Binding,
    subject: &'a Subject,
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.binding;
        let subject = self.subject.describe(&b.namespace);
        if b.namespace.is_empty() {
            write!(f, "ClusterRoleBinding {:?} of {} {:?} to {subject}", b.name, b.role_kind, b.role_name)
        } else {
            let name = format!("{}/{}", b.name, b.namespace);
            write!(f, "RoleBinding {name:?} of {} {:?} to {subject}", b.role_kind, b.role_name)
        }
    }
}

/// The bindings naming one subject, by name.
type Names = BTreeMap<String, Arc<Binding>>;

/// What a visit of the user's policy meets: a rule and where it came from,
/// or a binding whose role is missing.
enum Visit<'a> {
    Rule(&'a Source<'a>, &'a PolicyRule),
    Unresolved(Unresolved),
}

/// A role reference that does not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    Missing { kind: String, name: String },
    Unsupported(String),
}

impl Unresolved {
    /// As upstream's authorizer words it: its listers name the singular
    /// resource (`clusterrole.rbac.authorization.k8s.io "x" not found`).
    pub fn lister_message(&self) -> String {
        self.message("")
    }

    /// As upstream's escalation check words it: it reads through the
    /// registry, whose NotFound names the plural resource.
    pub fn registry_message(&self) -> String {
        self.message("s")
    }

    fn message(&self, plural: &str) -> String {
        match self {
            Unresolved::Missing { kind, name } => {
                format!("{}{plural}.rbac.authorization.k8s.io {name:?} not found", kind.to_lowercase())
            }
            Unresolved::Unsupported(kind) => format!("unsupported role reference kind: {kind:?}"),
        }
    }
}

/// Values by namespace ("" for cluster-wide) and name, found without making
/// a key: the authorizer looks bindings and roles up for every request.
struct Scoped<V>(HashMap<String, HashMap<String, V>>);

impl<V> Default for Scoped<V> {
    fn default() -> Self {
        Scoped(HashMap::new())
    }
}

impl<V> Scoped<V> {
    fn get(&self, namespace: &str, name: &str) -> Option<&V> {
        self.0.get(namespace)?.get(name)
    }

    fn insert(&mut self, namespace: String, name: String, value: V) {
        self.0.entry(namespace).or_default().insert(name, value);
    }

    fn remove(&mut self, namespace: &str, name: &str) -> Option<V> {
        let in_ns = self.0.get_mut(namespace)?;
        let removed = in_ns.remove(name);
        if in_ns.is_empty() {
            self.0.remove(namespace);
        }
        removed
    }
}

/// The bindings of one scope by the subjects they name: a map per kind of
/// subject, so a lookup takes the user's own strings.
#[derive(Default)]
struct Subjects {
    users: HashMap<String, Names>,
    groups: HashMap<String, Names>,
    service_accounts: Scoped<Names>,
}

impl Subjects {
    fn add(&mut self, key: SubjectKey, binding: &Arc<Binding>) {
        let names = match key {
            SubjectKey::User(n) => self.users.entry(n).or_default(),
            SubjectKey::Group(g) => self.groups.entry(g).or_default(),
            SubjectKey::ServiceAccount(ns, n) => self.service_accounts.0.entry(ns).or_default().entry(n).or_default(),
        };
        names.insert(binding.name.clone(), binding.clone());
    }

    fn remove(&mut self, key: &SubjectKey, binding: &str) {
        fn drop_name(map: &mut HashMap<String, Names>, key: &str, binding: &str) {
            if let Some(names) = map.get_mut(key) {
                names.remove(binding);
                if names.is_empty() {
                    map.remove(key);
                }
            }
        }
        match key {
            SubjectKey::User(n) => drop_name(&mut self.users, n, binding),
            SubjectKey::Group(g) => drop_name(&mut self.groups, g, binding),
            SubjectKey::ServiceAccount(ns, n) => {
                if let Some(in_ns) = self.service_accounts.0.get_mut(ns) {
                    drop_name(in_ns, n, binding);
                    if in_ns.is_empty() {
                        self.service_accounts.0.remove(ns);
                    }
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty() && self.service_accounts.0.is_empty()
    }

    /// The bindings naming `who`, each once, in name order.
    fn naming(&self, who: &Identity<'_>) -> Vec<&Arc<Binding>> {
        let mut found: Vec<&Arc<Binding>> = self.users.get(who.name).into_iter().flat_map(|n| n.values()).collect();
        for g in who.groups {
            found.extend(self.groups.get(g.as_str()).into_iter().flat_map(|n| n.values()));
        }
        if let Some((ns, name)) = who.service_account {
            found.extend(self.service_accounts.get(ns, name).into_iter().flat_map(|n| n.values()));
        }
        found.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        found.dedup_by(|a, b| Arc::ptr_eq(a, b));
        found
    }
}

/// The policy as the informers last reported it.
#[derive(Default)]
struct Index {
    roles: Scoped<Arc<[PolicyRule]>>,
    cluster_roles: HashMap<String, Arc<[PolicyRule]>>,
    /// "" is cluster-wide.
    bindings: Scoped<Arc<Binding>>,
    /// namespace ("" cluster-wide) -> subject -> names of the bindings naming it.
    by_subject: HashMap<String, Subjects>,
}

impl Index {
    fn put_binding(&mut self, b: Binding) {
        self.remove_binding(&b.namespace, &b.name);
        let b = Arc::new(b);
        let in_ns = self.by_subject.entry(b.namespace.clone()).or_default();
        for k in b.keys() {
            in_ns.add(k, &b);
        }
        self.bindings.insert(b.namespace.clone(), b.name.clone(), b);
    }

    fn remove_binding(&mut self, namespace: &str, name: &str) {
        let Some(old) = self.bindings.remove(namespace, name) else { return };
        if let Some(in_ns) = self.by_subject.get_mut(namespace) {
            for k in old.keys() {
                in_ns.remove(&k, name);
            }
            if in_ns.is_empty() {
                self.by_subject.remove(namespace);
            }
        }
    }

    /// The rules a role reference resolves to.
    fn role_rules(&self, kind: &str, name: &str, namespace: &str) -> Result<Arc<[PolicyRule]>, Unresolved> {
        let found = match kind {
            "Role" => self.roles.get(namespace, name),
            "ClusterRole" => self.cluster_roles.get(name),
            other => return Err(Unresolved::Unsupported(other.to_string())),
        };
        found.cloned().ok_or_else(|| Unresolved::Missing { kind: kind.to_string(), name: name.to_string() })
    }

    /// Upstream's VisitRulesFor: every rule bound to the user cluster-wide,
    /// then in `namespace`, and every error resolving them; stops when
    /// `visit` returns false.
    fn visit(&self, user: &UserInfo, namespace: &str, visit: &mut dyn FnMut(Visit<'_>) -> bool) {
        let who = Identity::of(user);
        let scopes: &[&str] = if namespace.is_empty() { &[""] } else { &["", namespace] };
        for &scope in scopes {
            let Some(in_scope) = self.by_subject.get(scope) else { continue };
            for binding in in_scope.naming(&who) {
                let Some(subject) = binding.subject_for(&who) else { continue };
                match self.role_rules(&binding.role_kind, &binding.role_name, scope) {
                    Err(e) => {
                        if !visit(Visit::Unresolved(e)) {
                            return;
                        }
                    }
                    Ok(rules) => {
                        let source = Source { binding, subject };
                        for r in rules.iter() {
                            if !visit(Visit::Rule(&source, r)) {
                                return;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The RBAC authorizer, kept current from the rbac Stores by [`Rbac::start`].
#[derive(Default)]
pub struct Rbac {
    index: RwLock<Index>,
}

/// The Stores the authorizer follows.
pub struct AuthorizerStores {
    pub roles: Arc<Store>,
    pub cluster_roles: Arc<Store>,
    pub role_bindings: Arc<Store>,
    pub cluster_role_bindings: Arc<Store>,
}

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Role,
    ClusterRole,
    Binding,
}

impl Rbac {
    /// Follows the Stores and returns once the first list of each is indexed.
    pub async fn start(self: &Arc<Self>, stores: AuthorizerStores) {
        let sources = vec![
            (stores.roles, Kind::Role),
            (stores.cluster_roles, Kind::ClusterRole),
            (stores.role_bindings, Kind::Binding),
            (stores.cluster_role_bindings, Kind::Binding),
        ];
        let me = self.clone();
        Informer::follow_all(sources, move |kind, change| me.apply(kind, &change)).await;
    }

    pub(crate) fn apply(&self, kind: Kind, change: &Change<'_>) {
        let obj = change.object();
        let (ns, name) = (meta::namespace(obj).to_string(), meta::name(obj).to_string());
        let deleted = matches!(change, Change::Deleted(_));
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        match (kind, deleted) {
            (Kind::Role, false) => {
                index.roles.insert(ns, name, rules_of(obj).into());
            }
            (Kind::Role, true) => {
                index.roles.remove(&ns, &name);
            }
            (Kind::ClusterRole, false) => {
                index.cluster_roles.insert(name, rules_of(obj).into());
            }
            (Kind::ClusterRole, true) => {
                index.cluster_roles.remove(&name);
            }
            (Kind::Binding, false) => index.put_binding(Binding::from_json(obj)),
            (Kind::Binding, true) => index.remove_binding(&ns, &name),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Every rule `user` holds in `namespace`, and the references that did
    /// not resolve (upstream's RulesFor).
    pub fn policy_rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, Vec<Unresolved>) {
        let (mut rules, mut errors) = (Vec::new(), Vec::new());
        self.read().visit(user, namespace, &mut |v| {
            match v {
                Visit::Rule(_, rule) => rules.push(rule.clone()),
                Visit::Unresolved(e) => errors.push(e),
            }
            true
        });
        (rules, errors)
    }

    /// The rules a binding's roleRef grants; None when the role is missing.
    pub fn role_reference_rules(&self, kind: &str, name: &str, namespace: &str) -> Option<Arc<[PolicyRule]>> {
        self.read().role_rules(kind, name, namespace).ok()
    }
}

impl Authorizer for Rbac {
    fn authorize(&self, attrs: &Attributes<'_>) -> Verdict {
        let mut allowed_by = None;
        let mut errors = Vec::new();
        self.read().visit(attrs.user, attrs.namespace, &mut |v| match v {
            Visit::Rule(source, rule) if rule.allows(attrs) => {
                // Upstream always words it; here only a reader pays for it.
                allowed_by = Some(if attrs.explain { format!("RBAC: allowed by {source}") } else { String::new() });
                false
            }
            Visit::Rule(..) => true,
            Visit::Unresolved(e) => {
                errors.push(e.lister_message());
                true
            }
        });
        match allowed_by {
            Some(reason) => Verdict::allow(reason),
            None => Verdict::no_opinion(aggregate(&errors).map(|e| format!("RBAC: {e}")).unwrap_or_default()),
        }
    }

    fn rules_for(&self, user: &UserInfo, namespace: &str) -> Rules {
        let (rules, errors) = self.policy_rules_for(user, namespace);
        let errors: Vec<String> = errors.iter().map(Unresolved::lister_message).collect();
        let mut out = Rules { error: aggregate(&errors), ..Rules::default() };
        for r in rules {
            if !r.resources.is_empty() {
                out.resource.push(ResourceRule {
                    verbs: r.verbs.clone(),
                    api_groups: r.api_groups.clone(),
                    resources: r.resources.clone(),
                    resource_names: r.resource_names.clone(),
                });
            }
            if !r.non_resource_urls.is_empty() {
                out.non_resource.push(NonResourceRule { verbs: r.verbs, urls: r.non_resource_urls });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use generic_server::authz::Decision;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo { name: name.into(), groups: groups.iter().map(|g| g.to_string()).collect(), ..Default::default() }
    }

    fn rbac() -> Rbac {
        let r = Rbac::default();
        let add = |kind, v: Value| r.apply(kind, &Change::Added(&v));
        add(
            Kind::ClusterRole,
            json!({"metadata": {"name": "reader"}, "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]}),
        );
        add(
            Kind::Role,
            json!({"metadata": {"name": "cm", "namespace": "a"}, "rules": [{"verbs": ["*"], "apiGroups": [""], "resources": ["configmaps"]}]}),
        );
        add(
            Kind::Binding,
            json!({"metadata": {"name": "devs-read"}, "roleRef": {"kind": "ClusterRole", "name": "reader"},
                   "subjects": [{"kind": "User", "name": "zed"}, {"kind": "Group", "name": "devs"}]}),
        );
        add(
            Kind::Binding,
            json!({"metadata": {"name": "cm", "namespace": "a"}, "roleRef": {"kind": "Role", "name": "cm"},
                   "subjects": [{"kind": "ServiceAccount", "name": "bot"}]}),
        );
        add(
            Kind::Binding,
            json!({"metadata": {"name": "dangling", "namespace": "a"}, "roleRef": {"kind": "Role", "name": "gone"},
                   "subjects": [{"kind": "Group", "name": "devs"}]}),
        );
        r
    }

    #[test]
    fn decisions_by_subject_with_upstreams_reasons() {
        let r = rbac();
        let alice = user("alice", &["devs"]);
        let v = r.authorize(&Attributes::resource(&alice, "list", "", "pods", "b", ""));
        assert_eq!(
            (v.decision, v.reason.as_str()),
            (
                Decision::Allow,
                "RBAC: allowed by ClusterRoleBinding \"devs-read\" of ClusterRole \"reader\" to Group \"devs\""
            )
        );
        let v = r.authorize(&Attributes::resource(&alice, "create", "", "pods", "a", ""));
        assert_eq!(
            (v.decision, v.reason.as_str()),
            (Decision::NoOpinion, "RBAC: role.rbac.authorization.k8s.io \"gone\" not found")
        );
        let v = r.authorize(&Attributes::resource(&alice, "create", "", "pods", "b", ""));
        assert_eq!((v.decision, v.reason.as_str()), (Decision::NoOpinion, ""));
        let bot = user("system:serviceaccount:a:bot", &["system:serviceaccounts"]);
        let v = r.authorize(&Attributes::resource(&bot, "delete", "", "configmaps", "a", "x"));
        assert_eq!(v.reason, "RBAC: allowed by RoleBinding \"cm/a\" of Role \"cm\" to ServiceAccount \"bot/a\"");
        // Nobody reads the reason: the same decision, unworded.
        let unexplained =
            Attributes { explain: false, ..Attributes::resource(&bot, "delete", "", "configmaps", "a", "x") };
        assert_eq!(r.authorize(&unexplained), Verdict::allow(""));
        // A binding naming the user twice (by name and by group) is visited
        // once, and the first subject naming the user is the one reported.
        let zed = user("zed", &["devs"]);
        let naming: Vec<String> =
            r.read().by_subject[""].naming(&Identity::of(&zed)).iter().map(|b| b.name.clone()).collect();
        assert_eq!(naming, ["devs-read"]);
        let v = r.authorize(&Attributes::resource(&zed, "get", "", "pods", "b", "p"));
        assert_eq!(
            v.reason,
            "RBAC: allowed by ClusterRoleBinding \"devs-read\" of ClusterRole \"reader\" to User \"zed\""
        );
        assert!(!r.authorize(&Attributes::resource(&bot, "delete", "", "configmaps", "b", "x")).allowed());
    }

    #[test]
    fn the_index_follows_changes() {
        let r = rbac();
        let alice = user("alice", &["devs"]);
        let list = Attributes::resource(&alice, "list", "", "pods", "b", "");
        assert!(r.authorize(&list).allowed());
        let old = json!({"metadata": {"name": "devs-read"}, "roleRef": {"kind": "ClusterRole", "name": "reader"},
                         "subjects": [{"kind": "User", "name": "zed"}]});
        r.apply(Kind::Binding, &Change::Updated { old: &old, new: &old });
        assert!(!r.authorize(&list).allowed());
        let zed = user("zed", &[]);
        assert!(r.authorize(&Attributes::resource(&zed, "list", "", "pods", "", "")).allowed());
        r.apply(Kind::Binding, &Change::Deleted(&old));
        assert!(!r.authorize(&Attributes::resource(&zed, "list", "", "pods", "", "")).allowed());
        assert!(r.read().by_subject.get("").is_none_or(Subjects::is_empty));
        let rules = r.rules_for(&alice, "a");
        assert_eq!(rules.resource.len(), 0);
        assert_eq!(rules.error.as_deref(), Some("role.rbac.authorization.k8s.io \"gone\" not found"));
    }
}
