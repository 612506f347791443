//! The storage plugins.
//!
//! DefaultStorageClass (upstream plugin/pkg/admission/storage/storageclass/
//! setdefault): a claim that names no class gets the default StorageClass.
//!
//! StorageObjectInUseProtection (storage/storageobjectinuseprotection):
//! every new claim and volume carries the protection finalizer, which the
//! controllers remove once no pod uses the claim and no claim the volume.
//!
//! PersistentVolumeClaimResize (storage/persistentvolume/resize): a claim
//! grows only when bound and when its StorageClass allows expansion.

use serde_json::{json, Value};

use generic_server::meta;
use generic_server::registry::{AdmissionAttributes, Mutating, Operation, Validating};
use generic_server::status::StatusError;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use super::defaults::{has_annotation, newest_default};
use crate::registry::podspec::parse_quantity;
use crate::registry::storageclass::is_default_class;
use crate::registry::{child, str_at};
use generic_server::registry::BoundStore;

/// The claim annotation that named a class before spec.storageClassName.
const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// The DefaultStorageClass plugin; see the module doc.
pub struct DefaultStorageClass {
    pub classes: BoundStore,
}

impl Default for DefaultStorageClass {
    fn default() -> Self {
        DefaultStorageClass { classes: BoundStore::new("storageclasses") }
    }
}

#[async_trait::async_trait]
impl Mutating for DefaultStorageClass {
    async fn admit(&self, a: &AdmissionAttributes<'_>, claim: &mut Value) -> Result<(), StatusError> {
        if a.operation != Operation::Create || !a.is_main::<PersistentVolumeClaim>() {
            return Ok(());
        }
        // Upstream's PersistentVolumeClaimHasClass: "" is a choice too (no class).
        let named = claim.pointer("/spec/storageClassName").is_some_and(|c| !c.is_null());
        if named || has_annotation(claim, BETA_CLASS_ANNOTATION) {
            return Ok(());
        }
        let classes = self.classes.list().await.map_err(|e| a.forbidden(&e.message))?;
        if let Some(class) = newest_default(classes, is_default_class) {
            child(claim, "spec").insert("storageClassName".into(), json!(meta::name(&class)));
        }
        Ok(())
    }
}

/// The StorageObjectInUseProtection plugin; see the module doc.
pub struct StorageObjectInUseProtection;

#[async_trait::async_trait]
impl Mutating for StorageObjectInUseProtection {
    async fn admit(&self, a: &AdmissionAttributes<'_>, obj: &mut Value) -> Result<(), StatusError> {
        if a.operation != Operation::Create {
            return Ok(());
        }
        let finalizer = if a.is_main::<PersistentVolumeClaim>() {
            PVC_PROTECTION
        } else if a.is_main::<PersistentVolume>() {
            PV_PROTECTION
        } else {
            return Ok(());
        };
        let mut finalizers = meta::finalizers(obj);
        if !finalizers.iter().any(|f| f == finalizer) {
            finalizers.push(finalizer.to_string());
            meta::set_meta(obj, "finalizers", json!(finalizers));
        }
        Ok(())
    }
}

/// The PersistentVolumeClaimResize plugin; see the module doc.
pub struct PersistentVolumeClaimResize {
    pub classes: BoundStore,
}

impl Default for PersistentVolumeClaimResize {
    fn default() -> Self {
        PersistentVolumeClaimResize { classes: BoundStore::new("storageclasses") }
    }
}

/// Upstream's GetPersistentVolumeClaimClass: the beta annotation first.
fn claim_class(claim: &Value) -> &str {
    match claim.pointer("/metadata/annotations").and_then(|a| a.get(BETA_CLASS_ANNOTATION)) {
        Some(v) => v.as_str().unwrap_or(""),
        None => str_at(claim, "/spec/storageClassName"),
    }
}

fn requested_storage(claim: &Value) -> f64 {
    parse_quantity(str_at(claim, "/spec/resources/requests/storage")).unwrap_or(0.0)
}

impl PersistentVolumeClaimResize {
    /// Whether the claim's class (the same before and after) allows expansion.
    async fn class_allows(&self, new: &Value, old: &Value) -> Result<bool, StatusError> {
        let (class, old_class) = (claim_class(new), claim_class(old));
        if class.is_empty() || class != old_class {
            return Ok(false);
        }
        let allowed = self.classes.find(class).await?;
        Ok(allowed.and_then(|c| c.get("allowVolumeExpansion").and_then(Value::as_bool)) == Some(true))
    }
}

#[async_trait::async_trait]
impl Validating for PersistentVolumeClaimResize {
    async fn validate(&self, a: &AdmissionAttributes<'_>) -> Result<(), StatusError> {
        if a.operation != Operation::Update || !a.is_main::<PersistentVolumeClaim>() {
            return Ok(());
        }
        let (Some(new), Some(old)) = (a.object, a.old) else { return Ok(()) };
        if requested_storage(new) <= requested_storage(old) {
            return Ok(());
        }
        if str_at(old, "/status/phase") != "Bound" {
            return Err(a.forbidden("Only bound persistent volume claims can be expanded"));
        }
        // A failed class lookup refuses as a missing class does (upstream's
        // allowResize reads a lister and treats any error as no).
        if !self.class_allows(new, old).await.unwrap_or(false) {
            return Err(a.forbidden(
                "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
            ));
        }
        Ok(())
    }
}
