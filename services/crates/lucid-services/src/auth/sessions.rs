//! Logins as refresh-token families in Redis.
//!
//! A login starts a family (`auth:fam:<id>`: the user, when it began; it expires after
//! `SESSION_MAX_SECONDS` whatever happens). Each refresh token is 32 random bytes the client
//! holds; Redis holds only its SHA-256 (`auth:rt:<hash>` → `<family>|live` or `|used`).
//! A refresh marks the presented token used and issues the next one, in one script. A used
//! token presented again means two parties hold the family's tokens (one of them stole
//! one): the whole family is deleted, so neither can refresh again.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redis::AsyncCommands;
use sha2::Digest;

use super::kv::Kv;
use crate::error::ServiceError;

const FAMILY: &str = "auth:fam:";
const TOKEN: &str = "auth:rt:";

/// A refresh token's stored name: its hash, never the token.
fn token_key(token: &str) -> String {
    let digest = sha2::Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{TOKEN}{hex}")
}

fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn new_family_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a refresh found.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotated {
    /// The next token, for the family's user, in a family begun at `created`.
    Next {
        token: String,
        family: String,
        user_id: String,
        created: u64,
    },
    /// No such token (never issued, or expired).
    Unknown,
    /// The family was ended (logout, reuse, disabled user).
    Revoked,
    /// A token already rotated was presented again: the family is now revoked.
    Reused { family: String },
}

#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    /// How long an unused refresh token stays good (`REFRESH_TOKEN_SECONDS`).
    pub refresh: u64,
    /// How long a login lasts at most, refreshed or not (`SESSION_MAX_SECONDS`).
    pub session: u64,
}

const ROTATE: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return {'unknown'} end
local sep = string.find(v, '|', 1, true)
local fam = string.sub(v, 1, sep - 1)
local state = string.sub(v, sep + 1)
local famkey = ARGV[2] .. fam
if state ~= 'live' then
  redis.call('DEL', famkey)
  return {'reused', fam}
end
local user = redis.call('HGET', famkey, 'user')
if not user then return {'revoked', fam} end
local created = redis.call('HGET', famkey, 'created')
redis.call('SET', KEYS[1], fam .. '|used', 'KEEPTTL')
redis.call('SET', KEYS[2], fam .. '|live', 'EX', ARGV[1])
return {'ok', fam, user, created}
"#;

pub struct Sessions<'a> {
    pub kv: &'a Kv,
    pub lifetimes: Lifetimes,
}

impl Sessions<'_> {
    /// A new family for `user_id`; its first refresh token.
    pub async fn start(
        &self,
        user_id: &str,
        family: &str,
        now: u64,
    ) -> Result<String, ServiceError> {
        let token = new_secret();
        let mut c = self.kv.connection().await?;
        let family_key = format!("{FAMILY}{family}");
        redis::pipe()
            .atomic()
            .hset_multiple(
                &family_key,
                &[("user", user_id.to_string()), ("created", now.to_string())],
            )
            .ignore()
            .expire(&family_key, self.lifetimes.session as i64)
            .ignore()
            .set_ex(
                token_key(&token),
                format!("{family}|live"),
                self.lifetimes.refresh,
            )
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(|e| self.kv.failed(e))?;
        Ok(token)
    }

    pub async fn rotate(&self, token: &str) -> Result<Rotated, ServiceError> {
        let next = new_secret();
        let mut c = self.kv.connection().await?;
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(ROTATE));
        let answer: Vec<String> = SCRIPT
            .key(token_key(token))
            .key(token_key(&next))
            .arg(self.lifetimes.refresh)
            .arg(FAMILY)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.kv.failed(e))?;
        Ok(match answer.as_slice() {
            [ok, family, user, created] if ok == "ok" => Rotated::Next {
                token: next,
                family: family.clone(),
                user_id: user.clone(),
                created: created.parse().unwrap_or(0),
            },
            [reused, family] if reused == "reused" => Rotated::Reused {
                family: family.clone(),
            },
            [revoked, _] if revoked == "revoked" => Rotated::Revoked,
            _ => Rotated::Unknown,
        })
    }

    /// Ends the family a refresh token belongs to (logout); Ok(false) if it was unknown.
    pub async fn end_by_token(&self, token: &str) -> Result<bool, ServiceError> {
        let mut c = self.kv.connection().await?;
        let value: Option<String> = c
            .get(token_key(token))
            .await
            .map_err(|e| self.kv.failed(e))?;
        let Some(family) = value.and_then(|v| v.split_once('|').map(|(f, _)| f.to_string())) else {
            return Ok(false);
        };
        self.end(&family).await?;
        Ok(true)
    }

    pub async fn end(&self, family: &str) -> Result<(), ServiceError> {
        let mut c = self.kv.connection().await?;
        c.del::<_, ()>(format!("{FAMILY}{family}"))
            .await
            .map_err(|e| self.kv.failed(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hash_of_a_token_is_a_key() {
        let t = new_secret();
        assert_eq!(URL_SAFE_NO_PAD.decode(&t).unwrap().len(), 32);
        let k = token_key(&t);
        assert!(k.starts_with(TOKEN) && !k.contains(&t));
        assert_eq!(k.len(), TOKEN.len() + 64);
    }
}
