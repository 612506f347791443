//! Records a write keeps outside its own object (upstream's genericregistry
//! Store hooks BeginCreate and BeginUpdate with the FinishFunc they return,
//! and AfterDelete): a Service's cluster IPs are held by IPAddress objects,
//! made before the Service is stored and undone when it is not. The Store
//! calls them around the storage write of a real (not dry-run) request,
//! after validation and admission, so a refused request makes no record.

use serde_json::Value;

use crate::status::StatusError;

#[async_trait::async_trait]
pub trait WriteHooks: Send + Sync {
    /// Before `object` is first stored; an error fails the create.
    async fn begin_create(&self, _object: &Value) -> Result<(), StatusError> {
        Ok(())
    }

    /// After the create's write, `stored` telling whether it happened:
    /// records made by `begin_create` for a create that failed go away.
    async fn finish_create(&self, _object: &Value, _stored: bool) {}

    /// Before `new` replaces `old`; an error fails the update.
    async fn begin_update(&self, _new: &Value, _old: &Value) -> Result<(), StatusError> {
        Ok(())
    }

    /// After the update's write, `stored` telling whether it happened.
    async fn finish_update(&self, _new: &Value, _old: &Value, _stored: bool) {}

    /// After `object` is removed from storage.
    async fn after_delete(&self, _object: &Value) {}
}
