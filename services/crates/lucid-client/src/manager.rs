//! Clients for every peer a service names in its environment, built on first use, and the
//! health of all of them at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::client::PeerClient;
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::url::ServiceUrl;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerHealth {
    Healthy,
    Unhealthy {
        reason: String,
    },
    /// No `<NAME>_URL`: the service runs without this peer (degraded, not failed).
    NotConfigured,
}

type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub struct IntegrationManager {
    config: ClientConfig,
    lookup: Lookup,
    clients: Mutex<BTreeMap<String, Arc<PeerClient>>>,
}

impl IntegrationManager {
    pub fn from_env(config: ClientConfig) -> Self {
        Self::with_lookup(config, |k| std::env::var(k).ok())
    }

    pub fn with_lookup(
        config: ClientConfig,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            config,
            lookup: Box::new(lookup),
            clients: Mutex::new(BTreeMap::new()),
        }
    }

    /// `session-storage` -> `SESSION_STORAGE_URL`.
    pub fn variable(peer: &str) -> String {
        format!("{}_URL", peer.to_ascii_uppercase().replace('-', "_"))
    }

    /// The client for `peer`, built from `<PEER>_URL` on first use.
    pub fn client(&self, peer: &str) -> Result<Arc<PeerClient>, ClientError> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(peer) {
            return Ok(c.clone());
        }
        let variable = Self::variable(peer);
        let raw = (self.lookup)(&variable)
            .filter(|v| !v.trim().is_empty())
            .ok_or(ClientError::NotConfigured {
                peer: peer.into(),
                variable,
            })?;
        let url = ServiceUrl::parse(peer, &raw, self.config.environment)?;
        let client = Arc::new(PeerClient::new(peer, url, self.config.clone())?);
        clients.insert(peer.into(), client.clone());
        Ok(client)
    }

    /// Every peer's `/health`, concurrently, each bounded by `deadline`.
    pub async fn health(&self, peers: &[&str], deadline: Duration) -> BTreeMap<String, PeerHealth> {
        let checks = peers.iter().map(|peer| async move {
            let health = match self.client(peer) {
                Err(ClientError::NotConfigured { .. }) => PeerHealth::NotConfigured,
                Err(e) => PeerHealth::Unhealthy {
                    reason: e.to_string(),
                },
                Ok(client) => match tokio::time::timeout(
                    deadline,
                    client.send(reqwest::Method::GET, "/health", None, None),
                )
                .await
                {
                    Ok(Ok(_)) => PeerHealth::Healthy,
                    Ok(Err(e)) => PeerHealth::Unhealthy {
                        reason: e.to_string(),
                    },
                    Err(_) => PeerHealth::Unhealthy {
                        reason: format!("no answer within {deadline:?}"),
                    },
                },
            };
            (peer.to_string(), health)
        });
        futures::future::join_all(checks)
            .await
            .into_iter()
            .collect()
    }
}
