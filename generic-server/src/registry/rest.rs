//! Resources that are only ever created and never stored (upstream's
//! rest.Creater without a Store): the review kinds (TokenReview,
//! SubjectAccessReview, ...), whose answer to a POST is the posted object with
//! its status filled. The endpoints layer decodes and checks the body as it
//! does for a Store's create (type, fieldValidation) and writes the answer;
//! a [`Creater`] holds only the meaning.

use std::sync::Arc;

use serde_json::Value;

use super::registration::BuiltIn;
use super::{ResourceInfo, Schema};
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

impl CreateOnly {
    /// A built-in kind: identity and schema from `K`.
    pub fn of<K: BuiltIn>(creater: impl Creater + 'static) -> CreateOnly {
        let info = ResourceInfo {
            verbs: crate::discovery::CREATE_ONLY,
            storage_version_hash: String::new(),
            ..ResourceInfo::of::<K>()
        };
        CreateOnly { info, schema: Schema::of::<K>(), creater: Arc::new(creater) }
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
