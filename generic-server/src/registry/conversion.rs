//! One resource served in several versions over one stored version
//! (autoscaling/v1 HorizontalPodAutoscalers stored as autoscaling/v2;
//! events.k8s.io/v1 Events stored as core/v1 Events; a CRD's versions).
//!
//! A [`VersionConverter`] sits at the codec seam of the served version's Store: it
//! converts an object to the stored version just before encoding it and from
//! the stored version just after decoding it, so every read path (get, list,
//! watch events, the current object a patch or apply starts from) and every
//! write sees the served version, and storage only ever holds the stored one.
//! Upstream converts through its internal types; here the stored version's
//! JSON plays the internal form's part, which is why a served version's rules
//! are the stored version's [`Strategy`] seen through the conversion
//! ([`Converted`]): validation messages name the stored version's fields, as
//! upstream's name the internal ones. A CRD's versions convert through its
//! own converter (apiextensions: None or a webhook), which may fail.

use std::sync::Arc;

use serde_json::Value;

use super::{Strategy, TableColumn};
use crate::meta::NameRule;
use crate::status::{Cause, StatusError};

/// How a Store's objects convert between its served version and the stored
/// one, once where the Store encodes and decodes.
#[async_trait::async_trait]
pub trait VersionConverter: Send + Sync {
    /// A served-version object in the stored version, for writing.
    async fn to_stored(&self, object: Value) -> Result<Value, StatusError>;
    /// Stored objects in the served version, in order: a page, or an event's
    /// object and its previous state, converted in one call.
    async fn to_served(&self, objects: Vec<Value>) -> Result<Vec<Value>, StatusError>;
}

/// A pair of pure functions between a served version's JSON and the stored
/// version's; each sets the apiVersion of the form it produces. A round trip
/// (served -> stored -> served) must give back what it was given.
#[derive(Clone, Copy)]
pub struct Conversion {
    pub to_stored: fn(Value) -> Value,
    pub from_stored: fn(Value) -> Value,
}

impl Conversion {
    pub fn to_stored(&self, obj: &Value) -> Value {
        (self.to_stored)(obj.clone())
    }

    pub fn from_stored(&self, obj: Value) -> Value {
        (self.from_stored)(obj)
    }

    /// Runs `f` on the stored form of `obj` and brings the result back.
    fn through(&self, obj: &mut Value, f: impl FnOnce(&mut Value)) {
        let mut stored = self.to_stored(obj);
        f(&mut stored);
        *obj = self.from_stored(stored);
    }
}

#[async_trait::async_trait]
impl VersionConverter for Conversion {
    async fn to_stored(&self, object: Value) -> Result<Value, StatusError> {
        Ok((self.to_stored)(object))
    }

    async fn to_served(&self, objects: Vec<Value>) -> Result<Vec<Value>, StatusError> {
        Ok(objects.into_iter().map(self.from_stored).collect())
    }
}

/// The stored version's strategy, applied to a served version's objects
/// through the conversion.
pub struct Converted {
    pub inner: Arc<dyn Strategy>,
    pub conversion: Conversion,
}

impl Strategy for Converted {
    fn name_rule(&self) -> NameRule {
        self.inner.name_rule()
    }
    fn tracks_generation(&self) -> bool {
        self.inner.tracks_generation()
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        self.conversion.through(obj, |o| self.inner.prepare_for_create(o));
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        let old = self.conversion.to_stored(old);
        self.conversion.through(new, |n| self.inner.prepare_for_update(n, &old));
    }
    fn default(&self, obj: &mut Value) {
        self.conversion.through(obj, |o| self.inner.default(o));
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        self.inner.validate(&self.conversion.to_stored(obj))
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        self.inner.validate_update(&self.conversion.to_stored(new), &self.conversion.to_stored(old))
    }
    fn allow_create_on_update(&self) -> bool {
        self.inner.allow_create_on_update()
    }
    fn allow_unconditional_update(&self) -> bool {
        self.inner.allow_unconditional_update()
    }
    fn field_labels(&self, obj: &Value) -> Vec<(&'static str, String)> {
        self.inner.field_labels(&self.conversion.to_stored(obj))
    }
    fn supported_field_labels(&self) -> &'static [&'static str] {
        self.inner.supported_field_labels()
    }
    fn table_columns(&self) -> Vec<TableColumn> {
        self.inner.table_columns()
    }
    fn table_row(&self, obj: &Value) -> Vec<Value> {
        self.inner.table_row(&self.conversion.to_stored(obj))
    }
    fn pending_finalizers(&self, obj: &Value) -> bool {
        self.inner.pending_finalizers(&self.conversion.to_stored(obj))
    }
    fn prepare_for_delete(&self, obj: &mut Value) {
        self.conversion.through(obj, |o| self.inner.prepare_for_delete(o));
    }
    fn canonicalize(&self, obj: &mut Value) {
        self.conversion.through(obj, |o| self.inner.canonicalize(o));
    }
    fn abort_create(&self, obj: &Value) {
        self.inner.abort_create(&self.conversion.to_stored(obj))
    }
    fn after_update(&self, new: &Value, old: &Value) {
        self.inner.after_update(&self.conversion.to_stored(new), &self.conversion.to_stored(old))
    }
    fn after_create(&self, obj: &Value) {
        self.inner.after_create(&self.conversion.to_stored(obj))
    }
    fn after_delete(&self, obj: &Value) {
        self.inner.after_delete(&self.conversion.to_stored(obj))
    }
}
