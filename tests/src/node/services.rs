//! What a cluster's add-ons would do, done by the harness: cluster DNS records from the
//! Services (there is no CoreDNS package), and volumes for claims (there is no storage
//! provisioner): each pending claim gets a hostPath PersistentVolume bound to it, in a
//! directory owned by 65532 (hostPath volumes are not fsGroup-managed). With several nodes
//! every volume is pinned to one node, as k3s's local-path provisioner pins them, and a
//! claim of a `WaitForFirstConsumer` class (`lucid-ssd`) waits for the scheduler to choose
//! its node.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Service};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::CLUSTER_DOMAIN;

/// Keeps `<hosts_dir>/services` equal to the cluster's Services: one line
/// `<clusterIP> <name>.<namespace>.svc.cluster.local` each. Written to a temporary file and
/// renamed, so dnsmasq (watching the directory) never reads half a file.
pub async fn serve_dns_records(client: Client, hosts_dir: PathBuf) {
    let api: Api<Service> = Api::all(client);
    let mut records: BTreeMap<String, String> = BTreeMap::new();
    // Between Init and InitDone (a re-list after a watch error) the records are being
    // rebuilt: the file keeps the old ones until the new set is whole, so no name stops
    // resolving for the length of a re-list.
    let mut relisting = false;
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let Ok(event) = event else { continue };
        match event {
            watcher::Event::Apply(svc) | watcher::Event::InitApply(svc) => {
                if let Some(ip) = cluster_ip(&svc) {
                    records.insert(fqdn(&svc), ip);
                }
            }
            watcher::Event::Delete(svc) => {
                records.remove(&fqdn(&svc));
            }
            watcher::Event::Init => {
                records.clear();
                relisting = true;
            }
            watcher::Event::InitDone => relisting = false,
        }
        if relisting {
            continue;
        }
        let text: String = records
            .iter()
            .map(|(name, ip)| format!("{ip} {name}\n"))
            .collect();
        let tmp = hosts_dir.join(".services.tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, hosts_dir.join("services"));
        }
    }
}

fn fqdn(svc: &Service) -> String {
    format!(
        "{}.{}.svc.{CLUSTER_DOMAIN}",
        svc.name_any(),
        svc.namespace().unwrap_or_default()
    )
}

fn cluster_ip(svc: &Service) -> Option<String> {
    svc.spec
        .as_ref()?
        .cluster_ip
        .clone()
        .filter(|ip| !ip.is_empty() && ip != "None")
}

/// Asks the cluster's DNS server for the A record of `name`, the way a pod's resolver does.
pub fn resolve(server: Ipv4Addr, name: &str) -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let id: u16 = 0x4c55;
    let mut query = Vec::new();
    query.extend(id.to_be_bytes());
    query.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // recursion desired, one question
    for label in name.trim_end_matches('.').split('.') {
        query.push(label.len() as u8);
        query.extend(label.as_bytes());
    }
    query.extend([0, 0, 1, 0, 1]); // root, type A, class IN
    socket.send_to(&query, (server, 53)).ok()?;
    let mut answer = [0u8; 512];
    let n = socket.recv(&mut answer).ok()?;
    let answer = &answer[..n];
    let answers = u16::from_be_bytes([answer[6], answer[7]]);
    if answer[..2] != id.to_be_bytes() || answer[3] & 0x0f != 0 || answers == 0 {
        return None;
    }
    // Skip the header and the echoed question, then read answers until an A record.
    let mut at = 12;
    while answer[at] != 0 {
        at += usize::from(answer[at]) + 1;
    }
    at += 5;
    for _ in 0..answers {
        at += 2; // a compressed name pointer
        let rtype = u16::from_be_bytes([answer[at], answer[at + 1]]);
        let len = usize::from(u16::from_be_bytes([answer[at + 8], answer[at + 9]]));
        at += 10;
        if rtype == 1 && len == 4 {
            return Some(Ipv4Addr::new(
                answer[at],
                answer[at + 1],
                answer[at + 2],
                answer[at + 3],
            ));
        }
        at += len;
    }
    None
}

/// Where volumes go.
pub struct Volumes {
    pub dir: PathBuf,
    /// The node that holds the volumes of claims without a `WaitForFirstConsumer` class.
    pub server: String,
    /// Several nodes: each volume is pinned to its node (nodeAffinity) and lives in that
    /// node's directory, `<dir>/<node>/<namespace>/<claim>`; with one node volumes are
    /// `<dir>/<namespace>/<claim>`, unpinned, as before.
    pub pinned: bool,
}

/// The annotation the scheduler puts on a `WaitForFirstConsumer` claim once it has chosen
/// the node of the claim's first pod.
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// The node a claim's volume belongs on: the node the scheduler chose for a claim of a
/// `WaitForFirstConsumer` class (`None` while it has not: the claim waits), else the
/// server when volumes are pinned. `Some(None)`: unpinned.
fn volume_node(
    claim: &PersistentVolumeClaim,
    class: Option<&StorageClass>,
    volumes: &Volumes,
) -> Option<Option<String>> {
    let waits = class
        .and_then(|c| c.volume_binding_mode.as_deref())
        .is_some_and(|m| m == "WaitForFirstConsumer");
    if waits {
        let selected = claim.annotations().get(SELECTED_NODE)?;
        return Some(Some(selected.clone()));
    }
    Some(volumes.pinned.then(|| volumes.server.clone()))
}

/// The provisioner: every claim without a volume gets a hostPath PersistentVolume of its
/// size, pre-bound to it (claimRef), under `<dir>[/<node>]/<namespace>/<claim>` (the
/// `lucid-ssd` class's pathPattern), pinned to its node when there are several, with its
/// class's reclaim policy.
pub async fn provision_volumes(client: Client, volumes_at: Volumes) {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let classes: Api<StorageClass> = Api::all(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client);
    let mut events = watcher(claims, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(claim) = events.next().await {
        let Ok(claim) = claim else { continue };
        let bound = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_ref())
            .is_some_and(|v| !v.is_empty());
        if bound || claim.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let spec = claim.spec.clone().unwrap_or_default();
        let class_name = spec.storage_class_name.clone().unwrap_or_default();
        let class = if class_name.is_empty() {
            None
        } else {
            classes.get_opt(&class_name).await.ok().flatten()
        };
        let Some(node) = volume_node(&claim, class.as_ref(), &volumes_at) else {
            continue; // the scheduler has not placed the claim's first pod yet
        };
        let namespace = claim.namespace().unwrap_or_default();
        let name = format!("lucid-node-{}-{}", namespace, claim.name_any());
        let path = match &node {
            Some(node) => volumes_at.dir.join(node),
            None => volumes_at.dir.clone(),
        }
        .join(&namespace)
        .join(claim.name_any());
        if let Err(e) = make_owned_dir(&path) {
            tracing::warn!(claim = %claim.name_any(), error = %e, "cannot make the volume's directory");
            continue;
        }
        let size = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "1Gi".into());
        let reclaim = class
            .as_ref()
            .and_then(|c| c.reclaim_policy.clone())
            .unwrap_or_else(|| "Delete".into());
        let mut volume_spec = json!({
            "capacity": {"storage": size},
            "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "persistentVolumeReclaimPolicy": reclaim,
            "storageClassName": class_name,
            "volumeMode": "Filesystem",
            "hostPath": {"path": path, "type": "Directory"},
            "claimRef": {"namespace": namespace, "name": claim.name_any(), "uid": claim.uid()},
        });
        if let Some(node) = &node {
            volume_spec["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{
                "matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}],
            }]}});
        }
        let volume: PersistentVolume = match serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"lucid.io/test-node-volume": "true"}},
            "spec": volume_spec,
        })) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "volume");
                continue;
            }
        };
        // Retried until it lands, like a real provisioner: nothing watched changes again for
        // an unbound claim, so a write lost to a slow etcd would leave it Pending for ever.
        // A refusal of the object itself (a 4xx other than a conflict or throttling) is not.
        let mut wait = Duration::from_millis(200);
        loop {
            match volumes.create(&PostParams::default(), &volume).await {
                Ok(_) => break,
                Err(kube::Error::Api(s)) if s.code == 409 => break,
                Err(kube::Error::Api(s)) if (400..500).contains(&s.code) && s.code != 429 => {
                    tracing::warn!(claim = %claim.name_any(), error = %s, "volume refused");
                    break;
                }
                Err(e) => {
                    tracing::warn!(claim = %claim.name_any(), error = %e, "cannot create a volume; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

fn make_owned_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{PermissionsExt, chown};
    std::fs::create_dir_all(path)?;
    chown(path, Some(65532), Some(65532))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o2770))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(selected: Option<&str>) -> PersistentVolumeClaim {
        let mut claim = PersistentVolumeClaim::default();
        if let Some(node) = selected {
            claim
                .annotations_mut()
                .insert(SELECTED_NODE.into(), node.into());
        }
        claim
    }

    fn class(mode: &str) -> StorageClass {
        StorageClass {
            volume_binding_mode: Some(mode.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_waiting_class_waits_for_the_scheduler_and_the_rest_go_to_the_server() {
        let volumes = |pinned| Volumes {
            dir: PathBuf::from("/v"),
            server: "lucid-node".into(),
            pinned,
        };
        let wffc = class("WaitForFirstConsumer");
        assert_eq!(volume_node(&claim(None), Some(&wffc), &volumes(true)), None);
        assert_eq!(
            volume_node(&claim(Some("lucid-node-1")), Some(&wffc), &volumes(true)),
            Some(Some("lucid-node-1".into()))
        );
        assert_eq!(
            volume_node(&claim(None), Some(&class("Immediate")), &volumes(true)),
            Some(Some("lucid-node".into()))
        );
        assert_eq!(volume_node(&claim(None), None, &volumes(false)), Some(None));
    }
}
