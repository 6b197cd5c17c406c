//! Where the daemon's tasks run: on one executor, on the thread that runs
//! `app::run` (`main`), with async-io's own thread as the only one that
//! waits in epoll.
//!
//! smol's global executor runs its tasks on a thread of its own, and every
//! thread inside `smol::block_on` (`main`, that executor thread, the
//! journal writer) competes for the reactor. While any thread is in
//! `smol::block_on`, async-io's thread ("async-io") does not sleep in epoll
//! but polls with a back-off of 50 µs to 10 ms, and takes the reactor
//! whenever the others let go of it: measured in `benches/broadcast.rs`,
//! 6–9 wake-ups of that thread per upstream message, plus one of the
//! executor's and 2–3 of the journal's (docs/notes.md §1).
//!
//! So no thread of the daemon is in `smol::block_on`. [`run`] gives a
//! future an executor of its own, polled inside the caller's blocking
//! wait, which `main` does with [`block_on`]: it parks the thread and never
//! touches the reactor. async-io's thread then sleeps in epoll alone and is
//! woken only by I/O and timers; it wakes the task, and a task waking
//! another (a feed → the hub → a session) stays on the executor's thread
//! with no wake-up of any other. (Running the executor on the thread that
//! drives the reactor instead, `smol::block_on(run(..))`, was measured too:
//! async-io's thread still polls and steals the reactor after every quiet
//! gap, about 2.5 more switches per message.) [`spawn`] puts a task on the
//! executor of the thread it is called from, so sessions, feeds and the hub
//! land there without being handed one.
//!
//! The other threads (the journal writer, the fan-out threads) block with
//! [`block_on`] too, or on plain std primitives (the renderer).
//!
//! This module owns no task and knows nothing of what runs on it.

use std::cell::RefCell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use smol::{Executor, Task};

thread_local! {
    /// The executor [`run`] is polling on this thread, if any.
    static CURRENT: RefCell<Option<Arc<Executor<'static>>>> = const { RefCell::new(None) };
}

/// Spawns `future` on the executor the calling thread is running ([`run`]),
/// or on smol's global executor when there is none (a library function
/// called from a test's own `block_on`). Dropping the task cancels it.
pub fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> Task<T> {
    CURRENT.with(|current| match current.borrow().as_ref() {
        Some(executor) => executor.spawn(future),
        None => smol::spawn(future),
    })
}

/// Runs `future` and every task it [`spawn`]s on a new executor polled
/// here, on the caller's thread (see the module docs for which `block_on`
/// to call it in). The tasks still alive when `future` ends are dropped
/// (cancelled).
pub async fn run<T>(future: impl Future<Output = T>) -> T {
    let executor = Arc::new(Executor::new());
    let running = pin!(executor.run(future));
    Entered {
        executor: executor.clone(),
        running,
    }
    .await
}

/// Blocks the current thread on `future`, parked between wake-ups, without
/// ever driving the reactor (see the module docs).
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    smol::future::block_on(future)
}

/// Polls `running` with `executor` as the thread's current one, so that
/// what its tasks spawn goes to the same executor.
struct Entered<'a, F> {
    executor: Arc<Executor<'static>>,
    running: Pin<&'a mut F>,
}

impl<F: Future> Future for Entered<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let previous = CURRENT.with(|c| c.replace(Some(self.executor.clone())));
        // Restores the outer executor even if a task panics through here.
        struct Restore(Option<Arc<Executor<'static>>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = previous);
            }
        }
        let _restore = Restore(previous);
        self.running.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawned_tasks_run_on_the_thread_that_runs_the_executor() {
        let here = std::thread::current().id();
        let ran_on = smol::block_on(run(async {
            let task = spawn(async { std::thread::current().id() });
            // A task spawned from a task lands on the same executor.
            let nested = spawn(async { spawn(async { std::thread::current().id() }).await });
            (task.await, nested.await)
        }));
        assert_eq!(ran_on, (here, here));
    }

    #[test]
    fn without_run_spawn_falls_back_to_the_global_executor() {
        let here = std::thread::current().id();
        let ran_on = smol::block_on(spawn(async { std::thread::current().id() }));
        assert_ne!(ran_on, here);
    }
}
