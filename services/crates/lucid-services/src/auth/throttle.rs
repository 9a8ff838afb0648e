//! Brute force: failed logins are counted per username (canonical, whether it exists or
//! not: the answers must not tell) and per client address, in Redis with expiry.
//!
//! - After `free` failures for a name, each further attempt must wait 1 s, 2 s, 4 s, ...
//!   (at most a minute) after the last failure: slowed, without holding a connection.
//! - At `max_per_user` failures within the window the name is locked for `lock`;
//!   at `max_per_address` failures from one address, that address is locked for `lock`.
//! - While slowed or locked the answer is 429 with `Retry-After`, before any password is
//!   checked (a right password does not get through a lock).
//! - A successful login clears the name's count (not the address's).

use redis::AsyncCommands;

use super::kv::Kv;
use crate::error::ServiceError;

#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Failures counted within this many seconds (`LOGIN_FAILURE_WINDOW_SECONDS`).
    pub window: u64,
    /// Failures for one name before attempts are slowed (`LOGIN_FREE_FAILURES`).
    pub free: u64,
    /// Failures for one name that lock it (`LOGIN_MAX_FAILURES_PER_USER`).
    pub max_per_user: u64,
    /// Failures from one address that lock it (`LOGIN_MAX_FAILURES_PER_ADDRESS`).
    pub max_per_address: u64,
    /// How long a lock lasts, seconds (`LOGIN_LOCK_SECONDS`).
    pub lock: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            window: 900,
            free: 3,
            max_per_user: 10,
            max_per_address: 50,
            lock: 900,
        }
    }
}

fn keys(name: &str, address: &str) -> [String; 5] {
    [
        format!("auth:fail:u:{name}"),
        format!("auth:fail:a:{address}"),
        format!("auth:lock:u:{name}"),
        format!("auth:lock:a:{address}"),
        format!("auth:wait:u:{name}"),
    ]
}

const FAILED: &str = r#"
local nu = redis.call('INCR', KEYS[1])
if nu == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local na = redis.call('INCR', KEYS[2])
if na == 1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
if nu >= tonumber(ARGV[3]) then
  redis.call('SET', KEYS[3], '1', 'EX', ARGV[2])
  redis.call('DEL', KEYS[1], KEYS[5])
elseif nu > tonumber(ARGV[5]) then
  local wait = math.min(2 ^ (nu - tonumber(ARGV[5]) - 1), 60)
  redis.call('SET', KEYS[5], '1', 'PX', math.floor(wait * 1000))
end
if na >= tonumber(ARGV[4]) then
  redis.call('SET', KEYS[4], '1', 'EX', ARGV[2])
  redis.call('DEL', KEYS[2])
end
return nu
"#;

pub struct Throttle<'a> {
    pub kv: &'a Kv,
    pub policy: Policy,
}

impl Throttle<'_> {
    /// Seconds to wait before `name` may try again from `address` (0: go ahead).
    pub async fn wait(&self, name: &str, address: &str) -> Result<u64, ServiceError> {
        let [_, _, lock_user, lock_address, wait_user] = keys(name, address);
        let mut c = self.kv.connection().await?;
        let (a, b, w): (i64, i64, i64) = redis::pipe()
            .pttl(&lock_user)
            .pttl(&lock_address)
            .pttl(&wait_user)
            .query_async(&mut c)
            .await
            .map_err(|e| self.kv.failed(e))?;
        // PTTL: -2 no key, -1 no expiry (never set so here); ms otherwise.
        let longest = [a, b, w].into_iter().max().unwrap_or(0).max(0) as u64;
        Ok(longest.div_ceil(1000))
    }

    pub async fn failed(&self, name: &str, address: &str) -> Result<(), ServiceError> {
        let mut c = self.kv.connection().await?;
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(FAILED));
        let mut script = SCRIPT.prepare_invoke();
        for k in keys(name, address) {
            script.key(k);
        }
        script
            .arg(self.policy.window)
            .arg(self.policy.lock)
            .arg(self.policy.max_per_user)
            .arg(self.policy.max_per_address)
            .arg(self.policy.free)
            .invoke_async::<i64>(&mut c)
            .await
            .map(|_| ())
            .map_err(|e| self.kv.failed(e))
    }

    pub async fn succeeded(&self, name: &str, address: &str) -> Result<(), ServiceError> {
        let [fail_user, _, _, _, wait_user] = keys(name, address);
        let mut c = self.kv.connection().await?;
        c.del::<_, ()>(&[fail_user, wait_user])
            .await
            .map_err(|e| self.kv.failed(e))
    }
}
