//! Which requests a webhook or policy applies to (upstream's
//! admission/plugin/webhook/predicates and policy/matching): rules of
//! operations, groups, versions, resources with subresources and scope; a
//! namespace selector on the labels of the request's namespace; an object
//! selector on the labels of the object or the object it replaces.
//! With matchPolicy Equivalent, rules that miss the request's version are
//! tried against the other versions of its resource ([`Equivalents`]), and
//! the configuration then sees the request in the version it matched
//! ([`Versioned`]), as upstream's VersionedAttributes.
//!
//! Configurations are parsed once, when they change ([`Rule::parse`],
//! [`Selectors::parse`]); a request is then matched without allocating, so
//! twenty configurations that do not match cost a create next to nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Map, Value};

use generic_server::registry::{AdmissionAttributes, BoundStore, ResourceInfo, Store, StoreRegistry, Versions};
use generic_server::selectors::LabelSelector;
use generic_server::status::StatusError;

/// One RuleWithOperations (or a policy's NamedRuleWithOperations without names).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rule {
    operations: Vec<String>,
    groups: Vec<String>,
    versions: Vec<String>,
    /// (resource, subresource) pairs; "" is no subresource.
    resources: Vec<(String, String)>,
    scope: Scope,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scope {
    #[default]
    Any,
    Cluster,
    Namespaced,
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn any_or(list: &[String], value: &str) -> bool {
    list.iter().any(|x| x == "*" || x == value)
}

impl Rule {
    /// Reads a rule as stored (validation has already checked its form).
    pub fn parse(rule: &Value) -> Rule {
        let resources = strings(rule, "resources")
            .into_iter()
            .map(|r| match r.split_once('/') {
                Some((res, sub)) => (res.to_string(), sub.to_string()),
                None => (r, String::new()),
            })
            .collect();
        let scope = match rule.get("scope").and_then(Value::as_str) {
            Some("Cluster") => Scope::Cluster,
            Some("Namespaced") => Scope::Namespaced,
            _ => Scope::Any,
        };
        Rule {
            operations: strings(rule, "operations"),
            groups: strings(rule, "apiGroups"),
            versions: strings(rule, "apiVersions"),
            resources,
            scope,
        }
    }

    /// Whether the request falls under the rule. A resource without a
    /// subresource part ("pods", "*") matches only requests without one, as
    /// upstream; "*/*" matches every subresource.
    pub fn matches(&self, a: &AdmissionAttributes<'_>) -> bool {
        self.matches_as(a, a.info)
    }

    /// As [`matches`](Self::matches), with the request's resource seen as
    /// `resource` (one of its equivalents).
    pub fn matches_as(&self, a: &AdmissionAttributes<'_>, resource: &ResourceInfo) -> bool {
        let scope = match self.scope {
            Scope::Any => true,
            Scope::Cluster => !resource.namespaced,
            Scope::Namespaced => resource.namespaced,
        };
        scope
            && any_or(&self.operations, a.operation.as_str())
            && any_or(&self.groups, &resource.group)
            && any_or(&self.versions, &resource.version)
            && self
                .resources
                .iter()
                .any(|(res, sub)| (res == "*" || *res == resource.plural) && (sub == "*" || *sub == a.subresource))
    }
}

/// The other versions of a request's resource (upstream's equivalent
/// resources: every Store over the same stored objects), looked up at most
/// once per request and only when a rule with matchPolicy Equivalent missed
/// the request's own version.
pub struct Equivalents<'a> {
    registry: Option<&'a StoreRegistry>,
    resource: &'a ResourceInfo,
    got: OnceLock<Versions>,
}

impl<'a> Equivalents<'a> {
    /// Without a registry, nothing is equivalent.
    pub fn of(registry: Option<&'a StoreRegistry>, a: &AdmissionAttributes<'a>) -> Self {
        Equivalents { registry, resource: a.info, got: OnceLock::new() }
    }

    fn get(&self) -> &Versions {
        self.got.get_or_init(|| self.registry.map(|r| r.versions_of(self.resource)).unwrap_or_default())
    }

    /// Which version `rules` match (`matches` judging one rule against one
    /// version of the resource): the request's own if any rule matches it;
    /// else, with matchPolicy Equivalent (`equivalent`), upstream's fuzzy
    /// matching: rules in order, each tried against the other versions in
    /// order.
    pub fn matched<R>(
        &self,
        rules: &[R],
        equivalent: bool,
        matches: impl Fn(&R, &ResourceInfo) -> bool,
    ) -> Option<Matched> {
        if rules.iter().any(|r| matches(r, self.resource)) {
            return Some(Matched::Exact);
        }
        // No rule (an empty exclude list), no other version to look up.
        if !equivalent || rules.is_empty() {
            return None;
        }
        let others = &self.get().others;
        rules.iter().find_map(|r| others.iter().find(|s| matches(r, &s.info)).cloned()).map(Matched::Equivalent)
    }

    /// The request's objects in `target`'s version. A conversion that fails
    /// fails the request (upstream's InternalError), whatever the failure
    /// policy.
    pub async fn convert(
        &self,
        target: Arc<Store>,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<Versioned, StatusError> {
        let own = self.own()?;
        // Only the resource's own kind converts: a subresource's object of
        // another kind (a Scale) is the same in every version.
        let convert = async |o: Option<&Value>| match o.filter(|o| !o.is_null()) {
            Some(o) if o.get("kind").and_then(Value::as_str) == Some(&self.resource.kind) => {
                own.convert_to(&target, o.clone()).await.map(Some)
            }
            o => Ok(o.cloned()),
        };
        let object = convert(object).await?;
        let old = convert(old).await?;
        Ok(Versioned { target, object, old })
    }

    /// `object`, changed in `from`'s version, back in the request's.
    pub async fn convert_back(&self, from: &Store, object: Value) -> Result<Value, StatusError> {
        match object.get("kind").and_then(Value::as_str) == Some(&from.info.kind) {
            true => from.convert_to(&*self.own()?, object).await,
            false => Ok(object),
        }
    }

    fn own(&self) -> Result<Arc<Store>, StatusError> {
        self.get().own.clone().ok_or_else(|| {
            StatusError::internal(format!("unable to convert from {}: unknown resource", self.resource.plural))
        })
    }
}

/// Which version of the request's resource a configuration's rules matched.
pub enum Matched {
    Exact,
    /// Another version's (matchPolicy Equivalent).
    Equivalent(Arc<Store>),
}

impl Matched {
    /// The request's objects in the matched version: None for its own.
    pub async fn convert(
        &self,
        equivalents: &Equivalents<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<Option<Versioned>, StatusError> {
        match self {
            Matched::Exact => Ok(None),
            Matched::Equivalent(target) => equivalents.convert(target.clone(), object, old).await.map(Some),
        }
    }
}

/// A request's objects converted to the version an equivalent rule matched.
pub struct Versioned {
    pub target: Arc<Store>,
    pub object: Option<Value>,
    pub old: Option<Value>,
}

/// The request as one configuration sees it: the resource version its rules
/// matched, and the object and old object in that version.
#[derive(Clone, Copy)]
pub struct View<'v> {
    pub resource: &'v ResourceInfo,
    pub object: Option<&'v Value>,
    pub old: Option<&'v Value>,
}

impl<'v> View<'v> {
    /// The request in the version matched: its own (`versioned` None), with
    /// `object` as admission has it now, or the converted one.
    pub fn of(a: &AdmissionAttributes<'v>, object: Option<&'v Value>, versioned: Option<&'v Versioned>) -> Self {
        match versioned {
            None => View { resource: a.info, object, old: a.old },
            Some(v) => View { resource: &v.target.info, object: v.object.as_ref(), old: v.old.as_ref() },
        }
    }
}

/// The group, version and kind of the request's object as `resource` (its
/// own or an equivalent) serves it, and that resource's group, version and
/// resource.
pub fn gvk_gvr(a: &AdmissionAttributes<'_>, resource: &ResourceInfo) -> (Value, Value) {
    let k = a.kind_as(resource);
    let kind = json!({"group": k.group, "version": k.version, "kind": k.kind});
    let resource = json!({"group": resource.group, "version": resource.version, "resource": resource.plural});
    (kind, resource)
}

/// A namespaceSelector and an objectSelector, parsed.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    namespace: LabelSelector,
    object: LabelSelector,
}

impl Selectors {
    /// From the object holding `namespaceSelector` and `objectSelector` (a
    /// webhook, or a policy's matchConstraints).
    pub fn parse(holder: &Value) -> Selectors {
        let read = |key| holder.get(key).filter(|v| v.is_object()).map(LabelSelector::from_object).unwrap_or_default();
        Selectors { namespace: read("namespaceSelector"), object: read("objectSelector") }
    }

    /// The namespace selector on a namespace's labels, as
    /// [`matches_namespace`](Self::matches_namespace) judges a request to a
    /// namespaced resource.
    pub fn namespace_passes(&self, labels: &Map<String, Value>) -> bool {
        self.namespace.is_empty() || self.namespace.matches(labels)
    }

    /// The object selector: the labels of the object, or of the object it
    /// replaces, must match (upstream's object/matcher.go).
    pub fn matches_object(&self, a: &AdmissionAttributes<'_>, object: Option<&Value>) -> bool {
        if self.object.is_empty() {
            return true;
        }
        let matches = |o: Option<&Value>| o.and_then(labels).is_some_and(|l| self.object.matches(l));
        matches(object) || matches(a.old)
    }

    /// The namespace selector: a cluster-scoped request other than for a
    /// namespace always matches; a namespace's own request is judged by its
    /// labels; any other by its namespace's stored labels. A namespace that
    /// does not exist is upstream's 404.
    pub async fn matches_namespace(
        &self,
        a: &AdmissionAttributes<'_>,
        object: Option<&Value>,
        namespace: &RequestNamespace<'_>,
    ) -> Result<bool, StatusError> {
        let is_namespace = a.is::<k8s_openapi::api::core::v1::Namespace>();
        if self.namespace.is_empty() || (!a.info.namespaced && !is_namespace) {
            return Ok(true);
        }
        let empty = Map::new();
        if is_namespace && a.subresource.is_empty() {
            if let Some(o) = object.or(a.old) {
                return Ok(self.namespace.matches(labels(o).unwrap_or(&empty)));
            }
        }
        let ns = namespace.get().await?;
        Ok(self.namespace.matches(labels(ns).unwrap_or(&empty)))
    }
}

fn labels(o: &Value) -> Option<&Map<String, Value>> {
    // Not `pointer`: it allocates per segment, and this runs for every
    // configuration on every request.
    o.get("metadata")?.get("labels")?.as_object()
}

/// Where namespace labels come from: the namespace Store, bound after it is
/// built (the Stores need the admission chain first).
pub struct Namespaces {
    store: BoundStore,
}

impl Default for Namespaces {
    fn default() -> Self {
        Namespaces { store: BoundStore::new("namespaces") }
    }
}

impl Namespaces {
    pub fn bind(&self, store: &Arc<Store>) {
        self.store.bind(store);
    }

    /// As upstream's namespace matcher: the watch cache's state, decoded
    /// once per namespace version and shared, or storage's when the cache
    /// does not show the namespace yet.
    async fn get(&self, name: &str) -> Result<Arc<Value>, StatusError> {
        self.store.find(name).await?.ok_or_else(|| StatusError::not_found("", "namespaces", name))
    }

    /// A lookup of `a`'s namespace for one admission pass.
    pub fn of_request<'a>(&'a self, a: &AdmissionAttributes<'a>) -> RequestNamespace<'a> {
        let name = if a.is::<k8s_openapi::api::core::v1::Namespace>() { a.name } else { a.namespace };
        RequestNamespace { namespaces: self, name, got: tokio::sync::OnceCell::new() }
    }
}

/// Namespaces whose verdicts a list keeps before it starts over.
const REMEMBERED_NAMESPACES: usize = 1024;

/// Which configurations' namespace selectors pass the labels of a
/// request's namespace, remembered per configuration list and namespace
/// version. Configurations that select other namespaces are then passed
/// over without touching their rules or selectors: with dozens configured,
/// reading each one's scattered parts is most of what a request pays for
/// them.
pub struct NamespaceVerdicts<T> {
    /// The list the verdicts are for (held, so its address is not reused),
    /// and the verdicts by namespace version.
    memo: Mutex<Option<(Arc<T>, ByNamespace)>>,
}

/// One verdict per configuration, by the address of the namespace object as
/// the watch cache shares it (one `Arc` per stored version); the object is
/// held beside its verdicts, so that address names that version alone.
type ByNamespace = HashMap<usize, (Arc<Value>, Arc<[bool]>)>;

impl<T> Default for NamespaceVerdicts<T> {
    fn default() -> Self {
        NamespaceVerdicts { memo: Mutex::new(None) }
    }
}

impl<T> NamespaceVerdicts<T> {
    /// For a request to a namespaced resource, whether each configuration of
    /// `list` passes its namespace selector, as `judge` decides them on the
    /// namespace's labels ([`Selectors::namespace_passes`]). None where the
    /// selectors see something else (cluster-scoped requests and namespaces'
    /// own) or the namespace cannot be read: every configuration is then
    /// matched in full.
    pub async fn of(
        &self,
        list: &Arc<T>,
        a: &AdmissionAttributes<'_>,
        namespace: &RequestNamespace<'_>,
        judge: impl FnOnce(&Map<String, Value>) -> Vec<bool>,
    ) -> Option<Arc<[bool]>> {
        if !a.info.namespaced || a.namespace.is_empty() {
            return None;
        }
        let ns = namespace.shared().await.ok()?;
        let mut memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
        let by_namespace = match &mut *memo {
            Some((held, by_namespace)) if Arc::ptr_eq(held, list) => by_namespace,
            other => &mut other.insert((list.clone(), HashMap::new())).1,
        };
        let key = Arc::as_ptr(ns) as usize;
        if let Some((_, v)) = by_namespace.get(&key) {
            return Some(v.clone());
        }
        if by_namespace.len() >= REMEMBERED_NAMESPACES {
            by_namespace.clear();
        }
        let empty = Map::new();
        let verdicts: Arc<[bool]> = judge(labels(ns).unwrap_or(&empty)).into();
        by_namespace.insert(key, (ns.clone(), verdicts.clone()));
        Some(verdicts)
    }
}

/// Whether `verdicts` (from [`NamespaceVerdicts::of`]) pass configuration `i`
/// over: its namespace selector fails, so it cannot match.
pub fn passed_over(verdicts: &Option<Arc<[bool]>>, i: usize) -> bool {
    verdicts.as_ref().is_some_and(|v| !v.get(i).copied().unwrap_or(true))
}

/// The namespace a request concerns (its own, for a namespace's
/// subresources), read at most once however many configurations select on
/// its labels or read it in CEL.
pub struct RequestNamespace<'a> {
    namespaces: &'a Namespaces,
    name: &'a str,
    got: tokio::sync::OnceCell<Arc<Value>>,
}

impl RequestNamespace<'_> {
    pub async fn get(&self) -> Result<&Value, StatusError> {
        Ok(self.shared().await?)
    }

    /// The namespace as the watch cache shares it.
    pub async fn shared(&self) -> Result<&Arc<Value>, StatusError> {
        self.got.get_or_try_init(|| self.namespaces.get(self.name)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use generic_server::registry::{Notes, Operation, ResourceInfo};
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use serde_json::json;

    fn attrs<'a>(info: &'a ResourceInfo, sub: &'a str, op: Operation, notes: &'a Notes) -> AdmissionAttributes<'a> {
        AdmissionAttributes {
            operation: op,
            info,
            subresource: sub,
            kind: None,
            namespace: if info.namespaced { "ns" } else { "" },
            name: "x",
            object: None,
            old: None,
            user: None,
            dry_run: false,
            notes,
        }
    }

    /// As upstream's namespace matcher: a namespace the watch cache does not
    /// show yet (created a moment before the request in it) is read from
    /// storage rather than refused as missing.
    #[tokio::test]
    async fn a_namespace_created_a_moment_before_is_found() {
        use generic_server::registry::{AdmissionChain, DefaultStrategy, Registration, WriteOptions};
        use generic_server::storage::{cacher::Cacher, embedded::EmbeddedStorage, Storage};
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(EmbeddedStorage::open(&dir.path().join("db")).unwrap());
        let reg = Registration::of::<Namespace>(DefaultStrategy);
        let cache = Cacher::new(storage.clone(), &format!("{}/", reg.info.key_root));
        let store = Arc::new(Store::new(reg, storage, Arc::new(AdmissionChain::default())).with_cache(cache.clone()));
        let namespaces = Namespaces::default();
        namespaces.bind(&store);
        let w = WriteOptions::default();
        store.create("", json!({"metadata": {"name": "first"}}), &w).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !cache.filled() {
            assert!(std::time::Instant::now() < deadline, "the namespace cache never filled");
            let _ = namespaces.get("first").await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let (notes, pods) = (Notes::default(), ResourceInfo::of::<Pod>());
        for i in 0..20 {
            let name = format!("ns{i}");
            let ns = json!({"metadata": {"name": name, "labels": {"round": i.to_string()}}});
            store.create("", ns, &w).await.unwrap();
            let a = AdmissionAttributes { namespace: &name, ..attrs(&pods, "", Operation::Create, &notes) };
            let lookup = namespaces.of_request(&a);
            let got = lookup.get().await.map_err(|e| e.message).unwrap();
            assert_eq!(labels(got).and_then(|l| l.get("round")), Some(&json!(i.to_string())));
        }
        let a = AdmissionAttributes { namespace: "missing", ..attrs(&pods, "", Operation::Create, &notes) };
        let err = namespaces.of_request(&a).get().await.unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (404, "namespaces \"missing\" not found"));
    }

    #[test]
    fn rules_match_as_upstream() {
        let notes = Notes::default();
        let (pods, deploys, nss) =
            (ResourceInfo::of::<Pod>(), ResourceInfo::of::<Deployment>(), ResourceInfo::of::<Namespace>());
        let rule = |v: Value| Rule::parse(&v);
        let all_pods =
            rule(json!({"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}));
        assert!(all_pods.matches(&attrs(&pods, "", Operation::Create, &notes)));
        assert!(!all_pods.matches(&attrs(&pods, "", Operation::Update, &notes)));
        assert!(
            !all_pods.matches(&attrs(&pods, "status", Operation::Create, &notes)),
            "no subresource part: main only"
        );
        assert!(!all_pods.matches(&attrs(&deploys, "", Operation::Create, &notes)));
        let star = rule(json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}));
        assert!(star.matches(&attrs(&deploys, "", Operation::Delete, &notes)));
        assert!(!star.matches(&attrs(&deploys, "scale", Operation::Update, &notes)));
        let subs =
            rule(json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/scale"]}));
        assert!(subs.matches(&attrs(&deploys, "scale", Operation::Update, &notes)));
        assert!(!subs.matches(&attrs(&deploys, "", Operation::Update, &notes)));
        let every = rule(json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]}));
        assert!(every.matches(&attrs(&pods, "status", Operation::Update, &notes)));
        let cluster = rule(
            json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "scope": "Cluster"}),
        );
        assert!(
            cluster.matches(&attrs(&nss, "", Operation::Create, &notes))
                && !cluster.matches(&attrs(&pods, "", Operation::Create, &notes))
        );
        let namespaced = rule(
            json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "scope": "Namespaced"}),
        );
        assert!(
            !namespaced.matches(&attrs(&nss, "", Operation::Create, &notes))
                && namespaced.matches(&attrs(&pods, "", Operation::Create, &notes))
        );
    }

    #[test]
    fn object_selector_reads_new_or_old_labels() {
        let notes = Notes::default();
        let pods = ResourceInfo::of::<Pod>();
        let s = Selectors::parse(&json!({"objectSelector": {"matchLabels": {"app": "web"}}}));
        let web = json!({"metadata": {"labels": {"app": "web"}}});
        let other = json!({"metadata": {"labels": {"app": "db"}}});
        let mut a = attrs(&pods, "", Operation::Update, &notes);
        assert!(s.matches_object(&a, Some(&web)));
        assert!(!s.matches_object(&a, Some(&other)));
        a.old = Some(&web);
        assert!(s.matches_object(&a, Some(&other)), "the replaced object's labels count too");
        assert!(Selectors::parse(&json!({})).matches_object(&a, None));
    }
}
