//! Password hashes: Argon2id (RFC 9106) in PHC strings, so each stored hash carries its
//! own parameters and salt.
//!
//! Parameters, default: m = 19 MiB (19456 KiB), t = 2, p = 1: OWASP's Password Storage
//! Cheat Sheet minimum for Argon2id. Chosen for a Pi 5 (4 Cortex-A76 cores, 4-8 GiB): one
//! hash takes tens of milliseconds on one core and 19 MiB, so hashes are run on the
//! blocking pool at most `hash_concurrency` at once. Settings below the OWASP minimum are
//! refused at start.
//!
//! Each running hash gets its 19 MiB from a small pool of buffers made once and reused
//! (`hash_password_into_with_memory`), not from the allocator: freed 19 MiB blocks stay in
//! glibc's per-thread arenas, and with the blocking pool's many threads a login burst grew
//! the process to hundreds of MiB (BENCHMARKS.md). Memory is `hash_concurrency × m`.

use std::sync::{Arc, Mutex};

use argon2::password_hash::{Output, ParamsString, PasswordHash, PasswordVerifier, SaltString};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

/// Bytes of hash kept (RFC 9106's recommended tag length).
const OUTPUT_BYTES: usize = 32;

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

    fn params(&self) -> Result<Params, PasswordError> {
        Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(OUTPUT_BYTES),
        )
        .map_err(|e| PasswordError::Params(e.to_string()))
    }
}

/// Hashes and checks passwords on the blocking pool, a bounded number at once, each in
/// one of the pooled buffers.
#[derive(Clone)]
pub struct Passwords {
    cost: Cost,
    params: Params,
    gate: Arc<Semaphore>,
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
    /// A hash of nothing anyone knows: checked against when the user does not exist, so
    /// an unknown name costs the same time as a wrong password.
    dummy: Arc<String>,
}

impl Passwords {
    pub fn new(cost: Cost, concurrency: usize) -> Result<Self, PasswordError> {
        cost.check()?;
        let params = cost.params()?;
        let secret: [u8; 32] = rand::random();
        let mut memory = vec![Block::default(); params.block_count()];
        let dummy = hash_with(&params, &secret, &mut memory)?;
        Ok(Self {
            cost,
            params,
            gate: Arc::new(Semaphore::new(concurrency.max(1))),
            buffers: Arc::new(Mutex::new(vec![memory])),
            dummy: Arc::new(dummy),
        })
    }

    pub fn cost(&self) -> Cost {
        self.cost
    }

    /// Runs `f` on the blocking pool with a pooled buffer, once a permit is free.
    async fn with_memory<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|_| PasswordError::Closed)?;
        let blocks = self.params.block_count();
        let mut memory = self
            .buffers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_else(|| vec![Block::default(); blocks]);
        let (result, memory) = tokio::task::spawn_blocking(move || {
            let result = f(&mut memory);
            (result, memory)
        })
        .await
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
        self.buffers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(memory);
        Ok(result)
    }

    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let params = self.params.clone();
        self.with_memory(move |memory| hash_with(&params, password.as_bytes(), memory))
            .await?
    }

    /// Whether `password` matches `stored`; with `stored` None, checks against the dummy
    /// hash (same cost) and answers false.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy.as_ref().clone());
        let params = self.params.clone();
        let matched = self
            .with_memory(move |memory| verify_with(&params, &password, &stored, memory))
            .await??;
        Ok(known && matched)
    }
}

/// A PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`) of `password`.
fn hash_with(
    params: &Params,
    password: &[u8],
    memory: &mut [Block],
) -> Result<String, PasswordError> {
    let failed = |e: &dyn std::fmt::Display| PasswordError::Hash(e.to_string());
    let salt: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt).map_err(|e| failed(&e))?;
    let mut raw_salt = [0u8; 16];
    let raw_salt = salt
        .as_salt()
        .decode_b64(&mut raw_salt)
        .map_err(|e| failed(&e))?;
    let mut out = [0u8; OUTPUT_BYTES];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, raw_salt, &mut out, memory)
        .map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| failed(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

/// Checks with the pooled buffer when the stored hash has the current parameters, else
/// (an older hash, kept working when the settings change) with its own parameters.
fn verify_with(
    params: &Params,
    password: &str,
    stored: &str,
    memory: &mut [Block],
) -> Result<bool, PasswordError> {
    let failed = |e: &dyn std::fmt::Display| PasswordError::Hash(e.to_string());
    let parsed = PasswordHash::new(stored).map_err(|e| failed(&e))?;
    let same = parsed.algorithm == ARGON2ID_IDENT
        && parsed.version == Some(Version::V0x13.into())
        && Params::try_from(&parsed).is_ok_and(|p| {
            (p.m_cost(), p.t_cost(), p.p_cost())
                == (params.m_cost(), params.t_cost(), params.p_cost())
        });
    let (Some(salt), Some(expected), true) = (parsed.salt, parsed.hash, same) else {
        return Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok());
    };
    let mut raw_salt = [0u8; 64];
    let raw_salt = salt.decode_b64(&mut raw_salt).map_err(|e| failed(&e))?;
    let mut out = vec![0u8; expected.len()];
    let params = Params::new(
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        Some(out.len()),
    )
    .map_err(|e| failed(&e))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into_with_memory(password.as_bytes(), raw_salt, &mut out, memory)
        .map_err(|e| failed(&e))?;
    // Output's equality is constant-time.
    Ok(Output::new(&out).map_err(|e| failed(&e))? == expected)
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

    #[tokio::test]
    async fn pooled_hashes_are_standard_phc_and_older_parameters_still_verify() {
        use argon2::password_hash::PasswordHasher;
        let p = Passwords::new(Cost::default(), 1).unwrap();
        // Ours verifies with the crate's own verifier...
        let ours = p.hash("pw-123456".into()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"pw-123456", &parsed)
                .is_ok()
        );
        // ...and a hash the crate made (other parameters, as after a settings change)
        // verifies with ours.
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let older = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(47104, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw-123456", &salt)
        .unwrap()
        .to_string();
        assert!(
            p.verify("pw-123456".into(), Some(older.clone()))
                .await
                .unwrap()
        );
        assert!(!p.verify("pw-1234567".into(), Some(older)).await.unwrap());
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
