//! Missing, or not yet seen? The watches of phases and of services run apart, so one cache
//! can lag the other: a LucidPhase created a moment before its first service may not be in
//! the cache yet when that service is reconciled. Before a user is told to create
//! something, the API server is asked; what it has and the cache has not is waited for
//! (its watch event wakes whoever named it), not reported as Degraded. Only a cache miss
//! asks: a namespace whose graph is whole costs no request.

use kube::{Api, Client};

use crate::api::{LucidPhase, LucidService};
use crate::graph::Reference;

/// The first of `references` that the API server has.
pub async fn first_existing<'r>(
    client: &Client,
    namespace: &str,
    references: &[Reference<'r>],
) -> Result<Option<Reference<'r>>, kube::Error> {
    let phases: Api<LucidPhase> = Api::namespaced(client.clone(), namespace);
    let services: Api<LucidService> = Api::namespaced(client.clone(), namespace);
    for reference in references {
        let found = match reference {
            Reference::Phase(name) => phases.get_metadata_opt(name).await?.is_some(),
            Reference::Service(name) => services.get_metadata_opt(name).await?.is_some(),
        };
        if found {
            return Ok(Some(*reference));
        }
    }
    Ok(None)
}
