//! RBAC: upstream's default [`policy`], reconciled into storage at every
//! start ([`reconcile`], comparing rules as [`rules`] does), the ClusterRole
//! [`aggregation`] controller, the [`authorizer`] that decides requests by
//! the policy, and the [`escalation`] check on writes of roles and bindings.

pub mod aggregation;
pub mod authorizer;
pub mod escalation;
pub mod policy;
pub mod reconcile;
pub mod rules;

pub use authorizer::{AuthorizerStores, Rbac, Unresolved};
pub use policy::policy;
pub use reconcile::{ensure, RbacStores};
