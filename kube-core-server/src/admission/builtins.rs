//! The default-on plugins of [`defaults`](super::defaults),
//! [`storage`](super::storage), [`runtimeclass`](super::runtimeclass) and
//! [`certificates`](super::certificates) as one set: each under its
//! [`Plugin`] name for the chain, then bound to the Stores it reads and to
//! the server's authorizer once those exist.

use std::sync::Arc;

use generic_server::authz::{Authorizer, Deferred};
use generic_server::registry::Store;

use super::certificates::{CertificateSubjectRestriction, SignerCheck};
use super::defaults::{DefaultIngressClass, DefaultTolerationSeconds, TaintNodesByCondition};
use super::runtimeclass::RuntimeClass;
use super::storage::{DefaultStorageClass, PersistentVolumeClaimResize, StorageObjectInUseProtection};
use super::Plugin;
use crate::server::Provided;

#[derive(Default)]
pub struct Builtins {
    /// Its seconds come from the flags.
    pub tolerations: Arc<DefaultTolerationSeconds>,
    ingress_class: Arc<DefaultIngressClass>,
    storage_class: Arc<DefaultStorageClass>,
    resize: Arc<PersistentVolumeClaimResize>,
    runtime_class: Arc<RuntimeClass>,
    /// What the certificate plugins ask, bound to the server's authorizer.
    authorizer: Arc<Deferred>,
}

/// The Stores the plugins read.
pub struct BuiltinStores<'a> {
    pub storage_classes: &'a Arc<Store>,
    pub ingress_classes: &'a Arc<Store>,
    pub runtime_classes: &'a Arc<Store>,
}

impl Builtins {
    /// Each plugin with its halves.
    pub fn provided(&self) -> Vec<(Plugin, Provided)> {
        let mutating =
            |m: Arc<dyn generic_server::registry::Mutating>| Provided { mutating: Some(m), validating: None };
        let validating =
            |v: Arc<dyn generic_server::registry::Validating>| Provided { mutating: None, validating: Some(v) };
        let authorizer: Arc<dyn Authorizer> = self.authorizer.clone();
        vec![
            (Plugin::TaintNodesByCondition, mutating(Arc::new(TaintNodesByCondition))),
            (Plugin::DefaultTolerationSeconds, mutating(self.tolerations.clone())),
            (Plugin::DefaultStorageClass, mutating(self.storage_class.clone())),
            (Plugin::StorageObjectInUseProtection, mutating(Arc::new(StorageObjectInUseProtection))),
            (Plugin::PersistentVolumeClaimResize, validating(self.resize.clone())),
            (
                Plugin::RuntimeClass,
                Provided { mutating: Some(self.runtime_class.clone()), validating: Some(self.runtime_class.clone()) },
            ),
            (Plugin::CertificateApproval, validating(Arc::new(SignerCheck::approval(authorizer.clone())))),
            (Plugin::CertificateSigning, validating(Arc::new(SignerCheck::signing(authorizer)))),
            (Plugin::CertificateSubjectRestriction, validating(Arc::new(CertificateSubjectRestriction))),
            (Plugin::DefaultIngressClass, mutating(self.ingress_class.clone())),
        ]
    }

    pub fn bind(&self, stores: BuiltinStores<'_>, authorizer: Arc<dyn Authorizer>) {
        self.storage_class.classes.bind(stores.storage_classes);
        self.resize.classes.bind(stores.storage_classes);
        self.ingress_class.classes.bind(stores.ingress_classes);
        self.runtime_class.classes.bind(stores.runtime_classes);
        self.authorizer.bind(authorizer);
    }
}
