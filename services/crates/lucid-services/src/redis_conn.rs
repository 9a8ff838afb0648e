//! One Redis connection that comes back after Redis does: the redis crate's own
//! `ConnectionManager` over RESP3, whose connection reports a disconnect as it happens, so
//! the manager reconnects in the background (retrying with backoff while Redis is down)
//! instead of keeping the dead connection until a command fails on it. A command waits for
//! a reconnect in progress, at most [`COMMAND_DEADLINE`]: while Redis is down, callers get
//! a quick error (503), and the first command after Redis is back succeeds.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, IntoConnectionInfo, ProtocolVersion, RedisError};
use tokio::sync::OnceCell;

/// Longest a command waits for Redis (a reconnect included): the response timeout, so a
/// slow fsync on a loaded disk is not cut shorter than Redis' own answer would be.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(5);

pub struct Redis {
    client: redis::Client,
    /// Made at the first command: the recorder starts while Redis may not be up yet.
    manager: OnceCell<ConnectionManager>,
    errors: Counter,
}

impl Redis {
    /// A client for `url` speaking RESP3 (needed for disconnect notices; Redis 6 and later).
    pub fn open(url: &str, errors: Counter) -> Result<Self, RedisError> {
        let mut info = url.into_connection_info()?;
        info.redis.protocol = ProtocolVersion::RESP3;
        Ok(Self {
            client: redis::Client::open(info)?,
            manager: OnceCell::new(),
            errors,
        })
    }

    fn config() -> ConnectionManagerConfig {
        // Reconnect attempts keep going (1 to 2 s apart with jitter: the backoff's first
        // delay is a second, capped there) for as long as Redis is down: a manager that
        // gave up would fail the first command after Redis returned.
        ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(5))
            .set_factor(2)
            .set_max_delay(1000)
            .set_number_of_retries(usize::MAX)
    }

    async fn manager(&self) -> Result<ConnectionManager, RedisError> {
        self.manager
            // Bounded by the caller's deadline: a first connection that does not come
            // leaves the cell empty for the next command to try again.
            .get_or_try_init(|| {
                ConnectionManager::new_with_config(self.client.clone(), Self::config())
            })
            .await
            .cloned()
    }

    /// Runs `cmd` within [`COMMAND_DEADLINE`].
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        let result = match tokio::time::timeout(COMMAND_DEADLINE, async {
            let mut c = self.manager().await?;
            cmd.query_async(&mut c).await
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(RedisError::from((
                redis::ErrorKind::IoError,
                "Redis did not answer in time",
            ))),
        };
        if result.is_err() {
            self.errors.inc();
        }
        result
    }
}
