//! The ring buffer's consumer: a thread of its own that empties the ring as the kernel fills it.
//! The daemon's loop is busy for hundreds of milliseconds at times (a rescan beside thousands
//! of processes); read from there, the ring overflowed under a storm of 10,000 accepted
//! connections a second even at 4 MiB, and each loss cost another rescan. Records wait here
//! instead, in order, up to a byte budget; past it they are dropped and counted like the
//! kernel's own losses, which the loop answers with a rescan.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::sync::mpsc;

/// How long the thread waits for a wakeup at most: it bounds a wakeup the kernel never sent
/// (the ring is read after it all the same) and how late the thread notices that the daemon
/// stopped.
const WAIT_TIMEOUT: Duration = Duration::from_millis(250);

/// How long records gather after a wakeup before they are read. The kernel wakes a consumer
/// only when it finds it caught up, so while records gather nothing wakes the thread; under a
/// storm, reading sooner meant a wakeup of this thread and of the daemon's loop each time.
/// The alert latency hardly moves: the settle tick (25 ms) dominates it. A storm must not fill
/// the ring meanwhile, so the programs force a wakeup once a quarter of it waits
/// (`BPF_RB_FORCE_WAKEUP`), and that wakeup ends the gathering: the wait is edge-triggered,
/// so it ends at the kernel's next wakeup, not whenever a record is waiting.
const GATHER: Duration = Duration::from_millis(10);

/// Records per batch at most: a storm that never lets the ring empty still gets its records
/// to the daemon as they come.
const BATCH_MAX: usize = 4096;

/// Records read in one go, copied out so that the kernel may reuse their space while they wait.
pub struct Batch {
    pub records: Vec<Vec<u8>>,
    /// Read after the wait timed out: the kernel sent no wakeup for them.
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
        use rustix::event::epoll;
        let wakeups = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(
            &wakeups,
            ring.as_fd(),
            epoll::EventData::new_u64(0),
            epoll::EventFlags::IN | epoll::EventFlags::ET,
        )?;
        let consumer = Consumer {
            ring,
            wakeups,
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
    /// An epoll fd watching the ring's, edge-triggered: ready once per kernel wakeup.
    wakeups: OwnedFd,
    tx: mpsc::UnboundedSender<Batch>,
    backlog: Arc<Backlog>,
}

impl Consumer {
    /// Whether the kernel woke the ring within `timeout`. An error (not expected for valid
    /// fds) is logged and waits it out, so the thread never spins.
    fn wait(&self, timeout: Duration) -> bool {
        use rustix::event::{Timespec, epoll};
        let timespec = Timespec {
            tv_sec: timeout.as_secs() as _,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        let mut events = [epoll::Event {
            flags: epoll::EventFlags::empty(),
            data: epoll::EventData::new_u64(0),
        }];
        match epoll::wait(&self.wakeups, &mut events, Some(&timespec)) {
            Ok(n) => n > 0,
            Err(rustix::io::Errno::INTR) => false,
            Err(e) => {
                tracing::error!("waiting on the ring buffer: {e}");
                std::thread::sleep(timeout);
                false
            }
        }
    }

    fn run(mut self) {
        // A read stopped at BATCH_MAX: the rest is read at once, since the kernel sends no
        // wakeup to a consumer behind.
        let mut behind = false;
        while !self.tx.is_closed() {
            let announced = behind || self.wait(WAIT_TIMEOUT);
            if announced && !behind {
                self.wait(GATHER);
            }
            let mut records = vec![];
            let mut bytes = 0;
            while records.len() < BATCH_MAX
                && let Some(item) = self.ring.next()
            {
                bytes += item.len();
                records.push(item.to_vec());
            }
            behind = records.len() == BATCH_MAX;
            if records.is_empty() {
                continue;
            }
            if !self.backlog.admit(records.len(), bytes) {
                continue;
            }
            let batch = Batch {
                records,
                unannounced: !announced,
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
