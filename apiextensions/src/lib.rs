//! The apiextensions server: the last server in the delegation chain, which will
//! serve every Established CustomResourceDefinition from its schema. Until CRDs
//! land it holds no resources and hands every request to its delegate (the 404
//! handler), but it is really in the chain so that nothing in front of it needs
//! to change when it starts serving.

use std::sync::Arc;

use generic_server::endpoints::ResourceServer;
use generic_server::handler::DynHandler;

/// Builds the apiextensions server in front of `delegate`.
pub fn new_server(delegate: DynHandler) -> Arc<ResourceServer> {
    Arc::new(ResourceServer::new(delegate))
}
