//! Where the daemon's tasks run: on one executor, ticked by the thread that
//! drives async-io's reactor.
//!
//! smol's global executor runs its tasks on a thread of its own, while the
//! reactor (epoll and the timers) is driven by whichever thread sits in
//! `block_on`, or else by async-io's own thread. Every socket event then
//! cost a cross-thread wake-up: reactor thread → executor thread. [`run`]
//! instead gives a future an executor of its own, polled inside the
//! caller's `block_on`: the thread that takes a socket event from epoll is
//! the one that runs the task it wakes, with no notification between
//! threads (`main` runs `app::run` this way). [`spawn`] puts a task on the
//! executor of the thread it is called from, so sessions, feeds and the hub
//! land there without being handed one.
//!
//! Threads that must not drive the reactor (the journal writer, the
//! renderer, the fan-out threads) block with [`block_on`]: it parks the
//! thread and never takes the reactor from the thread that runs the tasks.
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
/// here, on the caller's thread. In `smol::block_on` that thread also drives
/// the reactor, so an I/O event wakes its task on the same thread. The
/// tasks still alive when `future` ends are dropped (cancelled).
pub async fn run<T>(future: impl Future<Output = T>) -> T {
    let executor = Arc::new(Executor::new());
    let running = pin!(executor.run(future));
    Entered {
        executor: executor.clone(),
        running,
    }
    .await
}

/// Blocks the current thread on `future` without driving the reactor (see
/// the module docs): for the threads that are not the executor's.
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
