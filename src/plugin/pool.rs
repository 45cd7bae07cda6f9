//! The threads a plugin runs on: its own, so that a plugin that hangs holds nothing but them,
//! not the async workers and not tokio's blocking pool (which DNS lookups, `--web` files and
//! `--record` share). Calls are bounded in number ([`Pool::try_run`]: over the bound the
//! request is refused at once, 503), lifecycle work (creating an instance again on SIGHUP,
//! destroying the old one) queues behind them ([`Pool::run`]). Calls beyond the threads wait
//! for one in order, and one whose request stopped waiting is skipped by its caller's check.
//! The threads are detached: a call that never returns does not keep the process from
//! exiting.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};

type Job = Box<dyn FnOnce() + Send>;

/// One plugin's threads.
#[derive(Debug)]
pub struct Pool {
    jobs: Mutex<Sender<Job>>,
    /// Calls given to the threads and not finished (running or waiting for a thread).
    busy: Arc<AtomicUsize>,
    /// The bound on `busy` (`--max-plugin-calls`).
    max: usize,
}

/// The pool has `max` calls in flight already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    pub max: usize,
}

impl Pool {
    /// `threads` threads named after `name`, for at most `max` calls in flight.
    pub fn new(name: &str, threads: usize, max: usize) -> std::io::Result<Pool> {
        let threads = threads.max(1);
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("plugin-{name}-{i}"))
                .spawn(move || work(&rx))?;
        }
        Ok(Pool {
            jobs: Mutex::new(tx),
            busy: Arc::default(),
            max: max.max(1),
        })
    }

    /// Runs the call `job` on a thread of the pool, unless `max` calls are in flight.
    pub fn try_run(&self, job: impl FnOnce() + Send + 'static) -> Result<(), Busy> {
        let busy = self.busy.clone();
        let taken = busy.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < self.max).then_some(n + 1)
        });
        if taken.is_err() {
            return Err(Busy { max: self.max });
        }
        // Counted until the job ends, however it ends.
        let counted = Counted(busy);
        self.send(Box::new(move || {
            let _counted = counted;
            job()
        }));
        Ok(())
    }

    /// Runs `job` on a thread of the pool once one is free, whatever is in flight (lifecycle
    /// work: an instance created again, or destroyed).
    pub fn run(&self, job: impl FnOnce() + Send + 'static) {
        self.send(Box::new(job));
    }

    fn send(&self, job: Job) {
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job);
        // Only if every thread is gone, which a panic cannot do (each job is caught): run it
        // here rather than lose it.
        if let Err(std::sync::mpsc::SendError(job)) = sent {
            job();
        }
    }

    /// Calls in flight now.
    #[cfg(test)]
    fn busy(&self) -> usize {
        self.busy.load(Ordering::Acquire)
    }
}

/// A thread of the pool: jobs until the pool is gone. A panic ends the job, not the thread.
fn work(jobs: &Mutex<Receiver<Job>>) {
    loop {
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            Ok(job) => {
                let _ = catch_unwind(AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

/// One call in flight, until dropped.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::sync_channel;
    use std::time::Duration;

    use super::*;

    #[test]
    fn calls_over_the_bound_are_refused_and_lifecycle_work_queues() {
        let pool = Pool::new("test", 2, 2).unwrap();
        let (release, hold) = sync_channel::<()>(0);
        let hold = Arc::new(Mutex::new(hold));
        let (done, finished) = channel();
        for _ in 0..2 {
            let (hold, done) = (hold.clone(), done.clone());
            pool.try_run(move || {
                let _ = hold.lock().unwrap().recv();
                done.send(()).unwrap();
            })
            .unwrap();
        }
        assert_eq!(pool.try_run(|| {}), Err(Busy { max: 2 }));
        // Queued behind the calls, and run once a thread frees up.
        let (ran, lifecycle) = channel();
        pool.run(move || ran.send(()).unwrap());
        release.send(()).unwrap();
        finished.recv_timeout(Duration::from_secs(5)).unwrap();
        lifecycle.recv_timeout(Duration::from_secs(5)).unwrap();
        release.send(()).unwrap();
        finished.recv_timeout(Duration::from_secs(5)).unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while pool.busy() > 0 {
            assert!(std::time::Instant::now() < end, "calls still counted");
            std::thread::yield_now();
        }
        // A panicking job is counted out and leaves the thread working.
        pool.try_run(|| panic!("a plugin bug")).unwrap();
        let (ok, after) = channel();
        pool.try_run(move || ok.send(()).unwrap()).unwrap();
        after.recv_timeout(Duration::from_secs(5)).unwrap();
    }
}
