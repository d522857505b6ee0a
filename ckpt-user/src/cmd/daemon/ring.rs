//! The ring buffer's consumer: a thread of its own that empties the ring as the kernel fills it.
//! The daemon's loop is busy for hundreds of milliseconds at times (a rescan beside thousands
//! of processes); read from there, the ring overflowed under a storm of 10,000 accepted
//! connections a second even at 4 MiB, and each loss cost another rescan. Records wait here
//! instead, in order, up to a byte budget; past it they are dropped and counted like the
//! kernel's own losses, which the loop answers with a rescan.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::sync::mpsc;

/// How long the thread sleeps in poll(2) at most. The ring's fd is level-triggered, so records
/// never wait for a wakeup that was lost; the timeout bounds a wakeup the kernel never sent
/// and how late the thread notices that the daemon stopped.
const POLL_TIMEOUT: Duration = Duration::from_millis(250);

/// How long the thread lets records gather after a wakeup before it reads them. The kernel
/// wakes a consumer that has caught up at every record: under a storm, reading at once meant a
/// wakeup of this thread and of the daemon's loop per record or two.
const GATHER: Duration = Duration::from_millis(1);

/// Records per batch at most: a storm that never lets the ring empty still gets its records
/// to the daemon as they come.
const BATCH_MAX: usize = 4096;

/// Records read in one go, copied out so that the kernel may reuse their space while they wait.
pub struct Batch {
    pub records: Vec<Vec<u8>>,
    /// Read after poll(2) timed out: the kernel sent no wakeup for them.
    pub unannounced: bool,
    bytes: usize,
}

/// Bytes read from the ring and not yet taken by the daemon, against a budget; what does not
/// fit is counted as dropped. Shared by the thread and the daemon's end.
#[derive(Default)]
struct Backlog {
    queued: AtomicUsize,
    dropped: AtomicU64,
    budget: usize,
}

impl Backlog {
    /// Whether a batch of `records` records and `bytes` bytes fits; counts it as dropped if not.
    fn admit(&self, records: usize, bytes: usize) -> bool {
        if self.queued.load(Ordering::Relaxed) + bytes > self.budget {
            self.dropped.fetch_add(records as u64, Ordering::Relaxed);
            return false;
        }
        self.queued.fetch_add(bytes, Ordering::Relaxed);
        true
    }

    fn release(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// The daemon's end: batches in the order the kernel wrote them.
pub struct Ring {
    batches: mpsc::UnboundedReceiver<Batch>,
    backlog: Arc<Backlog>,
}

impl Ring {
    /// Starts the thread; it holds `ring` (and its fd) until the `Ring` is dropped.
    /// `budget`: bytes of records waiting for the daemon at most.
    pub fn spawn(ring: RingBuf<MapData>, budget: usize) -> std::io::Result<Self> {
        let (tx, batches) = mpsc::unbounded_channel();
        let backlog = Arc::new(Backlog {
            budget,
            ..Backlog::default()
        });
        let consumer = Consumer {
            ring,
            tx,
            backlog: backlog.clone(),
        };
        std::thread::Builder::new()
            .name("ring-buffer".into())
            .spawn(move || consumer.run())?;
        Ok(Self { batches, backlog })
    }

    /// The next batch; `None` once the thread has stopped (it never does on its own).
    pub async fn next(&mut self) -> Option<Batch> {
        let batch = self.batches.recv().await?;
        self.backlog.release(batch.bytes);
        Some(batch)
    }

    /// Records dropped for want of room in the budget, since the start.
    pub fn dropped(&self) -> u64 {
        self.backlog.dropped.load(Ordering::Relaxed)
    }
}

struct Consumer {
    ring: RingBuf<MapData>,
    tx: mpsc::UnboundedSender<Batch>,
    backlog: Arc<Backlog>,
}

impl Consumer {
    fn run(mut self) {
        let timeout = POLL_TIMEOUT.as_millis() as libc::c_int;
        while !self.tx.is_closed() {
            let mut pfd = libc::pollfd {
                fd: self.ring.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, for an fd `self.ring` keeps open.
            let ready = unsafe { libc::poll(&mut pfd, 1, timeout) };
            if ready < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    // Not expected for a valid fd; the timeout keeps the thread from spinning.
                    tracing::error!("polling the ring buffer: {e}");
                    std::thread::sleep(POLL_TIMEOUT);
                }
                continue;
            }
            if ready > 0 {
                std::thread::sleep(GATHER);
            }
            let mut records = vec![];
            let mut bytes = 0;
            while records.len() < BATCH_MAX
                && let Some(item) = self.ring.next()
            {
                bytes += item.len();
                records.push(item.to_vec());
            }
            if records.is_empty() {
                continue;
            }
            if !self.backlog.admit(records.len(), bytes) {
                continue;
            }
            let batch = Batch {
                records,
                unannounced: ready == 0,
                bytes,
            };
            if self.tx.send(batch).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_past_the_budget_is_dropped_and_counted_until_the_daemon_takes_some() {
        let backlog = Backlog {
            budget: 1000,
            ..Backlog::default()
        };
        assert!(backlog.admit(3, 600));
        assert!(!backlog.admit(2, 401), "600 + 401 bytes exceed 1000");
        assert_eq!(backlog.dropped.load(Ordering::Relaxed), 2);
        assert!(backlog.admit(1, 400), "exactly the budget fits");
        assert!(!backlog.admit(1, 1));
        backlog.release(600);
        assert!(backlog.admit(5, 600), "taken batches make room again");
        assert_eq!(backlog.dropped.load(Ordering::Relaxed), 3);
    }
}
