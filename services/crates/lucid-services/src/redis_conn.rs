//! One Redis connection that comes back after Redis does. A `MultiplexedConnection` never
//! reconnects: after a Redis restart every command fails on it for ever. Here a failed
//! connection is dropped and the next command connects again (bounded by timeouts), so the
//! recorder recovers without a restart of its own.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, FromRedisValue, RedisError};

pub struct Redis {
    client: redis::Client,
    config: AsyncConnectionConfig,
    current: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    errors: Counter,
}

impl Redis {
    pub fn new(client: redis::Client, errors: Counter) -> Self {
        Self {
            client,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Duration::from_secs(2))
                .set_response_timeout(Duration::from_secs(5)),
            current: tokio::sync::Mutex::new(None),
            errors,
        }
    }

    async fn connection(&self) -> Result<MultiplexedConnection, RedisError> {
        // One connect at a time: while Redis is down, callers wait on the lock instead of
        // all dialing at once.
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref() {
            return Ok(c.clone());
        }
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        *current = Some(c.clone());
        Ok(c)
    }

    /// Runs `cmd`; a connection-level failure drops the connection for the next caller.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        let result = match self.connection().await {
            Ok(mut c) => cmd.query_async(&mut c).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            self.errors.inc();
            if e.is_io_error()
                || e.is_connection_dropped()
                || e.is_timeout()
                || e.is_unrecoverable_error()
                || e.is_connection_refusal()
            {
                self.current.lock().await.take();
            }
        }
        result
    }
}
