//! Dynamic admission (upstream's k8s.io/apiserver/pkg/admission/plugin):
//! the plugins whose behaviour is configured by API objects rather than
//! flags. [`matching`] decides which requests a configuration applies to,
//! shared by webhooks and policies as upstream shares its predicates;
//! [`webhook`] calls admission webhooks; [`policy`] is the
//! ValidatingAdmissionPolicy plugin.

pub mod matching;
pub mod policy;
pub mod webhook;
