//! Builds the delegation chain on the chosen storage.

use std::path::Path;
use std::sync::Arc;

use generic_server::handler::{DynHandler, NotFoundHandler};
use generic_server::registry::{DefaultStrategy, ResourceInfo, Store};
use generic_server::storage::embedded::EmbeddedStorage;
use generic_server::storage::Storage;

use crate::Options;

pub async fn build_chain(_opts: &Options, data_dir: &Path, _port: u16) -> Result<DynHandler, String> {
    let storage: Arc<dyn Storage> =
        Arc::new(EmbeddedStorage::open(&data_dir.join("state.redb")).map_err(|e| format!("opening the store: {e}"))?);
    let not_found: DynHandler = Arc::new(NotFoundHandler);
    let apiext: DynHandler = apiextensions::new_server(not_found);
    let core = Arc::new(generic_server::endpoints::ResourceServer::new(apiext).with_openapi(generic_server::openapi::builtin_schemas));
    for (kind, plural, namespaced) in [("Namespace", "namespaces", false), ("ConfigMap", "configmaps", true)] {
        let info = ResourceInfo {
            group: String::new(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: vec![],
            categories: vec![],
            key_root: format!("/registry/{plural}"),
            subresources: vec![],
        };
        core.install(Arc::new(Store::new(info, Arc::new(DefaultStrategy), storage.clone(), vec![])));
    }
    let agg: DynHandler = Arc::new(aggregator::Aggregator::new(core));
    Ok(agg)
}
