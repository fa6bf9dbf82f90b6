//! Compile requests waiting for a compiler thread, served by expected
//! benefit rather than arrival.
//!
//! A request a job thread waits on (batch mode, forced OSR) goes first: a
//! thread is blocked on it. Among the profiler's requests the compiler
//! takes the one with the highest `benefit`: the rate of baseline work
//! (back-edges and calls per profiler tick) the new code would take over,
//! which the profiler refreshes every tick (`reassess`), withdrawing the
//! requests of loops that stopped iterating.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::CompileRequest;

/// Why a request was not queued.
#[derive(Debug)]
pub enum PushError {
    /// The queue holds `compiler.queue_size` background requests.
    Full(CompileRequest),
    /// The job is ending; no compiler takes requests any more.
    Closed(CompileRequest),
}

struct Queued {
    request: CompileRequest,
    benefit: f64,
}

#[derive(Default)]
struct State {
    queued: Vec<Queued>,
    closed: bool,
    /// Open `Batch`es: while any is, only requests a thread waits on are
    /// served.
    filling: usize,
}

/// While alive, the queue serves nothing (see `RequestQueue::batch`).
pub struct Batch<'a> {
    queue: &'a RequestQueue,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.filling -= 1;
        if state.filling == 0 {
            self.queue.arrived.notify_all();
            self.queue.ring();
        }
    }
}

/// Rung whenever a request becomes servable in any queue it is attached
/// to: what the threads of an engine's compiler pool wait on, since they
/// serve several modules' queues.
#[derive(Default)]
pub struct Doorbell {
    rings: Mutex<u64>,
    rung: Condvar,
}

impl Doorbell {
    fn lock(&self) -> MutexGuard<'_, u64> {
        self.rings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes one waiting thread: one request needs one thread, and the
    /// one woken serves every request of the queue it picks.
    pub fn ring(&self) {
        *self.lock() += 1;
        self.rung.notify_one();
    }

    /// Wakes every waiting thread (the pool is stopping).
    pub fn ring_all(&self) {
        *self.lock() += 1;
        self.rung.notify_all();
    }

    /// How often it has rung so far (for `wait`).
    pub fn rings(&self) -> u64 {
        *self.lock()
    }

    /// Waits until it rings again after `seen` rings, or `timeout`.
    pub fn wait(&self, seen: u64, timeout: Duration) {
        let rings = self.lock();
        if *rings == seen {
            let _ = self.rung.wait_timeout_while(rings, timeout, |r| *r == seen);
        }
    }
}

/// What `next` chose, and over which older request.
pub struct Taken {
    pub request: CompileRequest,
    /// The oldest background request left waiting, when the chosen one
    /// was queued after it (shown by `--events`), with both benefits.
    pub ahead_of: Option<(CompileRequest, f64, f64)>,
}

pub struct RequestQueue {
    state: Mutex<State>,
    arrived: Condvar,
    capacity: usize,
    /// An engine's compiler pool, if it serves this queue.
    doorbell: OnceLock<Arc<Doorbell>>,
}

impl RequestQueue {
    /// A queue holding up to `capacity` background requests (waited-on
    /// requests are not counted: each blocked thread has at most one).
    pub fn new(capacity: usize) -> RequestQueue {
        RequestQueue {
            state: Mutex::new(State::default()),
            arrived: Condvar::new(),
            capacity,
            doorbell: OnceLock::new(),
        }
    }

    /// From now on, rings `bell` whenever a request becomes servable (a
    /// queue belongs to one pool).
    pub fn attach(&self, bell: Arc<Doorbell>) {
        let attached = self.doorbell.set(bell).is_ok();
        debug_assert!(attached, "a queue is attached to one pool");
        self.ring();
    }

    fn ring(&self) {
        if let Some(bell) = self.doorbell.get() {
            bell.ring();
        }
    }

    /// Whether `next` would return a request now.
    pub fn has_servable(&self) -> bool {
        let state = self.lock();
        let waited_only = state.filling > 0;
        state.queued.iter().any(|q| servable(q, waited_only))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent Vec.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `request` with an initial `benefit`.
    pub fn push(&self, request: CompileRequest, benefit: f64) -> Result<(), PushError> {
        let mut state = self.lock();
        if state.closed {
            return Err(PushError::Closed(request));
        }
        let waited = request.done.is_some();
        let background = state
            .queued
            .iter()
            .filter(|q| q.request.done.is_none())
            .count();
        if !waited && background >= self.capacity {
            return Err(PushError::Full(request));
        }
        state.queued.push(Queued { request, benefit });
        if state.filling == 0 || waited {
            self.arrived.notify_one();
            self.ring();
        }
        Ok(())
    }

    /// Whether no request waits.
    pub fn is_empty(&self) -> bool {
        self.lock().queued.is_empty()
    }

    /// Holds back the profiler's requests until the returned guard is
    /// dropped (a thread waiting on its request is still served),
    /// so that the requests of one profiler tick are served together: a
    /// compiler taking one of them then sees the others, and can build a
    /// function's two versions in one compile (`take_companion`) or take
    /// the most beneficial first.
    pub fn batch(&self) -> Batch<'_> {
        self.lock().filling += 1;
        Batch { queue: self }
    }

    /// The next request: a waited-on one if any, else the background one
    /// with the highest benefit (the oldest among equals). Waits up to
    /// `timeout` for one to arrive.
    pub fn next(&self, timeout: Duration) -> Result<Taken, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            let waited_only = state.filling > 0;
            if let Some(taken) = take_best(&mut state.queued, waited_only) {
                return Ok(taken);
            }
            if state.closed {
                return Err(RecvTimeoutError::Disconnected);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvTimeoutError::Timeout);
            }
            state = self
                .arrived
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The newest request a thread waits on for a cached object, if one is
    /// queued; never waits (for the thread waiting, which loads them
    /// alongside the compiler threads, which take the oldest first: see
    /// `compiler::help_with_waited`).
    pub fn next_cached_waited(&self) -> Option<Taken> {
        let mut state = self.lock();
        let i = state
            .queued
            .iter()
            .rposition(|q| q.request.done.is_some() && q.request.cached_object)?;
        Some(Taken {
            request: state.queued.remove(i).request,
            ahead_of: None,
        })
    }

    /// Sets the benefit of each background request to `benefit(request)`,
    /// or removes it (returning it) where that is `None`. A request queued
    /// again to be compiled `alone` keeps its place: it was chosen already.
    pub fn reassess(
        &self,
        mut benefit: impl FnMut(&CompileRequest) -> Option<f64>,
    ) -> Vec<CompileRequest> {
        let mut state = self.lock();
        let mut withdrawn = Vec::new();
        let mut kept = Vec::with_capacity(state.queued.len());
        for mut queued in std::mem::take(&mut state.queued) {
            if queued.request.done.is_some() || queued.request.alone {
                kept.push(queued);
                continue;
            }
            match benefit(&queued.request) {
                Some(b) => {
                    queued.benefit = b;
                    kept.push(queued);
                }
                None => withdrawn.push(queued.request),
            }
        }
        state.queued = kept;
        withdrawn
    }

    /// Removes and returns the background request that would share a
    /// compile with `taken`: for a whole-function request, the function's
    /// queued continuation with the highest benefit; for a continuation,
    /// the function's queued whole-function request; either only if
    /// `worth_it`. Both bodies then come from one prepared module (see
    /// `tiering::compiler`).
    pub fn take_companion(
        &self,
        taken: &CompileRequest,
        worth_it: impl Fn(&CompileRequest) -> bool,
    ) -> Option<CompileRequest> {
        if taken.alone {
            return None;
        }
        let mut state = self.lock();
        let wants_loop = taken.loop_index.is_none();
        let best = state
            .queued
            .iter()
            .enumerate()
            .filter(|(_, q)| {
                q.request.done.is_none()
                    && !q.request.alone
                    && q.request.function == taken.function
                    && q.request.loop_index.is_some() == wants_loop
                    && worth_it(&q.request)
            })
            .reduce(|best, next| {
                if next.1.benefit > best.1.benefit {
                    next
                } else {
                    best
                }
            })
            .map(|(i, _)| i)?;
        Some(state.queued.remove(best).request)
    }

    /// Stops the queue (the job is ending): `next` reports `Disconnected`,
    /// and requests still queued are dropped, which releases the threads
    /// waiting on them; their units stay `Requested` (see `request_now`).
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.queued.clear();
        self.arrived.notify_all();
    }
}

/// The request to serve next; with `waited_only`, only one a thread waits
/// on.
/// Whether `take_best` may take `q`: a request a thread waits on always,
/// another unless a batch is filling (`waited_only`).
fn servable(q: &Queued, waited_only: bool) -> bool {
    q.request.done.is_some() || !waited_only
}

fn take_best(queued: &mut Vec<Queued>, waited_only: bool) -> Option<Taken> {
    if let Some(i) = queued.iter().position(|q| q.request.done.is_some()) {
        return Some(Taken {
            request: queued.remove(i).request,
            ahead_of: None,
        });
    }
    if !queued.iter().any(|q| servable(q, waited_only)) {
        return None;
    }
    // `queued` is in arrival order: the first of the highest wins.
    let best = (0..queued.len()).reduce(|best, i| {
        if queued[i].benefit > queued[best].benefit {
            i
        } else {
            best
        }
    })?;
    let ahead_of = (best > 0).then(|| {
        (
            queued[0].request.clone(),
            queued[best].benefit,
            queued[0].benefit,
        )
    });
    Some(Taken {
        request: queued.remove(best).request,
        ahead_of,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::FunctionId;

    fn request(function: usize) -> CompileRequest {
        CompileRequest::new(FunctionId(function), None, 0, 0, Instant::now())
    }

    fn order(queue: &RequestQueue, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| queue.next(Duration::ZERO).unwrap().request.function.index())
            .collect()
    }

    #[test]
    fn highest_benefit_first_then_arrival_order() {
        let queue = RequestQueue::new(8);
        queue.push(request(1), 1.0).unwrap();
        queue.push(request(2), 5.0).unwrap();
        queue.push(request(3), 1.0).unwrap();
        let first = queue.next(Duration::ZERO).unwrap();
        assert_eq!(first.request.function.index(), 2);
        let (older, chosen, passed) = first.ahead_of.expect("it overtook request 1");
        assert_eq!((older.function.index(), chosen, passed), (1, 5.0, 1.0));
        assert_eq!(order(&queue, 2), [1, 3]);
        assert!(matches!(
            queue.next(Duration::from_millis(1)),
            Err(RecvTimeoutError::Timeout)
        ));
    }

    #[test]
    fn waited_on_requests_go_first_and_do_not_count_against_capacity() {
        let queue = RequestQueue::new(1);
        queue.push(request(1), 100.0).unwrap();
        assert!(matches!(
            queue.push(request(2), 1.0),
            Err(PushError::Full(_))
        ));
        let (done, _finished) = crossbeam_channel::bounded(0);
        let waited = CompileRequest {
            done: Some(done),
            ..request(3)
        };
        queue.push(waited, 0.0).unwrap();
        assert_eq!(order(&queue, 2), [3, 1]);
    }

    #[test]
    fn the_waiting_thread_takes_only_waited_on_loads_of_cached_objects() {
        let queue = RequestQueue::new(8);
        queue.push(request(1), 100.0).unwrap();
        let (done, _finished) = crossbeam_channel::bounded(0);
        for (f, cached_object) in [(2, true), (3, false), (4, true)] {
            let waited = CompileRequest {
                done: Some(done.clone()),
                cached_object,
                ..request(f)
            };
            queue.push(waited, 1.0).unwrap();
        }
        let taken = |q: &RequestQueue| q.next_cached_waited().map(|t| t.request.function.index());
        assert_eq!(taken(&queue), Some(4), "the newest first");
        assert_eq!(taken(&queue), Some(2));
        assert_eq!(taken(&queue), None, "a compile, and a background request");
        assert_eq!(order(&queue, 2), [3, 1]);
    }

    #[test]
    fn reassessment_reorders_and_withdraws() {
        let queue = RequestQueue::new(8);
        for f in 1..=3 {
            queue.push(request(f), 1.0).unwrap();
        }
        let withdrawn = queue.reassess(|r| match r.function.index() {
            1 => None,
            2 => Some(0.5),
            _ => Some(2.0),
        });
        assert_eq!(withdrawn.len(), 1);
        assert_eq!(withdrawn[0].function.index(), 1);
        assert_eq!(order(&queue, 2), [3, 2]);
    }

    #[test]
    fn a_request_queued_again_alone_keeps_its_place() {
        let queue = RequestQueue::new(8);
        let alone = CompileRequest {
            alone: true,
            ..request(1)
        };
        queue.push(alone, f64::MAX).unwrap();
        queue.push(request(2), 1.0).unwrap();
        let withdrawn = queue.reassess(|r| (r.function.index() == 2).then_some(1e9));
        assert!(withdrawn.is_empty());
        assert_eq!(order(&queue, 2), [1, 2]);
    }

    #[test]
    fn a_companion_is_the_same_functions_other_kind_of_request() {
        let queue = RequestQueue::new(8);
        let continuation = |k, benefit| {
            (
                CompileRequest::new(FunctionId(1), Some(k), 0, 0, Instant::now()),
                benefit,
            )
        };
        for (request, benefit) in [
            continuation(0, 1.0),
            (request(2), 9.0),
            continuation(1, 3.0),
        ] {
            queue.push(request, benefit).unwrap();
        }
        let whole = request(1);
        let companion = queue
            .take_companion(&whole, |_| true)
            .expect("function 1 has continuations queued");
        assert_eq!(
            (companion.function.index(), companion.loop_index),
            (1, Some(1))
        );
        // A continuation's companion is a whole-function request, and there is none for 1.
        assert!(queue.take_companion(&companion, |_| true).is_none());
        queue.push(whole, 1.0).unwrap();
        assert!(queue.take_companion(&companion, |_| false).is_none());
        let of_loop = queue
            .take_companion(&companion, |_| true)
            .expect("now there is");
        assert_eq!((of_loop.function.index(), of_loop.loop_index), (1, None));
        // A request a thread waits on is never taken as a companion.
        let (done, _finished) = crossbeam_channel::bounded(0);
        queue
            .push(
                CompileRequest {
                    done: Some(done),
                    ..request(1)
                },
                1.0,
            )
            .unwrap();
        assert!(queue.take_companion(&companion, |_| true).is_none());
        assert_eq!(order(&queue, 3), [1, 2, 1]);
    }

    #[test]
    fn a_batch_is_served_once_it_is_complete() {
        let queue = RequestQueue::new(8);
        let batch = queue.batch();
        queue.push(request(1), 1.0).unwrap();
        assert!(matches!(
            queue.next(Duration::from_millis(1)),
            Err(RecvTimeoutError::Timeout)
        ));
        // A thread waiting on its request is not held up by a batch.
        let (done, _finished) = crossbeam_channel::bounded(0);
        queue
            .push(
                CompileRequest {
                    done: Some(done),
                    ..request(3)
                },
                0.0,
            )
            .unwrap();
        assert_eq!(order(&queue, 1), [3]);
        queue.push(request(2), 2.0).unwrap();
        drop(batch);
        assert_eq!(order(&queue, 2), [2, 1]);
    }

    #[test]
    fn closing_wakes_a_waiting_compiler_and_refuses_requests() {
        let queue = std::sync::Arc::new(RequestQueue::new(8));
        let waiter = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.next(Duration::from_secs(30)).err())
        };
        std::thread::sleep(Duration::from_millis(20));
        queue.close();
        assert_eq!(waiter.join().unwrap(), Some(RecvTimeoutError::Disconnected));
        assert!(matches!(
            queue.push(request(1), 1.0),
            Err(PushError::Closed(_))
        ));
    }
}
