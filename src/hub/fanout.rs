//! The fan-out threads (`[server] threads`, docs/config.md §5): who writes
//! a batch of events to the clients' sockets.
//!
//! The hub numbers and serializes each event once and pushes the shared
//! bytes into every subscribed client's outbox; what costs is the write
//! after it, one `sendmsg` per client per batch ([`Tx::flush`]). Each
//! client belongs to one shard, chosen at join (the least loaded). Shard 0
//! is the hub's own thread: with `threads = 1` the hub writes every socket
//! itself, as it always did. Shards 1.. are threads of their own, each
//! handed its clients' flushes once per batch (one wake-up per shard and
//! batch, not per client), so on a 4-core Pi four cores share the writes.
//!
//! Order per client holds: the hub pushes into a client's outbox in order,
//! and a flush takes what is queued in order, under the outbox's own lock;
//! conflation and the 1013 cap are the outbox's, decided at the push in the
//! hub, exactly as with one thread. A shard's queue is bounded by its
//! clients: a client is owed a flush at most once until that flush begins
//! (`Outbox::push_quiet`), so it is listed at most once.
//!
//! Nothing here waits on a client: a shard thread sleeps on its queue and
//! writes with non-blocking `sendmsg`. Dropping the [`Fanout`] stops and
//! joins the threads.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::outbox::Batch;
use crate::session::wire::Tx;

/// Which shard a client's writes belong to.
pub type Shard = usize;

/// The hub's side of the fan-out threads.
pub struct Fanout {
    /// Clients per shard, to place the next one.
    load: Vec<usize>,
    /// Flushes owed per shard since the last batch; shard 0's are the hub's.
    owed: Vec<Vec<Tx>>,
    /// Shards 1.., each a thread.
    threads: Vec<Worker>,
}

/// One fan-out thread.
struct Worker {
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
}

/// What the hub hands a fan-out thread.
#[derive(Default)]
struct Queue {
    pending: Mutex<Pending>,
    ready: Condvar,
}

#[derive(Default)]
struct Pending {
    txs: Vec<Tx>,
    stop: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic in a flush leaves a list of clients: still consistent.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Fanout {
    /// Fan-out over `threads` shards (at least 1): the hub's thread and
    /// `threads - 1` more, named `fanout-1`…. A thread that cannot be
    /// started leaves its share with the others (logged).
    pub fn new(threads: usize) -> Fanout {
        let mut workers = Vec::new();
        for k in 1..threads.max(1) {
            let queue = Arc::new(Queue::default());
            let theirs = queue.clone();
            match std::thread::Builder::new()
                .name(format!("fanout-{k}"))
                .spawn(move || work(&theirs))
            {
                Ok(thread) => workers.push(Worker {
                    queue,
                    thread: Some(thread),
                }),
                Err(e) => {
                    log::warn!("cannot start fan-out thread {k}: {e}; running with fewer");
                    break;
                }
            }
        }
        let shards = workers.len() + 1;
        Fanout {
            load: vec![0; shards],
            owed: (0..shards).map(|_| Vec::new()).collect(),
            threads: workers,
        }
    }

    /// How many threads write to clients (the hub's among them).
    pub fn threads(&self) -> usize {
        self.load.len()
    }

    /// The shard for a new client: the one with the fewest.
    pub fn join(&mut self) -> Shard {
        let (shard, _) = self
            .load
            .iter()
            .enumerate()
            .min_by_key(|(_, n)| **n)
            .unwrap_or((0, &0));
        self.load[shard] += 1;
        shard
    }

    /// A client of `shard` left.
    pub fn leave(&mut self, shard: Shard) {
        if let Some(n) = self.load.get_mut(shard) {
            *n = n.saturating_sub(1);
        }
    }

    /// `tx`, of `shard`, is owed a flush after this batch.
    pub fn owe(&mut self, shard: Shard, tx: Tx) {
        let shard = shard.min(self.owed.len() - 1);
        self.owed[shard].push(tx);
    }

    /// Whether no flush is owed.
    pub fn is_empty(&self) -> bool {
        self.owed.iter().all(Vec::is_empty)
    }

    /// Flushes what is owed: the other shards' lists go to their threads
    /// first (so they write while the hub does), then the hub writes its
    /// own shard's. `scratch` is the hub's batch space, left empty.
    pub fn flush(&mut self, scratch: &mut Batch) {
        for (worker, owed) in self.threads.iter().zip(self.owed[1..].iter_mut()) {
            if owed.is_empty() {
                continue;
            }
            let mut pending = worker.queue.lock();
            let was_empty = pending.txs.is_empty();
            pending.txs.append(owed);
            drop(pending);
            if was_empty {
                worker.queue.ready.notify_one();
            }
        }
        for tx in self.owed[0].drain(..) {
            tx.flush(scratch);
        }
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        for worker in &self.threads {
            worker.queue.lock().stop = true;
            worker.queue.ready.notify_one();
        }
        for worker in &mut self.threads {
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// A fan-out thread: waits for its list, writes it, until told to stop
/// (what is listed then is still written).
fn work(queue: &Queue) {
    let mut mine: Vec<Tx> = Vec::new();
    let mut scratch = Batch::default();
    loop {
        {
            let mut pending = queue.lock();
            while pending.txs.is_empty() && !pending.stop {
                pending = queue.ready.wait(pending).unwrap_or_else(|e| e.into_inner());
            }
            if pending.txs.is_empty() {
                return;
            }
            std::mem::swap(&mut pending.txs, &mut mine);
        }
        for tx in mine.drain(..) {
            tx.flush(&mut scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{Frame, Outbox};
    use async_tungstenite::tungstenite::Utf8Bytes;

    #[test]
    fn clients_go_to_the_least_loaded_shard() {
        let mut fanout = Fanout::new(3);
        assert_eq!(fanout.threads(), 3);
        let shards: Vec<Shard> = (0..6).map(|_| fanout.join()).collect();
        assert_eq!(shards, [0, 1, 2, 0, 1, 2]);
        fanout.leave(1);
        assert_eq!(fanout.join(), 1);
    }

    #[test]
    fn one_thread_is_the_hubs_own() {
        let fanout = Fanout::new(1);
        assert_eq!(fanout.threads(), 1);
        assert!(fanout.threads.is_empty());
        assert_eq!(Fanout::new(0).threads(), 1);
    }

    /// A waker that reports on a channel.
    struct Report(Mutex<std::sync::mpsc::Sender<std::thread::ThreadId>>);

    impl std::task::Wake for Report {
        fn wake(self: Arc<Self>) {
            let tx = self.0.lock().unwrap();
            let _ = tx.send(std::thread::current().id());
        }
    }

    #[test]
    fn a_shard_thread_rings_its_clients() {
        // A detached Tx only rings its outbox's writer: the waiting writer
        // is woken, from the shard's own thread.
        let mut fanout = Fanout::new(2);
        let outbox = Outbox::new();
        let (woke_tx, woke) = std::sync::mpsc::channel();
        let waker = std::task::Waker::from(Arc::new(Report(Mutex::new(woke_tx))));
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(outbox.poll_work(&mut cx).is_pending());
        let (_, owe) = outbox.push_quiet(Frame {
            text: Utf8Bytes::from_static("x"),
            key: None,
        });
        assert!(owe, "a waiting writer is owed a ring");
        assert_eq!(fanout.join(), 0);
        let shard = fanout.join();
        assert_eq!(shard, 1);
        fanout.owe(shard, Tx::detached(outbox.clone()));
        assert!(!fanout.is_empty());
        fanout.flush(&mut Batch::default());
        assert!(fanout.is_empty());
        let by = woke
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the shard thread rang the writer");
        assert_ne!(by, std::thread::current().id());
    }
}
