//! RBAC objects the server keeps, not decisions (the authorizer is
//! elsewhere): upstream's default [`policy`], reconciled into storage at
//! every start ([`reconcile`], comparing rules as [`rules`] does), and the
//! ClusterRole [`aggregation`] controller.

pub mod aggregation;
pub mod policy;
pub mod reconcile;
pub mod rules;

pub use policy::policy;
pub use reconcile::{ensure, RbacStores};
