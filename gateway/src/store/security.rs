//! The store's security records: the audit trail (who did what through the
//! API or a signal), single-use claims of ack links, and the purge of one
//! household's personal data. Kept apart from the alarm and outbox code so
//! the transaction logic of `mod.rs` stays small.

use super::{decode, op, sled_err, Store, StoreError};
use crate::dispatch::Outgoing;
use crate::model::EpochMs;
use serde::{Deserialize, Serialize};

/// One audited action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: EpochMs,
    /// `ack`, `resolve`, `verify`, `reload`, `ack_link`.
    pub action: String,
    /// The alarm acted on; `None` for config reloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_id: Option<String>,
    /// API token name (or `ack-link`, `SIGHUP`): the credential used.
    pub via: String,
    /// The person named in the request (`by`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// `ok`, or why it was refused.
    pub outcome: String,
}

/// What a purge removed (or would remove, on a dry run).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PurgeReport {
    pub alarms: usize,
    pub deliveries: usize,
    pub outbox: usize,
    pub audit: usize,
    pub ack_claims: usize,
}

impl Store {
    fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        self.db.open_tree(name).map_err(sled_err("open tree"))
    }

    /// Appends an audit entry (FIFO by key; flushed with the next flush).
    pub fn record_audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        let key = self.db.generate_id().map_err(sled_err("generate id"))?;
        self.tree("audit")?
            .insert(key.to_be_bytes(), serde_json::to_vec(e)?)
            .map_err(sled_err("write audit"))?;
        Ok(())
    }

    /// Audit entries, oldest first; only those of `alarm_id` when given.
    pub fn audit(&self, alarm_id: Option<&str>) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree("audit")?.iter() {
            let (k, v) = kv.map_err(sled_err("read audit"))?;
            let e: AuditEntry = decode("audit", &k, &v)?;
            if alarm_id.is_none() || e.alarm_id.as_deref() == alarm_id {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Claims `key` once: true for the first caller, false ever after (atomic).
    /// Ack links use it so that a link acks at most once.
    pub fn claim_once(&self, key: &str, at: EpochMs) -> Result<bool, StoreError> {
        let res = self
            .tree("claims")?
            .compare_and_swap(key, None as Option<&[u8]>, Some(&at.to_be_bytes()[..]))
            .map_err(sled_err("write claim"))?;
        Ok(res.is_ok())
    }

    /// Gives a claim back (the action it guarded failed for a reason that is not final).
    pub fn release_claim(&self, key: &str) -> Result<(), StoreError> {
        self.tree("claims")?
            .remove(key)
            .map_err(sled_err("remove claim"))?;
        Ok(())
    }

    /// Deletes (or, with `dry_run`, counts) every record of household
    /// `household_id`: its alarms, their deliveries, pending notifications,
    /// audit entries and ack-link claims. Flushed before it returns.
    pub async fn purge_household(
        &self,
        household_id: &str,
        dry_run: bool,
    ) -> Result<PurgeReport, StoreError> {
        let mut rep = PurgeReport::default();
        let _gate = (!dry_run).then(|| self.gate()).flatten();
        let ids: Vec<String> = self
            .alarms()?
            .into_iter()
            .filter(|a| a.household_id == household_id)
            .map(|a| a.id)
            .collect();
        let owned = |id: &str| ids.iter().any(|x| x == id);
        for id in &ids {
            rep.alarms += 1;
            let prefix = format!("{id}/");
            for kv in self.deliveries.scan_prefix(prefix.as_bytes()) {
                let (k, _) = kv.map_err(sled_err("read deliveries"))?;
                rep.deliveries += 1;
                if !dry_run {
                    self.log(&[op(2, &k, None)]);
                    self.deliveries
                        .remove(k)
                        .map_err(sled_err("remove delivery"))?;
                }
            }
            let claims = self.tree("claims")?;
            for kv in claims.scan_prefix(format!("ack/{id}/").as_bytes()) {
                let (k, _) = kv.map_err(sled_err("read claims"))?;
                rep.ack_claims += 1;
                if !dry_run {
                    claims.remove(k).map_err(sled_err("remove claim"))?;
                }
            }
            if !dry_run {
                self.log(&[op(0, id.as_bytes(), None)]);
                self.alarms.remove(id).map_err(sled_err("remove alarm"))?;
            }
        }
        for kv in self.outbox.iter() {
            let (k, v) = kv.map_err(sled_err("read outbox"))?;
            let o: Outgoing = decode("outbox", &k, &v)?;
            if owned(&o.notification.alarm.id) || o.notification.alarm.household_id == household_id
            {
                rep.outbox += 1;
                if !dry_run {
                    self.log(&[op(1, &k, None)]);
                    self.outbox.remove(k).map_err(sled_err("remove outbox"))?;
                }
            }
        }
        let audit = self.tree("audit")?;
        for kv in audit.iter() {
            let (k, v) = kv.map_err(sled_err("read audit"))?;
            let e: AuditEntry = decode("audit", &k, &v)?;
            if e.alarm_id.as_deref().is_some_and(owned) {
                rep.audit += 1;
                if !dry_run {
                    audit.remove(k).map_err(sled_err("remove audit"))?;
                }
            }
        }
        drop(_gate);
        if !dry_run {
            self.flush().await?;
        }
        Ok(rep)
    }
}
