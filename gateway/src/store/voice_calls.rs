//! Calls placed with a cloud voice provider and not yet settled: delivery id
//! → the voice channel's record of the call (its own type: the store keeps
//! the JSON and knows nothing of voice). Written before the provider's result can arrive and
//! removed once the outcome is handed to dispatch, so a restart between the
//! request and the callback waits for that call's result (or polls for it)
//! instead of ringing the person again.

use super::{decode, sled_err, Store, StoreError};
use serde::{de::DeserializeOwned, Serialize};

impl Store {
    fn voice_calls_tree(&self) -> Result<sled::Tree, StoreError> {
        self.db
            .open_tree("voice_calls")
            .map_err(sled_err("open tree"))
    }

    /// Puts (or replaces) the call of one delivery, not yet flushed: the
    /// voice channel flushes through one gate, so fifty calls placed at once
    /// make one or two flushes, not fifty concurrent ones.
    pub fn put_voice_call<T: Serialize>(
        &self,
        delivery_id: &str,
        call: &T,
    ) -> Result<(), StoreError> {
        self.voice_calls_tree()?
            .insert(delivery_id.as_bytes(), serde_json::to_vec(call)?)
            .map_err(sled_err("write voice call"))?;
        Ok(())
    }

    /// The unsettled call of a delivery, if any.
    pub fn voice_call<T: DeserializeOwned>(
        &self,
        delivery_id: &str,
    ) -> Result<Option<T>, StoreError> {
        match self
            .voice_calls_tree()?
            .get(delivery_id.as_bytes())
            .map_err(sled_err("read voice call"))?
        {
            Some(v) => decode("voice_calls", delivery_id.as_bytes(), &v).map(Some),
            None => Ok(None),
        }
    }

    /// Forgets a delivery's call once its outcome is settled.
    pub fn remove_voice_call(&self, delivery_id: &str) -> Result<(), StoreError> {
        self.voice_calls_tree()?
            .remove(delivery_id.as_bytes())
            .map_err(sled_err("remove voice call"))?;
        Ok(())
    }
}
