//! Operations: backups with retention, and the Prometheus metrics that
//! read the pool's and the change feed's figures (`ops` reads `db` and
//! `realtime`; neither reads `ops`).

pub mod backup;
pub mod metrics;
