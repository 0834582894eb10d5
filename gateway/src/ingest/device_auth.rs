//! Who may connect to the embedded broker. With `[[mqtt.users]]` configured,
//! anonymous access is off: a client needs a username whose argon2id hash
//! matches its password, and a client id that the username may speak for
//! (the username itself or one of its `devices` globs), so a credential
//! cannot take over another device's session. The gateway's own client uses
//! an internal credential generated at every start and never written down.
//!
//! rumqttd has no per-topic ACL and hands subscribers a publish without its
//! publisher's identity, so what a connected client publishes is checked by
//! the ingest handler instead ([`MqttUser::covers`]); `docs/security.md`
//! states the limit that remains.

use crate::config::MqttUser;
use crate::security::limiter::{KeyedLimiter, Rate};
use crate::security::password::verify_password;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// Failed password checks allowed per username before checks are refused
/// for a while: argon2 is slow on purpose, which a flood must not turn
/// against the box.
const FAILED_LOGIN_RATE: Rate = Rate {
    burst: 5.0,
    per_sec: 0.1,
};

/// The gateway's own broker login, random per process.
#[derive(Clone)]
pub struct InternalCredential {
    pub username: String,
    pub password: String,
}

impl InternalCredential {
    /// A fresh random credential.
    pub fn generate() -> InternalCredential {
        let bytes: [u8; 24] = rand::random();
        let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        InternalCredential {
            username: "gridwatch-internal".into(),
            password,
        }
    }
}

impl std::fmt::Debug for InternalCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalCredential")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Checks broker logins.
pub struct DeviceAuth {
    users: HashMap<String, MqttUser>,
    internal: InternalCredential,
    /// username → SHA-256 of the last password that verified: a reconnecting
    /// device does not pay for argon2 again.
    verified: Mutex<HashMap<String, [u8; 32]>>,
    failures: Mutex<KeyedLimiter<String>>,
}

/// Why a login was refused (logged, never sent to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnknownUser,
    BadPassword,
    ClientIdNotAllowed,
    TooManyFailures,
}

impl DeviceAuth {
    /// From the configured users and this process's internal credential.
    pub fn new(users: &[MqttUser], internal: InternalCredential) -> DeviceAuth {
        DeviceAuth {
            users: users
                .iter()
                .map(|u| (u.username.clone(), u.clone()))
                .collect(),
            internal,
            verified: Mutex::new(HashMap::new()),
            failures: Mutex::new(KeyedLimiter::new(FAILED_LOGIN_RATE, users.len() + 1)),
        }
    }

    /// Whether the login may connect; `now` in epoch ms.
    pub fn check(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
        now: i64,
    ) -> Result<(), Refusal> {
        if username == self.internal.username {
            return if crate::util::constant_time_eq(
                password.as_bytes(),
                self.internal.password.as_bytes(),
            ) {
                Ok(())
            } else {
                Err(Refusal::BadPassword)
            };
        }
        let user = self.users.get(username).ok_or(Refusal::UnknownUser)?;
        if client_id != user.username && !user.covers(client_id) {
            return Err(Refusal::ClientIdNotAllowed);
        }
        let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        let cached = self
            .verified
            .lock()
            .ok()
            .and_then(|m| m.get(username).copied());
        if cached.is_some_and(|c| crate::util::constant_time_eq(&c, &digest)) {
            return Ok(());
        }
        let key = username.to_string();
        if let Ok(mut f) = self.failures.lock() {
            if !f.allows(&key, now) {
                return Err(Refusal::TooManyFailures);
            }
        }
        if verify_password(password.as_bytes(), &user.password_hash) {
            if let Ok(mut m) = self.verified.lock() {
                m.insert(key, digest);
            }
            Ok(())
        } else {
            if let Ok(mut f) = self.failures.lock() {
                f.try_take(&key, now);
            }
            Err(Refusal::BadPassword)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::password::hash_password;

    fn auth() -> (DeviceAuth, InternalCredential) {
        let users = vec![
            MqttUser {
                username: "smk-1".into(),
                password_hash: hash_password("pw-1").unwrap(),
                devices: vec![],
            },
            MqttUser {
                username: "floor3".into(),
                password_hash: hash_password("pw-3").unwrap(),
                devices: vec!["smk-3-*".into()],
            },
        ];
        let internal = InternalCredential::generate();
        (DeviceAuth::new(&users, internal.clone()), internal)
    }

    #[test]
    fn logins() {
        let (a, internal) = auth();
        assert_eq!(a.check("smk-1", "smk-1", "pw-1", 0), Ok(()));
        assert_eq!(a.check("smk-1", "smk-1", "pw-1", 0), Ok(()), "cached");
        assert_eq!(
            a.check("smk-1", "smk-1", "pw-2", 0),
            Err(Refusal::BadPassword)
        );
        assert_eq!(a.check("x", "nobody", "pw-1", 0), Err(Refusal::UnknownUser));
        assert_eq!(
            a.check("smk-2", "smk-1", "pw-1", 0),
            Err(Refusal::ClientIdNotAllowed),
            "a credential cannot take another device's client id"
        );
        assert_eq!(a.check("smk-3-2", "floor3", "pw-3", 0), Ok(()));
        assert_eq!(a.check("floor3", "floor3", "pw-3", 0), Ok(()));
        assert_eq!(
            a.check("smk-4-1", "floor3", "pw-3", 0),
            Err(Refusal::ClientIdNotAllowed)
        );
        assert_eq!(
            a.check("gw", &internal.username, &internal.password, 0),
            Ok(())
        );
        assert_eq!(
            a.check("gw", &internal.username, "guess", 0),
            Err(Refusal::BadPassword)
        );
    }

    #[test]
    fn failures_are_throttled_but_a_known_good_password_still_works() {
        let (a, _) = auth();
        assert_eq!(a.check("smk-1", "smk-1", "pw-1", 0), Ok(()));
        for _ in 0..5 {
            assert_eq!(
                a.check("smk-1", "smk-1", "bad", 0),
                Err(Refusal::BadPassword)
            );
        }
        assert_eq!(
            a.check("smk-1", "smk-1", "bad", 0),
            Err(Refusal::TooManyFailures)
        );
        assert_eq!(
            a.check("smk-1", "smk-1", "pw-1", 0),
            Ok(()),
            "cached login unaffected"
        );
        assert_eq!(
            a.check("smk-1", "smk-1", "bad", 10_000),
            Err(Refusal::BadPassword)
        );
    }
}
