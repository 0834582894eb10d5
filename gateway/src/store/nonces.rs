//! Nonces of applied district commands, so a replayed command is refused
//! even across a restart. Kept in the `meta` tree under `nonce/`; entries
//! stamped before `forget_before` (older than any command the time window
//! still accepts) are pruned.

use super::{sled_err, Store, StoreError};

const PREFIX: &[u8] = b"nonce/";

impl Store {
    /// Records `nonce` for `scope`; false when it was already used.
    pub fn claim_nonce(
        &self,
        scope: &str,
        nonce: &str,
        stamped: i64,
        forget_before: i64,
    ) -> Result<bool, StoreError> {
        let key = [PREFIX, scope.as_bytes(), b"\0", nonce.as_bytes()].concat();
        let fresh = self
            .meta
            .compare_and_swap(
                &key,
                None as Option<&[u8]>,
                Some(&stamped.to_be_bytes()[..]),
            )
            .map_err(sled_err("claim nonce"))?
            .is_ok();
        if fresh {
            self.prune_nonces(forget_before)?;
        }
        Ok(fresh)
    }

    fn prune_nonces(&self, horizon: i64) -> Result<(), StoreError> {
        for kv in self.meta.scan_prefix(PREFIX) {
            let (k, v) = kv.map_err(sled_err("scan nonces"))?;
            let stamped = <[u8; 8]>::try_from(v.as_ref())
                .map(i64::from_be_bytes)
                .unwrap_or(0);
            if stamped < horizon {
                self.meta.remove(k).map_err(sled_err("prune nonce"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_good_once_per_scope_and_old_ones_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let t = 10_000_000;
        assert!(store.claim_nonce("a", "n1", t, 0).unwrap());
        assert!(!store.claim_nonce("a", "n1", t, 0).unwrap());
        assert!(store.claim_nonce("b", "n1", t, 0).unwrap());
        // Later: n1 of scope a (stamped t) is forgotten by the next claim.
        assert!(store.claim_nonce("a", "n2", t + 500, t + 1).unwrap());
        assert!(store.claim_nonce("a", "n1", t + 500, t + 1).unwrap());
        assert!(!store.claim_nonce("a", "n2", t + 500, t + 1).unwrap());
    }
}
