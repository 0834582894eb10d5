//! Stored shelves (see `alarms::shelf`): device id → shelf, so a shelf and
//! its expiry survive a restart. Written by the alarms stage only.

use super::{decode, sled_err, Store, StoreError};
use crate::alarms::Shelf;

impl Store {
    pub(super) fn shelves_tree(&self) -> Result<sled::Tree, StoreError> {
        self.db.open_tree("shelves").map_err(sled_err("open tree"))
    }

    /// Puts (or replaces) a device's shelf and flushes it.
    pub async fn put_shelf(&self, s: &Shelf) -> Result<(), StoreError> {
        self.shelves_tree()?
            .insert(s.device_id.as_bytes(), serde_json::to_vec(s)?)
            .map_err(sled_err("write shelf"))?;
        self.flush().await
    }

    /// Removes a device's shelf (expired or lifted) and flushes.
    pub async fn remove_shelf(&self, device_id: &str) -> Result<(), StoreError> {
        self.shelves_tree()?
            .remove(device_id.as_bytes())
            .map_err(sled_err("remove shelf"))?;
        self.flush().await
    }

    /// Every stored shelf, expired or not.
    pub fn shelves(&self) -> Result<Vec<Shelf>, StoreError> {
        self.shelves_tree()?
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(sled_err("read shelves"))?;
                decode("shelves", &k, &v)
            })
            .collect()
    }
}
