//! Per-user shares of a limit: one user (one token's `sub`) may hold at most `limit` of
//! something at once (requests, uploads), so a single user cannot take every slot of a
//! service-wide limit and lock the others out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct PerKey {
    limit: usize,
    held: Mutex<HashMap<String, usize>>,
}

/// One slot of a key, given back on drop (a response, an error, a dropped handler).
pub struct Slot {
    owner: Arc<PerKey>,
    key: String,
}

impl PerKey {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            held: Mutex::new(HashMap::new()),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A slot for `key`, or `None` when it holds `limit` already.
    pub fn try_enter(self: &Arc<Self>, key: &str) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(key.to_string()).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            owner: self.clone(),
            key: key.to_string(),
        })
    }

    /// Slots `key` holds now.
    pub fn held(&self, key: &str) -> usize {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(key).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.owner.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                // No entry per user who ever called: the map holds only current holders.
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_is_capped_and_others_are_not_affected() {
        let limit = PerKey::new(2);
        let a1 = limit.try_enter("a").unwrap();
        let _a2 = limit.try_enter("a").unwrap();
        assert!(limit.try_enter("a").is_none());
        let _b = limit.try_enter("b").unwrap();
        drop(a1);
        assert!(limit.try_enter("a").is_some());
        drop(_b);
        assert_eq!(limit.held("b"), 0);
    }
}
