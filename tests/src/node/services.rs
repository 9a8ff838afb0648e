//! What a cluster's add-ons would do, done by the harness: cluster DNS records from the
//! Services (there is no CoreDNS package), and volumes for claims (there is no storage
//! provisioner): each pending claim gets a hostPath PersistentVolume bound to it, in a
//! directory owned by 65532 (hostPath volumes are not fsGroup-managed).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Service};
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

/// The static provisioner: every claim without a volume gets a hostPath PersistentVolume of
/// its size, pre-bound to it (claimRef), under `volumes_dir/<namespace>/<claim>`.
pub async fn provision_volumes(client: Client, volumes_dir: PathBuf) {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
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
        let namespace = claim.namespace().unwrap_or_default();
        let name = format!("lucid-node-{}-{}", namespace, claim.name_any());
        let path = volumes_dir.join(&namespace).join(claim.name_any());
        if let Err(e) = make_owned_dir(&path) {
            tracing::warn!(claim = %claim.name_any(), error = %e, "cannot make the volume's directory");
            continue;
        }
        let spec = claim.spec.clone().unwrap_or_default();
        let size = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "1Gi".into());
        let volume: PersistentVolume = match serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"lucid.io/test-node-volume": "true"}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": spec.storage_class_name.clone().unwrap_or_default(),
                "volumeMode": "Filesystem",
                "hostPath": {"path": path, "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": claim.name_any(), "uid": claim.uid()},
            },
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
