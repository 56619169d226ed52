//! Operations from the seeds: backups with retention (monitoring and
//! pooling live with the pool and the HTTP layer).

pub mod backup;
pub mod metrics;
