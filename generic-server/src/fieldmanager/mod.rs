//! Field ownership and server-side apply (upstream's fieldmanager, built on
//! structured-merge-diff): this module owns `metadata.managedFields` for every
//! resource. The Store calls [`update`] on every tracked create and update, so
//! the fields a write changed move to its manager; [`apply`] merges an applied
//! configuration into the live object, removes what the manager stopped
//! applying and reports conflicts with other managers.
//!
//! Which lists and maps are atomic, sets or keyed comes from the resource's
//! [`TypeResolver`] (`Strategy::type_resolver`).

pub mod fieldpath;
pub mod typed;

use serde_json::{json, Map, Value};

use crate::meta;
use crate::registry::store::{WriteOptions, WriteResult};
use crate::registry::{Store, Subresource};
use crate::status::StatusError;
use fieldpath::{path_string, Path, PathElement, Set};
pub use typed::{Definitions, ListType, StructuralSchema, Type, TypeId, TypeResolver, Untyped};

/// kubectl's client-side apply annotation, which apply keeps current when the
/// object has one (upstream's lastAppliedUpdater).
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Upstream's cap on Update entries; older ones are merged into one bucket.
const MAX_UPDATE_MANAGERS: usize = 10;
const ANCIENT_CHANGES: &str = "ancient-changes";
/// Upstream's limit on a fieldManager's length, in bytes.
pub const FIELD_MANAGER_MAX_LENGTH: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One managedFields entry.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    manager: String,
    operation: Operation,
    api_version: String,
    subresource: String,
    time: Option<String>,
    set: Set,
}

impl Entry {
    /// Upstream's manager identifier: entries with the same one are one entry.
    /// Apply entries are one per manager whatever the version.
    fn identifier(&self) -> String {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation.as_str()));
        if self.operation == Operation::Update {
            m.insert("apiVersion".into(), json!(self.api_version));
        }
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m).to_string()
    }

    /// Whether two entries have the same [`Self::identifier`], without
    /// writing it out (every write asks this of every entry).
    fn same(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation != Operation::Update || self.api_version == other.api_version)
    }

    /// An entry with this one's identity and nothing else, to find it by.
    fn clone_id(&self) -> Entry {
        Entry {
            manager: self.manager.clone(),
            operation: self.operation,
            api_version: self.api_version.clone(),
            subresource: self.subresource.clone(),
            time: None,
            set: Set::new(),
        }
    }

    /// How conflict messages name a manager (upstream's printManager).
    fn printed(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        if self.operation == Operation::Update {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }

    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation.as_str()));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.set.to_fields_v1());
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m)
    }

    fn from_value(v: &Value) -> Result<Entry, String> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let operation = match v.get("operation").and_then(Value::as_str) {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            _ => return Err("operation must be `Apply` or `Update`".into()),
        };
        if s("apiVersion").is_empty() {
            return Err("apiVersion must not be empty".into());
        }
        match v.get("fieldsType").and_then(Value::as_str) {
            Some("FieldsV1") => {}
            Some(other) => return Err(format!("invalid fieldsType {other:?}")),
            None => return Err("missing fieldsType".into()),
        }
        let set = match v.get("fieldsV1") {
            None | Some(Value::Null) => Set::new(),
            Some(f) => Set::from_fields_v1(f)?,
        };
        Ok(Entry {
            manager: s("manager"),
            operation,
            api_version: s("apiVersion"),
            subresource: s("subresource"),
            time: v.get("time").and_then(Value::as_str).map(String::from),
            set,
        })
    }
}

/// The decoded managedFields of an object.
#[derive(Clone, Debug, Default, PartialEq)]
struct Managed(Vec<Entry>);

impl Managed {
    fn decode(obj: &Value) -> Result<Managed, String> {
        let mut out = Managed::default();
        let entries = match meta::metadata(obj).and_then(|m| m.get("managedFields")) {
            None | Some(Value::Null) => return Ok(out),
            Some(Value::Array(a)) => a,
            Some(_) => return Err("managedFields must be a list".into()),
        };
        for e in entries {
            out.put(Entry::from_value(e)?);
        }
        Ok(out)
    }

    /// Adds an entry, replacing one with the same identifier.
    fn put(&mut self, e: Entry) {
        self.0.retain(|x| !x.same(&e));
        self.0.push(e);
    }

    /// Removes and returns the entry that is the same manager's as `like`.
    fn take_same(&mut self, like: &Entry) -> Option<Entry> {
        let i = self.0.iter().position(|e| e.same(like))?;
        Some(self.0.remove(i))
    }

    fn take(&mut self, id: &str) -> Option<Entry> {
        let i = self.0.iter().position(|e| e.identifier() == id)?;
        Some(self.0.remove(i))
    }

    /// Writes the entries into the object in upstream's order.
    fn encode(mut self, obj: &mut Value) {
        self.0.retain(|e| !e.set.is_empty());
        if self.0.is_empty() {
            meta::remove_meta(obj, "managedFields");
            return;
        }
        self.0.sort_by(|p, q| {
            (p.operation, p.time.as_deref().unwrap_or(""), &p.manager, &p.api_version, &p.subresource).cmp(&(
                q.operation,
                q.time.as_deref().unwrap_or(""),
                &q.manager,
                &q.api_version,
                &q.subresource,
            ))
        });
        let list: Vec<Value> = self.0.iter().map(Entry::to_value).collect();
        meta::set_meta(obj, "managedFields", Value::Array(list));
    }

    /// Upstream's capManagersManager: beyond the cap, the oldest Update
    /// entries of each version are merged into one "ancient-changes" entry.
    fn cap_updaters(&mut self) {
        if self.0.iter().filter(|e| e.operation == Operation::Update).count() <= MAX_UPDATE_MANAGERS {
            return;
        }
        let mut updaters: Vec<(Option<String>, String)> = self
            .0
            .iter()
            .filter(|e| e.operation == Operation::Update)
            .map(|e| (e.time.clone(), e.identifier()))
            .collect();
        updaters.sort();
        let mut length = updaters.len();
        let mut first_of_version: Vec<(String, String)> = Vec::new();
        for (_, id) in updaters {
            if length <= MAX_UPDATE_MANAGERS {
                break;
            }
            let Some(e) = self.take(&id) else { continue };
            let bucket = Entry {
                manager: ANCIENT_CHANGES.into(),
                operation: Operation::Update,
                api_version: e.api_version.clone(),
                subresource: String::new(),
                time: e.time.clone(),
                set: Set::new(),
            };
            let bucket_id = bucket.identifier();
            match first_of_version.iter().find(|(v, _)| *v == e.api_version) {
                Some((_, first)) => {
                    let mut b = match self.take(&bucket_id) {
                        Some(b) => b,
                        None => {
                            let f = self.take(first).map(|f| f.set).unwrap_or_default();
                            Entry { set: f, ..bucket.clone() }
                        }
                    };
                    b.set.merge(e.set);
                    b.time = e.time.clone();
                    self.0.push(b);
                    length -= 1;
                }
                None => {
                    first_of_version.push((e.api_version.clone(), id));
                    self.0.push(e);
                }
            }
        }
    }
}

/// The manager of a non-apply write: `?fieldManager=` or, as upstream, the
/// User-Agent up to its first '/', printable characters only, capped.
pub fn manager_name(field_manager: Option<&str>, user_agent: &str) -> String {
    if let Some(m) = field_manager.filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let mut out = String::new();
    for c in user_agent.split('/').next().unwrap_or("").chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > FIELD_MANAGER_MAX_LENGTH {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        "unknown".into()
    } else {
        out
    }
}

/// Upstream's ValidateFieldManager: at most 128 bytes, printable characters.
pub fn validate_field_manager(manager: &str) -> Vec<crate::status::Cause> {
    use crate::status::Cause;
    let mut causes = Vec::new();
    if manager.len() > FIELD_MANAGER_MAX_LENGTH {
        causes.push(Cause {
            reason: "FieldValueTooLong",
            message: format!("Too long: may not be more than {FIELD_MANAGER_MAX_LENGTH} bytes"),
            field: "fieldManager".into(),
        });
    }
    for (i, c) in manager.char_indices().filter(|(_, c)| c.is_control()) {
        let detail = format!("invalid character U+{:04X} (at position {i})", c as u32);
        causes.push(Cause::invalid("fieldManager", &json!(manager), &detail));
    }
    causes
}

/// Who writes, and how the resource is shaped.
pub struct Writer<'a> {
    pub manager: &'a str,
    /// The group/version of the request.
    pub api_version: String,
    /// "" for the main resource.
    pub subresource: &'a str,
    /// The resource has a status subresource: the main resource's writes do
    /// not own status, the status subresource's own nothing else.
    pub status_split: bool,
    pub resolver: &'a dyn TypeResolver,
}

impl Writer<'_> {
    /// Upstream's reset fields: what a write through this endpoint never owns.
    fn reset(&self, set: Set) -> Set {
        let status = [PathElement::Field("status".into())];
        match self.subresource {
            "" if self.status_split => set.filter_top(&status, false),
            "status" => set.filter_top(&status, true),
            _ => set,
        }
    }

    /// Upstream's stripMeta: fields no manager owns.
    fn strip(&self, set: Set) -> Set {
        self.reset(set.difference(&STRIPPED))
    }

    /// What changed from `old` to `new`, both without bookkeeping.
    fn compare(&self, old: &Value, new: &Value) -> typed::Comparison {
        let mut c = typed::compare(self.resolver, old, new);
        c.added = self.reset(std::mem::take(&mut c.added));
        c.modified = self.reset(std::mem::take(&mut c.modified));
        c.removed = self.reset(std::mem::take(&mut c.removed));
        c
    }
}

/// What [`Writer::strip`] takes out of every set (the same for every write).
static STRIPPED: std::sync::LazyLock<Set> = std::sync::LazyLock::new(|| {
    let f = |s: &str| PathElement::Field(s.into());
    let mut stripped = Set::new();
    for top in ["apiVersion", "kind", "metadata"] {
        stripped.insert(&[f(top)]);
    }
    for m in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        stripped.insert(&[f("metadata"), f(m)]);
    }
    stripped
});

/// What the Store and this module stamp on an object.
const BOOKKEEPING: [&str; 2] = ["managedFields", "resourceVersion"];

/// An object without what the Store and this module stamp on it.
fn without_bookkeeping(v: &Value) -> Value {
    let mut v = v.clone();
    for field in BOOKKEEPING {
        meta::remove_meta(&mut v, field);
    }
    v
}

/// Runs `f` on `v` without its bookkeeping, which is then put back where it
/// was: the object a write is about is not copied to be looked at.
fn bookkeeping_aside<T>(v: &mut Value, f: impl FnOnce(&Value) -> T) -> T {
    let mut aside = Vec::new();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in BOOKKEEPING {
            if let Some(at) = m.keys().position(|k| k == field) {
                aside.extend(m.shift_remove_entry(field).map(|(k, x)| (at, k, x)));
            }
        }
    }
    let out = f(v);
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for (at, k, x) in aside.into_iter().rev() {
            m.shift_insert(at.min(m.len()), k, x);
        }
    }
    out
}

/// The managedFields a non-apply write starts from (upstream's
/// decodeLiveOrNew): a subresource write cannot set them; `managedFields: []`
/// resets them; otherwise valid, non-empty ones from the client win, and
/// anything else keeps the stored ones.
fn live_or_new(old: Option<&Value>, new: &Value, subresource: &str) -> Managed {
    let live = || old.and_then(|o| Managed::decode(o).ok()).unwrap_or_default();
    if !subresource.is_empty() {
        return live();
    }
    match meta::metadata(new).and_then(|m| m.get("managedFields")) {
        Some(Value::Array(a)) if a.is_empty() => return Managed::default(),
        Some(Value::Array(a)) if a.len() == 1 && a[0].as_object().is_some_and(Map::is_empty) => {
            return Managed::default()
        }
        _ => {}
    }
    match Managed::decode(new) {
        Ok(m) if !m.0.is_empty() => m,
        _ => live(),
    }
}

/// Records a non-apply write (create when `old` is None) in `new`'s
/// managedFields: what it changed moves to the writer's Update entry.
pub fn update(old: Option<&Value>, new: &mut Value, w: &Writer) {
    let mut managed = live_or_new(old, new, w.subresource);
    let changed = bookkeeping_aside(new, |new| match old {
        // Everything in a new object is new: its node set is the change,
        // without comparing it against an empty object.
        None => {
            if !managed.0.is_empty() {
                let touched = w.reset(typed::node_set(w.resolver, new, false));
                for e in managed.0.iter_mut() {
                    e.set.subtract(&touched);
                }
            }
            let zero_structs = matches!(w.resolver.root().id, TypeId::Definition(_));
            w.strip(typed::node_set(w.resolver, new, zero_structs))
        }
        Some(old) => {
            let cmp = w.compare(&without_bookkeeping(old), new);
            let touched = cmp.added.union(cmp.modified);
            for e in managed.0.iter_mut() {
                e.set.subtract(&touched);
                e.set.subtract(&cmp.removed);
            }
            w.strip(touched)
        }
    });
    if !changed.is_empty() {
        let mut entry = Entry {
            manager: w.manager.to_string(),
            operation: Operation::Update,
            api_version: w.api_version.clone(),
            subresource: w.subresource.to_string(),
            time: Some(meta::now_rfc3339()),
            set: Set::new(),
        };
        if let Some(prev) = managed.take_same(&entry) {
            entry.set = prev.set;
        }
        entry.set.merge(changed);
        managed.0.push(entry);
    }
    managed.0.retain(|e| !e.set.is_empty());
    managed.cap_updaters();
    managed.encode(new);
}

/// A server-side apply of `config` by `w.manager` onto `live` (None when the
/// object does not exist yet). Returns the new object with its managedFields.
///
/// `known` is the configuration without the fields the type does not have:
/// those still travel in the object (so fieldValidation sees them) but are
/// not owned.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    known: &Value,
    w: &Writer,
    force: bool,
) -> Result<Value, StatusError> {
    let r = w.resolver;
    let mut managed = live.and_then(|l| Managed::decode(l).ok()).unwrap_or_default();
    let live_clean = live.map(without_bookkeeping).unwrap_or_else(|| json!({}));
    let mut merged = typed::merge(r, &live_clean, &without_bookkeeping(config));
    let mut entry = Entry {
        manager: w.manager.to_string(),
        operation: Operation::Apply,
        api_version: w.api_version.clone(),
        subresource: w.subresource.to_string(),
        time: None,
        set: w.strip(typed::field_set(r, known)),
    };
    let last = managed.take_same(&entry);
    let id = entry.clone_id();
    entry.time = last.as_ref().and_then(|l| l.time.clone());
    managed.0.push(entry);
    if let Some(last) = last {
        // What the manager applied before and no manager holds now goes.
        let owned = managed.0.iter().fold(Set::new(), |acc, e| acc.union(e.set.clone()));
        let gone = last.set.difference(&typed::with_named_fields(r, &owned));
        typed::remove(r, &mut merged, &gone);
    }
    let cmp = w.compare(&live_clean, &merged);
    let touched = cmp.added.union(cmp.modified);
    let mut conflicts: Vec<(String, String, Path)> = Vec::new();
    for e in managed.0.iter().filter(|e| !e.same(&id)) {
        for p in e.set.intersection(&touched).paths() {
            conflicts.push((e.identifier(), e.printed(), p));
        }
    }
    if !conflicts.is_empty() && !force {
        // kubectl taking over from client-side apply (upstream's
        // lastAppliedManager): conflicts on fields the last-applied
        // annotation still describes as they are live are the same user's.
        let allowed = match live {
            Some(l) if w.manager == "kubectl" => last_applied_fields(l, w),
            _ => Set::new(),
        };
        conflicts.retain(|(_, _, p)| !allowed.has(p));
        if !conflicts.is_empty() {
            return Err(conflict_error(conflicts));
        }
    }
    for e in managed.0.iter_mut().filter(|e| !e.same(&id)) {
        e.set.subtract(&touched);
        e.set.subtract(&cmp.removed);
    }
    let changed = merged != live_clean;
    if let Some(e) = managed.0.iter_mut().find(|e| e.same(&id)) {
        if changed || e.time.is_none() {
            e.time = Some(meta::now_rfc3339());
        }
    }
    if w.manager == "kubectl" && live.is_some_and(|l| !annotation(l, LAST_APPLIED).is_empty()) {
        let mut applied = config.clone();
        if let Some(Value::Object(a)) = meta::metadata_mut(&mut applied).get_mut("annotations") {
            a.remove(LAST_APPLIED);
        }
        let text = applied.to_string();
        let annotations = meta::metadata_mut(&mut merged).entry("annotations").or_insert_with(|| json!({}));
        if let Value::Object(a) = annotations {
            a.insert(LAST_APPLIED.into(), json!(text));
        }
    }
    managed.encode(&mut merged);
    Ok(merged)
}

/// The fields `live`'s last-applied-configuration annotation sets to the
/// values they have live; empty when there is none, it does not parse, or it
/// was written for another version.
fn last_applied_fields(live: &Value, w: &Writer) -> Set {
    let Ok(last) = serde_json::from_str::<Value>(annotation(live, LAST_APPLIED)) else { return Set::new() };
    if last.get("apiVersion").and_then(Value::as_str) != Some(w.api_version.as_str()) {
        return Set::new();
    }
    let cmp = typed::compare(w.resolver, &without_bookkeeping(&last), &without_bookkeeping(live));
    typed::field_set(w.resolver, &last).difference(&cmp.modified).difference(&cmp.added).difference(&cmp.removed)
}

/// The parts of `config` that survive in `canonical` (the configuration as
/// the type decoded it): unknown fields dropped, values as the client sent them.
fn known_fields(config: &Value, canonical: &Value) -> Value {
    match (config, canonical) {
        (Value::Object(c), Value::Object(k)) => Value::Object(
            c.iter().filter_map(|(key, v)| k.get(key).map(|kv| (key.clone(), known_fields(v, kv)))).collect(),
        ),
        (Value::Array(c), Value::Array(k)) if c.len() == k.len() => {
            Value::Array(c.iter().zip(k).map(|(v, kv)| known_fields(v, kv)).collect())
        }
        _ => config.clone(),
    }
}

impl Store {
    /// Server-side apply of `config` to one object: creates it when missing,
    /// else merges, through the Strategy like any other write.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply(
        &self,
        namespace: &str,
        name: &str,
        subresource: Option<&Subresource>,
        config: Value,
        manager: &str,
        force: bool,
        opts: &WriteOptions,
    ) -> Result<WriteResult, StatusError> {
        if !config.is_object() {
            return Err(StatusError::bad_request("the body of an apply patch must be an object"));
        }
        let api_version = config.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = config.get("kind").and_then(Value::as_str).unwrap_or("");
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        if (group, version, kind) != (self.info.group.as_str(), self.info.version.as_str(), self.info.kind.as_str()) {
            return Err(StatusError::bad_request(format!("invalid object type: {group}/{version}, Kind={kind}")));
        }
        if meta::metadata(&config).and_then(|m| m.get("managedFields")).is_some_and(|m| !m.is_null()) {
            return Err(StatusError::bad_request("metadata.managedFields must be nil"));
        }
        let body_name = meta::name(&config);
        if !body_name.is_empty() && body_name != name {
            return Err(StatusError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let known = match self.schema.decode(config.clone()) {
            Ok(d) => known_fields(&config, &d.object),
            Err(_) => config.clone(),
        };
        let resolver = self.schema.types.clone();
        let writer = self.field_writer(manager, subresource, resolver.as_ref());
        // managedFields are the apply's; the Store must not record an Update.
        let untracked = WriteOptions { field_manager: None, ..opts.clone() };
        let stated_rv = meta::resource_version(&config).to_string();
        let prepare = |live: Option<&Value>| -> Result<Value, StatusError> {
            let mut obj = apply(live, &config, &known, &writer, force)?;
            if let (Some(live), None) = (live, subresource) {
                obj = self.unless_only_defaults_differ(obj, live, manager);
            }
            meta::set_meta(&mut obj, "name", json!(name));
            if live.is_some() && !stated_rv.is_empty() {
                meta::set_meta(&mut obj, "resourceVersion", json!(stated_rv));
            } else {
                meta::remove_meta(&mut obj, "resourceVersion");
            }
            Ok(obj)
        };
        for _ in 0..8 {
            let exists = match self.get(namespace, name).await {
                Ok(_) => true,
                Err(e) if e.is_not_found() => false,
                Err(e) => return Err(e),
            };
            if exists || subresource.is_some() {
                match self.update_with(namespace, name, subresource, &untracked, prepare).await {
                    Err(e) if e.is_not_found() && exists && subresource.is_none() => continue,
                    other => return other,
                }
            }
            match self.create(namespace, prepare(None)?, &untracked).await {
                Err(e) if e.is_already_exists() => continue,
                other => return other,
            }
        }
        Err(StatusError::conflict(
            &self.info.group,
            &self.info.plural,
            name,
            "too many concurrent updates, please retry",
        ))
    }
}

impl Store {
    /// An apply whose merge differs from the live object only in what
    /// defaulting puts back changes nothing: it keeps the manager's old
    /// timestamp, so the Store sees no change and writes nothing (upstream's
    /// no-op apply), instead of a new resourceVersion for a new time.
    fn unless_only_defaults_differ(&self, applied: Value, live: &Value, manager: &str) -> Value {
        let ours = |e: &Value| {
            e.get("manager").and_then(Value::as_str) == Some(manager)
                && e.get("operation").and_then(Value::as_str) == Some("Apply")
                && e.get("subresource").and_then(Value::as_str).unwrap_or("").is_empty()
        };
        let old_time = live
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .and_then(|entries| entries.iter().find(|e| ours(e)))
            .and_then(|e| e.get("time").cloned());
        let Some(old_time) = old_time else { return applied };
        let mut same = applied.clone();
        if let Some(entries) = same.pointer_mut("/metadata/managedFields").and_then(Value::as_array_mut) {
            for e in entries.iter_mut().filter(|e| ours(e)) {
                e["time"] = old_time.clone();
            }
        }
        let mut defaulted = same.clone();
        self.strategy.default(&mut defaulted);
        let strip = |v: &Value| {
            let mut v = v.clone();
            meta::remove_meta(&mut v, "resourceVersion");
            v
        };
        if strip(&defaulted) == strip(live) {
            same
        } else {
            applied
        }
    }
}

fn annotation<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.pointer("/metadata/annotations").and_then(|a| a.get(key)).and_then(Value::as_str).unwrap_or("")
}

/// Upstream's apply conflict: 409 Conflict, one FieldManagerConflict cause
/// per field, and a message grouping the fields by manager.
fn conflict_error(mut conflicts: Vec<(String, String, Path)>) -> StatusError {
    conflicts.sort_by(|a, b| a.0.cmp(&b.0));
    let message = if let [(_, printed, path)] = conflicts.as_slice() {
        format!("Apply failed with 1 conflict: conflict with {printed}: {}", path_string(path))
    } else {
        let mut lines = Vec::new();
        let mut current = None;
        for (id, printed, path) in &conflicts {
            if current != Some(id) {
                lines.push(format!("conflicts with {printed}:"));
                current = Some(id);
            }
            lines.push(format!("- {}", path_string(path)));
        }
        format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(_, printed, path)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with {printed}"), "field": path_string(path)})
        })
        .collect();
    let mut e = StatusError::new(409, crate::status::Reason::Conflict, message);
    e.details = Some(Box::new(json!({ "causes": causes })));
    e
}

#[cfg(test)]
mod tests;
