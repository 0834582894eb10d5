//! Security building blocks shared by the API, the broker and the ingest
//! path: password and token hashes, rate limiters, device-id globs and
//! secret files. Pure or file-local: no networking here, so each piece is
//! unit-tested on its own. The threat model is in `docs/security.md`.

pub mod glob;
pub mod limiter;
pub mod password;
pub mod secret_file;
