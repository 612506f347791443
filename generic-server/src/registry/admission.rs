//! Admission: checks that run on every write after decoding and before storage,
//! across resources (NamespaceLifecycle is the first). Plugins are supplied by
//! the binary, so a Store never knows which are configured. As upstream, a
//! plugin may also mutate ([`Admission::mutate`], before validation) besides
//! validating ([`Admission::admit`], after it).

use serde_json::Value;

use crate::authn::UserInfo;
use crate::status::StatusError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

pub struct AdmissionAttributes<'a> {
    pub operation: Operation,
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub object: Option<&'a Value>,
    /// The stored object an update replaces (upstream's GetOldObject).
    pub old: Option<&'a Value>,
    /// Who asks (upstream's GetUserInfo); None for the server's own writes.
    pub user: Option<&'a UserInfo>,
    pub dry_run: bool,
}

#[async_trait::async_trait]
pub trait Admission: Send + Sync {
    async fn admit(&self, attrs: &AdmissionAttributes<'_>) -> Result<(), StatusError>;

    /// Upstream's MutationInterface: changes a create's or update's object
    /// before it is validated (`attrs.object` is None; `old` is the stored
    /// object on update).
    async fn mutate(
        &self,
        _attrs: &AdmissionAttributes<'_>,
        _object: &mut Value,
        _old: Option<&Value>,
    ) -> Result<(), StatusError> {
        Ok(())
    }
}
