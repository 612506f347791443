//! The registry of Stores across every server in the chain: the namespace
//! controller empties the namespaced ones when a namespace goes away, and
//! admission finds a kind's Store in it (a policy's params) and the other
//! versions of a request's resource (matchPolicy Equivalent).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use super::Store;

/// The Stores of the chain: every served version of every resource, so a
/// lookup by version finds that version's Store. The versions of one
/// resource share its key root (autoscaling/v1 and v2
/// HorizontalPodAutoscalers; core and events.k8s.io Events; a CRD's
/// versions). Servers register theirs (apiextensions adds a custom
/// resource's as CRDs come and go).
#[derive(Default)]
pub struct StoreRegistry {
    stores: RwLock<Vec<Arc<Store>>>,
    /// Key roots served in more than one version: admission asks for a
    /// request's other versions whenever a matchPolicy Equivalent rule
    /// misses, and most resources have none.
    shared_roots: RwLock<HashSet<String>>,
}

fn same_version(a: &Store, b: &Store) -> bool {
    a.info.key_root == b.info.key_root
        && a.info.group == b.info.group
        && a.info.version == b.info.version
        && a.info.plural == b.info.plural
}

impl StoreRegistry {
    pub fn new() -> Self {
        <Self as Default>::default()
    }

    /// Adds a Store. Registering the same version of the same resource
    /// again replaces the earlier Store.
    pub fn register(&self, store: Arc<Store>) {
        let mut s = self.stores.write().unwrap_or_else(|e| e.into_inner());
        match s.iter_mut().find(|x| same_version(x, &store)) {
            Some(slot) => *slot = store,
            None => s.push(store),
        }
        self.note_shared_roots(&s);
    }

    /// Removes every version stored under `key_root`.
    pub fn unregister(&self, key_root: &str) {
        let mut s = self.stores.write().unwrap_or_else(|e| e.into_inner());
        s.retain(|x| x.info.key_root != key_root);
        self.note_shared_roots(&s);
    }

    fn note_shared_roots(&self, stores: &[Arc<Store>]) {
        let mut seen = HashSet::new();
        let shared = stores.iter().filter(|x| !seen.insert(x.info.key_root.as_str())).map(|x| x.info.key_root.clone());
        *self.shared_roots.write().unwrap_or_else(|e| e.into_inner()) = shared.collect();
    }

    /// One Store per namespaced key root (the first registered version), so
    /// whoever walks them sees each stored object once.
    pub fn namespaced(&self) -> Vec<Arc<Store>> {
        let s = self.stores.read().unwrap_or_else(|e| e.into_inner());
        let mut roots = HashSet::new();
        s.iter().filter(|x| x.info.namespaced && roots.insert(x.info.key_root.as_str())).cloned().collect()
    }

    fn find(&self, matches: impl Fn(&Store) -> bool) -> Option<Arc<Store>> {
        self.stores.read().unwrap_or_else(|e| e.into_inner()).iter().find(|s| matches(s)).cloned()
    }

    /// The Store of a kind, by group and kind (the first version registered).
    pub fn of_kind(&self, group: &str, kind: &str) -> Option<Arc<Store>> {
        self.find(|s| s.info.group == group && s.info.kind == kind)
    }

    /// The Store serving this version of a kind.
    pub fn of_gvk(&self, group: &str, version: &str, kind: &str) -> Option<Arc<Store>> {
        self.find(|s| s.info.group == group && s.info.version == version && s.info.kind == kind)
    }

    /// The Store of a resource, by group and plural (the first version
    /// registered).
    pub fn of_resource(&self, group: &str, plural: &str) -> Option<Arc<Store>> {
        self.find(|s| s.info.group == group && s.info.plural == plural)
    }

    /// The versions of `info`'s resource; nothing for a resource served in
    /// one version only.
    pub fn versions_of(&self, info: &super::ResourceInfo) -> Versions {
        let mut v = Versions::default();
        if !self.shared_roots.read().unwrap_or_else(|e| e.into_inner()).contains(&info.key_root) {
            // One version: nothing to convert to or from.
            return v;
        }
        let s = self.stores.read().unwrap_or_else(|e| e.into_inner());
        for store in s.iter().filter(|x| x.info.key_root == info.key_root) {
            let i = &store.info;
            match i.group == info.group && i.version == info.version && i.plural == info.plural {
                true => v.own = Some(store.clone()),
                false => v.others.push(store.clone()),
            }
        }
        v
    }

    /// The Store serving this version of a resource.
    pub fn of_gvr(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Store>> {
        self.find(|s| s.info.group == group && s.info.version == version && s.info.plural == plural)
    }
}

/// The Stores of one resource (upstream's equivalent resources: one key root).
#[derive(Default)]
pub struct Versions {
    /// The Store of exactly the version asked about (None too when there
    /// are no others: nothing converts).
    pub own: Option<Arc<Store>>,
    /// The others, in registration order.
    pub others: Vec<Arc<Store>>,
}
