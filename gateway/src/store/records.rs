//! Small named records a stage keeps across restarts that are not part of the
//! alarm loop: the 查岗 received from the fire monitoring centre, the recent
//! posts per group robot (its rate budget). One JSON value per name, bounded
//! by its owner, written and flushed whole. Not journaled and not in
//! `gridwatch backup` (like shelves): after a store rebuild they come back
//! from what the damaged store still yields, or start empty (the owners
//! treat a missing or unreadable record as empty, and say so).

use super::{decode, sled_err, Store, StoreError};
use serde::de::DeserializeOwned;
use serde::Serialize;

impl Store {
    fn records_tree(&self) -> Result<sled::Tree, StoreError> {
        self.db.open_tree("records").map_err(sled_err("open tree"))
    }

    /// Puts (or replaces) the record `name` and flushes it.
    pub async fn put_record<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        self.records_tree()?
            .insert(name.as_bytes(), serde_json::to_vec(value)?)
            .map_err(sled_err("write record"))?;
        self.flush().await
    }

    /// The record `name`, if stored.
    pub fn record<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self
            .records_tree()?
            .get(name.as_bytes())
            .map_err(sled_err("read record"))?
        {
            Some(v) => decode("records", name.as_bytes(), &v).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_record_survives_reopening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        {
            let (store, _) = Store::open(&path).unwrap();
            assert_eq!(store.record::<Vec<i64>>("posts").unwrap(), None);
            store.put_record("posts", &vec![1_i64, 2, 3]).await.unwrap();
            store.put_record("posts", &vec![4_i64]).await.unwrap();
        }
        let (store, report) = Store::open(&path).unwrap();
        assert!(report.damage.is_empty(), "{:?}", report.damage);
        assert_eq!(store.record::<Vec<i64>>("posts").unwrap(), Some(vec![4]));
    }

    #[tokio::test]
    async fn an_undecodable_record_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("data")).unwrap();
        store.put_record("posts", &"not a list").await.unwrap();
        assert!(store.record::<Vec<i64>>("posts").is_err());
    }
}
