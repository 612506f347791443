//! Resources served without a Store, each through one narrow interface as
//! upstream's rest package has them:
//! - only ever created, never stored ([`CreateOnly`] with a [`Creater`],
//!   upstream's rest.Creater): the review kinds (TokenReview,
//!   SubjectAccessReview, ...), whose answer to a POST is the posted object
//!   with its status filled. The endpoints layer decodes and checks the body
//!   as it does for a Store's create (type, fieldValidation) and writes the
//!   answer; a [`Creater`] holds only the meaning.
//! - only ever read, computed on each read ([`ReadOnly`] with a [`Reader`],
//!   upstream's rest.Getter, rest.Lister and TableConvertor): ComponentStatus.
//!   The endpoints layer routes, filters lists by selector and writes every
//!   form (JSON, YAML, protobuf, Table, PartialObjectMetadata).

use std::sync::Arc;

use serde_json::Value;

use super::registration::BuiltIn;
use super::{table, ResourceInfo, Schema, TableColumn};
use crate::authn::{TokenAuthenticator, UserInfo};
use crate::status::StatusError;

/// A create-only resource as a server installs it: its identity (verbs:
/// create only), how its objects decode, and what a create does.
#[derive(Clone)]
pub struct CreateOnly {
    pub info: ResourceInfo,
    pub schema: Schema,
    pub creater: Arc<dyn Creater>,
}

/// The identity of built-in kind `K` served with `verbs` and no storage (so
/// no storageVersionHash in discovery, as upstream's).
fn unstored<K: BuiltIn>(verbs: &'static [&'static str]) -> ResourceInfo {
    ResourceInfo { verbs, storage_version_hash: String::new(), ..ResourceInfo::of::<K>() }
}

impl CreateOnly {
    /// A built-in kind: identity and schema from `K`.
    pub fn of<K: BuiltIn>(creater: impl Creater + 'static) -> CreateOnly {
        CreateOnly {
            info: unstored::<K>(crate::discovery::CREATE_ONLY),
            schema: Schema::of::<K>(),
            creater: Arc::new(creater),
        }
    }
}

/// One create, decoded: the request's namespace (empty for cluster-scoped
/// kinds), the object as its type has it, and who is asking.
pub struct CreateCall<'a> {
    pub namespace: &'a str,
    pub object: Value,
    /// The caller, as the authentication filter established it.
    pub user: Option<&'a UserInfo>,
    /// The server's token authenticators, for checking a token on a client's
    /// behalf.
    pub tokens: Option<&'a TokenAuthenticator>,
    pub dry_run: bool,
}

/// What a create-only kind does with a create; the answer is written with 201.
#[async_trait::async_trait]
pub trait Creater: Send + Sync {
    async fn create(&self, call: CreateCall<'_>) -> Result<Value, StatusError>;
}

/// A read-only resource as a server installs it: its identity (verbs: get
/// and list) and what reads it.
#[derive(Clone)]
pub struct ReadOnly {
    pub info: ResourceInfo,
    pub reader: Arc<dyn Reader>,
    /// The Warning every answer carries: upstream's for a deprecated API.
    pub deprecation: Option<&'static str>,
}

impl ReadOnly {
    /// A built-in kind: identity from `K`.
    pub fn of<K: BuiltIn>(reader: impl Reader + 'static) -> ReadOnly {
        ReadOnly { info: unstored::<K>(crate::discovery::VERBS_GET_LIST), reader: Arc::new(reader), deprecation: None }
    }

    pub fn short_names(mut self, names: &[&str]) -> Self {
        self.info.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Every answer warns with `warning` (upstream's deprecated-API warning).
    pub fn deprecated(self, warning: &'static str) -> Self {
        ReadOnly { deprecation: Some(warning), ..self }
    }
}

/// What a read-only kind computes: one object or all of them (in a
/// namespace, for a namespaced kind), typed, and their table rows.
#[async_trait::async_trait]
pub trait Reader: Send + Sync {
    /// The object `name`; None is a 404.
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<Value>, StatusError>;

    /// Every object; the endpoints layer applies the selectors.
    async fn list(&self, namespace: &str) -> Result<Vec<Value>, StatusError>;

    /// Table columns, as [`super::Strategy::table_columns`].
    fn table_columns(&self) -> Vec<TableColumn> {
        table::default_columns()
    }

    /// One row's cells, as [`super::Strategy::table_row`].
    fn table_row(&self, object: &Value) -> Vec<Value> {
        table::default_row(object)
    }
}
