//! Revisions kept and read back (see `crate::revision` for what they are and why): recorded
//! once when a rendering turns Ready, loaded when a rollback needs one, pruned when the
//! history outgrows its limit. Every write is a create, so a reconcile that dies half-way
//! and runs again finds what it made (409) and goes on.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};

use super::references::{ConfigKind, config_hash_of, references};
use crate::api::LucidService;
use crate::error::Error;
use crate::leader::Leadership;
use crate::revision::{
    REVISION_LABEL, REVISION_OF_LABEL, RevisionRecord, Source, SourceKind, config_map_copy,
    controller_revision, copy_name, read_record, revision_name, secret_copy,
};

/// Revisions read back, by (namespace, ControllerRevision name): a rolled-back service
/// renders its revision on every wake-up, and a ControllerRevision never changes.
#[derive(Default)]
pub struct RevisionCache {
    records: Mutex<HashMap<(String, String), Arc<RevisionRecord>>>,
}

/// What recording found.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    Done,
    /// A ConfigMap or Secret changed since the pods read it: what is there now is not what
    /// the Ready pods run, so nothing is recorded (the change rolls a new rendering anyway).
    ConfigMoved,
}

/// Records revision `revision` of `ls`: a copy of each ConfigMap and Secret its pods read
/// (checked against `config_hash`, the digest in the pod template) and the ControllerRevision.
pub async fn record(
    client: &Client,
    leadership: &Leadership,
    ls: &LucidService,
    namespace: &str,
    revision: i64,
    config_hash: &str,
) -> Result<Recorded, Error> {
    let name = ls.name_any();
    let owner = crate::render::owner_reference(ls)?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let wanted: BTreeSet<(ConfigKind, String)> = references(ls)
        .into_iter()
        .map(|r| (r.kind, r.name))
        .collect();
    let (mut read_maps, mut read_secrets) = (Vec::new(), Vec::new());
    for (kind, object) in &wanted {
        match kind {
            ConfigKind::ConfigMap => read_maps.extend(config_maps.get_opt(object).await?),
            ConfigKind::Secret => read_secrets.extend(secrets.get_opt(object).await?),
        }
    }
    if config_hash_of(ls, &read_maps, &read_secrets)
        .ok()
        .as_deref()
        != Some(config_hash)
    {
        return Ok(Recorded::ConfigMoved);
    }
    let post = PostParams {
        field_manager: Some(super::FIELD_MANAGER.into()),
        ..Default::default()
    };
    for cm in &read_maps {
        leadership.ensure()?;
        let copy = config_map_copy(cm, namespace, &name, revision, &owner);
        created(config_maps.create(&post, &copy).await)?;
    }
    for secret in &read_secrets {
        leadership.ensure()?;
        let copy = secret_copy(secret, namespace, &name, revision, &owner);
        created(secrets.create(&post, &copy).await)?;
    }
    let sources = wanted
        .iter()
        .map(|(kind, object)| {
            let present = match kind {
                ConfigKind::ConfigMap => read_maps.iter().any(|c| c.name_any() == *object),
                ConfigKind::Secret => read_secrets.iter().any(|s| s.name_any() == *object),
            };
            Source {
                kind: match kind {
                    ConfigKind::ConfigMap => SourceKind::ConfigMap,
                    ConfigKind::Secret => SourceKind::Secret,
                },
                name: object.clone(),
                copy: present.then(|| copy_name(&name, revision, object)),
            }
        })
        .collect();
    let record = RevisionRecord {
        generation: ls.metadata.generation.unwrap_or_default(),
        spec: ls.spec.clone(),
        sources,
    };
    let cr = controller_revision(&record, namespace, &name, revision, &owner)
        .map_err(|e| Error::Revision(e.to_string()))?;
    leadership.ensure()?;
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    created(revisions.create(&post, &cr).await)?;
    Ok(Recorded::Done)
}

/// A create that finds the object already there (made by an earlier try) succeeded.
pub(super) fn created<K>(result: Result<K, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

/// Revision `revision` of the service `service`, None when it is no longer kept.
pub async fn load(
    client: &Client,
    cache: &RevisionCache,
    namespace: &str,
    service: &str,
    revision: i64,
) -> Result<Option<Arc<RevisionRecord>>, Error> {
    let key = (namespace.to_string(), revision_name(service, revision));
    if let Some(found) = cache
        .records
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
    {
        return Ok(Some(found.clone()));
    }
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    let Some(cr) = api.get_opt(&key.1).await? else {
        return Ok(None);
    };
    let record = Arc::new(read_record(&cr).map_err(|e| Error::Revision(e.to_string()))?);
    cache
        .records
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, record.clone());
    Ok(Some(record))
}

/// Deletes the ControllerRevisions and copies of `revisions` (fallen out of the history).
pub async fn prune(
    client: &Client,
    leadership: &Leadership,
    cache: &RevisionCache,
    namespace: &str,
    service: &str,
    revisions: &[i64],
) -> Result<(), Error> {
    let controller_revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for revision in revisions {
        let selector = ListParams::default().labels(&format!(
            "{REVISION_OF_LABEL}={service},{REVISION_LABEL}={revision}"
        ));
        let name = revision_name(service, *revision);
        leadership.ensure()?;
        gone(
            controller_revisions
                .delete(&name, &DeleteParams::default())
                .await,
        )?;
        leadership.ensure()?;
        config_maps
            .delete_collection(&DeleteParams::default(), &selector)
            .await?;
        leadership.ensure()?;
        secrets
            .delete_collection(&DeleteParams::default(), &selector)
            .await?;
        cache
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(namespace.to_string(), name));
    }
    Ok(())
}

fn gone<K>(result: Result<K, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}
