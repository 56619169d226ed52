//! argon2id password hashes (PHC strings), computed on a few dedicated
//! threads that each reuse one argon2 memory buffer.
//!
//! Why not the blocking pool: argon2 is memory-hard on purpose (19 MiB per
//! hash with the default parameters). On tokio's blocking pool (up to 512
//! threads) every concurrent sign-in allocated its own 19 MiB on its own
//! thread, and glibc keeps per-thread arenas: 32 concurrent sign-ins with
//! unknown logins grew the process by 541 MiB, never given back. Here at
//! most [`HashPool`]'s thread count of hashes run at once, each thread
//! allocates its buffer once (on first use) and keeps it, so memory is
//! bounded by threads x 19 MiB whatever the load. A request that cannot get
//! a thread within the configured wait gets SERVICE_UNAVAILABLE (retry
//! shortly) instead of queueing without bound.

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::error::{ApiError, ApiResult};

/// The most argon2 memory a stored hash may ask for (256 MiB). Stored hashes
/// are ours (19 MiB); anything beyond this is treated as malformed rather
/// than allowed to allocate without bound.
const MAX_BLOCKS: usize = 256 * 1024;

/// Default number of hashing threads: one per core, at most this many
/// (each holds 19 MiB once used, and sign-ins are a small part of the load).
const DEFAULT_MAX_THREADS: usize = 4;

/// A hash or verification to run on a hashing thread, with the thread's
/// argon2 memory. It carries its permit, so a thread's slot is free again
/// only when its work is done, even if the request that asked went away.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The hashing threads and the bound on waiting for one. Cheap to clone.
#[derive(Clone)]
pub struct HashPool {
    jobs: mpsc::Sender<Job>,
    /// One permit per thread: holding one means a thread is yours.
    permits: Arc<Semaphore>,
    /// How long a request waits for a free thread.
    wait: Duration,
}

impl HashPool {
    /// Starts `threads` hashing threads (0: one per core, at most
    /// [`DEFAULT_MAX_THREADS`]). They end once every clone is dropped.
    pub fn new(threads: usize, wait: Duration) -> std::io::Result<Self> {
        let threads = if threads == 0 { default_threads() } else { threads };
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
                let mut memory = Vec::new();
                loop {
                    // Released before the work, so the other threads can take the next job.
                    let job = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    // A panic fails that one request (its answer is dropped), not the thread.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut memory))).is_err() {
                        tracing::error!("a password hash panicked");
                    }
                }
            })?;
        }
        Ok(Self { jobs, permits: Arc::new(Semaphore::new(threads)), wait })
    }

    /// The PHC string of a new argon2id hash of `password`, with a random salt.
    pub async fn hash(&self, password: String) -> ApiResult<String> {
        self.run(move |memory| hash_with(memory, password.as_bytes())).await?.map_err(ApiError::internal)
    }

    /// True when `password` matches `hash`. A malformed stored hash is a
    /// mismatch (logged), so a corrupt row cannot be signed into.
    pub async fn verify(&self, password: String, hash: String) -> ApiResult<bool> {
        self.run(move |memory| verify_with(memory, password.as_bytes(), &hash)).await
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static) -> ApiResult<T> {
        let permit: OwnedSemaphorePermit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                tracing::warn!("every password hashing thread stayed busy for PASSWORD_HASH_WAIT_MS");
                ApiError::Unavailable("too many sign-ins at once; retry shortly".into())
            })?
            .map_err(ApiError::internal)?;
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = done.send(work(memory));
            drop(permit);
        });
        self.jobs.send(job).map_err(|_| ApiError::internal("the password hashing threads are gone"))?;
        result.await.map_err(|_| ApiError::internal("a password hashing thread failed"))
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(DEFAULT_MAX_THREADS)
}

/// Hashes once, on the caller's thread, with memory of its own: for the CLI
/// and the demo seed, not for requests (use a [`HashPool`]).
pub async fn hash_password(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || hash_with(&mut Vec::new(), password.as_bytes()))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// The argon2 memory for `params`: the thread's own buffer, grown once to the
/// size our hashes use; a larger stored hash gets a buffer of its own.
fn with_memory<T>(memory: &mut Vec<Block>, params: &Params, f: impl FnOnce(&mut [Block]) -> T) -> Result<T, String> {
    let needed = params.block_count();
    if needed > MAX_BLOCKS {
        return Err(format!("argon2 parameters ask for {needed} KiB of memory"));
    }
    if memory.is_empty() {
        memory.resize(Params::default().block_count(), Block::default());
    }
    if let Some(blocks) = memory.get_mut(..needed) {
        return Ok(f(blocks));
    }
    Ok(f(&mut vec![Block::default(); needed]))
}

fn hash_with(memory: &mut Vec<Block>, password: &[u8]) -> Result<String, String> {
    let argon2 = Argon2::default();
    let salt = Salt::generate();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    with_memory(memory, argon2.params(), |blocks| {
        argon2.hash_password_into_with_memory(password, salt.as_ref(), &mut out, blocks)
    })?
    .map_err(|e| e.to_string())?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon2.params()).map_err(|e| e.to_string())?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(hash.to_string())
}

fn verify_with(memory: &mut Vec<Block>, password: &[u8], stored: &str) -> bool {
    match matches(memory, password, stored) {
        Ok(matched) => matched,
        Err(err) => {
            tracing::error!(error = %err, "stored password hash is malformed");
            false
        }
    }
}

fn matches(memory: &mut Vec<Block>, password: &[u8], stored: &str) -> Result<bool, String> {
    let parsed = PasswordHash::new(stored).map_err(|e| e.to_string())?;
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).map_err(|e| e.to_string())?;
    let version = parsed.version.map(Version::try_from).transpose().map_err(|e| e.to_string())?.unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| e.to_string())?;
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Err("no salt or no hash".into());
    };
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = out.get_mut(..expected.len()).ok_or("hash too long")?;
    with_memory(memory, argon2.params(), |blocks| {
        argon2.hash_password_into_with_memory(password, salt.as_ref(), &mut *out, blocks)
    })?
    .map_err(|e| e.to_string())?;
    // Output's equality is constant-time.
    Ok(Output::new(out).map_err(|e| e.to_string())? == *expected)
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    use super::*;

    #[test]
    fn hashes_are_the_argon2_crates_own_phc_strings_both_ways() {
        let mut memory = Vec::new();
        let ours = hash_with(&mut memory, b"correct horse").expect("hashes");
        assert!(ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{ours}");
        let parsed = PasswordHash::new(&ours).expect("parses");
        assert!(Argon2::default().verify_password(b"correct horse", &parsed).is_ok());
        let theirs = Argon2::default().hash_password(b"battery staple").expect("hashes").to_string();
        assert!(verify_with(&mut memory, b"battery staple", &theirs));
        assert!(!verify_with(&mut memory, b"battery stapler", &theirs));
        assert!(!verify_with(&mut memory, b"x", "not a hash"));
        assert_eq!(memory.len(), Params::default().block_count(), "one buffer, reused");
    }

    #[test]
    fn a_stored_hash_that_asks_for_huge_memory_is_malformed_not_allocated() {
        let huge =
            "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(!verify_with(&mut Vec::new(), b"x", huge));
    }

    #[tokio::test]
    async fn the_pool_answers_unavailable_when_no_thread_frees_up_in_time() {
        let pool = HashPool::new(1, Duration::from_millis(50)).expect("starts");
        let busy = pool.permits.clone().acquire_owned().await.expect("permit");
        let err = pool.hash("password".into()).await.expect_err("no thread free");
        assert_eq!(err.code(), "SERVICE_UNAVAILABLE");
        drop(busy);
        let hash = pool.hash("password".into()).await.expect("hashes");
        assert!(pool.verify("password".into(), hash).await.expect("verifies"));
    }
}
