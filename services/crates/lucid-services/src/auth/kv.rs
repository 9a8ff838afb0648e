//! The auth service's Redis: the redis crate's own `ConnectionManager`, which reconnects
//! by itself after Redis restarts. Made on first use, so the service starts (and says
//! on `/ready` why it is not ready) while Redis is still coming up.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::error::ServiceError;

pub struct Kv {
    client: redis::Client,
    manager: OnceCell<ConnectionManager>,
    errors: Counter,
}

impl Kv {
    pub fn new(client: redis::Client, errors: Counter) -> Self {
        Self {
            client,
            manager: OnceCell::new(),
            errors,
        }
    }

    pub async fn connection(&self) -> Result<ConnectionManager, ServiceError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(5))
            .set_number_of_retries(2);
        self.manager
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .cloned()
            .map_err(|e| self.failed(e))
    }

    /// A Redis failure as the answer's error (503; the detail only in the log).
    pub fn failed(&self, e: redis::RedisError) -> ServiceError {
        self.errors.inc();
        ServiceError::Unavailable(format!("redis: {e}"))
    }

    pub async fn ping(&self) -> Result<(), String> {
        let mut c = self.connection().await.map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
