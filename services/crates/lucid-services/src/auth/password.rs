//! Password hashes: Argon2id (RFC 9106) in PHC strings, so each stored hash carries its
//! own parameters and salt.
//!
//! Parameters, default: m = 19 MiB (19456 KiB), t = 2, p = 1: OWASP's Password Storage
//! Cheat Sheet minimum for Argon2id. Chosen for a Pi 5 (4 Cortex-A76 cores, 4-8 GiB): one
//! hash takes tens of milliseconds on one core and 19 MiB, so hashes are run on the
//! blocking pool at most `hash_concurrency` at once (memory stays bounded by
//! `hash_concurrency × m` however many logins arrive). Settings below the OWASP minimum
//! are refused at start.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Cost {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error(
        "ARGON2_MEMORY_KIB={memory_kib}, ARGON2_ITERATIONS={iterations} are below the OWASP minimum for Argon2id (m=19456 KiB with t=2, or m=47104 with t=1, or m=12288 with t=3, m=9216 with t=4, m=7168 with t=5)"
    )]
    TooWeak { memory_kib: u32, iterations: u32 },
    #[error("invalid Argon2 parameters: {0}")]
    Params(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the password hashing pool is gone")]
    Closed,
}

impl Cost {
    /// OWASP's equivalent configurations: memory × iterations from (47104, 1) down to
    /// (7168, 5); anything weaker is refused.
    pub fn check(&self) -> Result<(), PasswordError> {
        let minimum_memory = match self.iterations {
            0 => u32::MAX,
            1 => 47104,
            2 => 19456,
            3 => 12288,
            4 => 9216,
            _ => 7168,
        };
        if self.memory_kib < minimum_memory || self.parallelism == 0 {
            return Err(PasswordError::TooWeak {
                memory_kib: self.memory_kib,
                iterations: self.iterations,
            });
        }
        Ok(())
    }

    fn hasher(&self) -> Result<Argon2<'static>, PasswordError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| PasswordError::Params(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Hashes and checks passwords on the blocking pool, a bounded number at once.
#[derive(Clone)]
pub struct Passwords {
    cost: Cost,
    gate: Arc<Semaphore>,
    /// A hash of nothing anyone knows: checked against when the user does not exist, so
    /// an unknown name costs the same time as a wrong password.
    dummy: Arc<String>,
}

impl Passwords {
    pub fn new(cost: Cost, concurrency: usize) -> Result<Self, PasswordError> {
        cost.check()?;
        let secret: [u8; 32] = rand::random();
        let dummy = hash_now(&cost, &String::from_utf8_lossy(&secret))?;
        Ok(Self {
            cost,
            gate: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy: Arc::new(dummy),
        })
    }

    pub fn cost(&self) -> Cost {
        self.cost
    }

    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|_| PasswordError::Closed)?;
        let cost = self.cost;
        tokio::task::spawn_blocking(move || hash_now(&cost, &password))
            .await
            .map_err(|e| PasswordError::Hash(e.to_string()))?
    }

    /// Whether `password` matches `stored`; with `stored` None, checks against the dummy
    /// hash (same cost) and answers false.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|_| PasswordError::Closed)?;
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy.as_ref().clone());
        let matched = tokio::task::spawn_blocking(move || verify_now(&password, &stored))
            .await
            .map_err(|e| PasswordError::Hash(e.to_string()))??;
        Ok(known && matched)
    }
}

fn hash_now(cost: &Cost, password: &str) -> Result<String, PasswordError> {
    let salt: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    cost.hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Checks with the parameters the stored hash names (older hashes keep working when the
/// settings change).
fn verify_now(password: &str, stored: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(stored).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_only_its_password_and_names_its_parameters() {
        let p = Passwords::new(Cost::default(), 2).unwrap();
        let h = p.hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(!h.contains("correct"));
        assert!(
            p.verify("correct horse".into(), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(!p.verify("wrong".into(), Some(h.clone())).await.unwrap());
        assert!(!p.verify("correct horse".into(), None).await.unwrap());
        // Two hashes of one password differ (salt).
        assert_ne!(h, p.hash("correct horse".into()).await.unwrap());
    }

    #[test]
    fn parameters_below_the_owasp_minimum_are_refused() {
        for (m, t) in [(19455, 2), (47103, 1), (7167, 9), (65536, 0)] {
            let c = Cost {
                memory_kib: m,
                iterations: t,
                parallelism: 1,
            };
            assert!(c.check().is_err(), "m={m} t={t}");
        }
        for (m, t) in [(19456, 2), (47104, 1), (12288, 3), (7168, 5)] {
            let c = Cost {
                memory_kib: m,
                iterations: t,
                parallelism: 1,
            };
            assert!(c.check().is_ok(), "m={m} t={t}");
        }
    }
}
