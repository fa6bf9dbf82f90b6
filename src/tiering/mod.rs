//! Tier-up: deciding when (policy), watching counters (profiler thread),
//! and building optimized versions (compiler threads).

pub mod build;
pub mod compiler;
pub mod faults;
pub mod policy;
pub mod profiler;

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Select};

use crate::ir::layout::JobLayout;
use crate::versions::Unit;

/// Where compiler threads take requests from. A job thread blocked until
/// its unit is compiled (batch mode, forced OSR) must not wait behind the
/// profiler's requests, which can take seconds each under emulation; the
/// profiler's are served first come, first served.
#[derive(Clone)]
pub struct RequestQueues {
    /// Requests a job thread is waiting on (`crossbeam_channel::never()`
    /// when no thread ever waits).
    pub waited_on: Receiver<CompileRequest>,
    /// The profiler's requests.
    pub background: Receiver<CompileRequest>,
}

impl RequestQueues {
    /// The next request, a waited-on one if any is queued.
    pub fn next(&self, timeout: Duration) -> Result<CompileRequest, RecvTimeoutError> {
        let mut select = Select::new_biased();
        let waited_on = select.recv(&self.waited_on);
        select.recv(&self.background);
        let ready = select
            .select_timeout(timeout)
            .map_err(|_| RecvTimeoutError::Timeout)?;
        let queue = if ready.index() == waited_on {
            &self.waited_on
        } else {
            &self.background
        };
        ready
            .recv(queue)
            .map_err(|_| RecvTimeoutError::Disconnected)
    }
}

/// A request for an optimized version of one function, or for the OSR
/// continuation of one of its loops.
#[derive(Clone, Debug)]
pub struct CompileRequest {
    pub function: usize,
    /// Index in the function's `loops` for an OSR continuation.
    pub loop_index: Option<usize>,
    pub calls: u64,
    pub backedges: u64,
    pub queued_at: Instant,
    /// Replaces an optimized version whose speculation failed: a value
    /// guard that failed too often (the new version does not specialize),
    /// or promoted calls that keep taking the fallback (the new version is
    /// planned from the targets seen since).
    pub replaces_speculation: bool,
    /// Batch mode: told (by being dropped) when the request is finished.
    pub done: Option<crossbeam_channel::Sender<()>>,
}

impl CompileRequest {
    /// A request made at `queued_at` because of the given counts.
    pub fn new(
        function: usize,
        loop_index: Option<usize>,
        calls: u64,
        backedges: u64,
        queued_at: Instant,
    ) -> CompileRequest {
        CompileRequest {
            function,
            loop_index,
            calls,
            backedges,
            queued_at,
            replaces_speculation: false,
            done: None,
        }
    }

    pub fn unit(&self, layout: &JobLayout) -> Unit {
        match self.loop_index {
            None => Unit::Function(self.function),
            Some(k) => Unit::Loop(layout.functions[self.function].loops[k].global_id),
        }
    }

    /// How reports name it: `f`, or `f@loopK` for a continuation.
    pub fn label(&self, layout: &JobLayout) -> String {
        let name = layout.functions[self.function].display_name();
        match self.loop_index {
            None => name.to_string(),
            Some(k) => format!("{name}@loop{k}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(function: usize) -> CompileRequest {
        CompileRequest::new(function, None, 0, 0, Instant::now())
    }

    #[test]
    fn waited_on_requests_go_first_and_background_ones_keep_their_order() {
        let (waited_tx, waited_rx) = crossbeam_channel::unbounded();
        let (background_tx, background_rx) = crossbeam_channel::unbounded();
        let queues = RequestQueues {
            waited_on: waited_rx,
            background: background_rx,
        };
        background_tx.send(request(1)).unwrap();
        background_tx.send(request(2)).unwrap();
        waited_tx.send(request(3)).unwrap();
        let order: Vec<usize> = (0..3)
            .map(|_| queues.next(Duration::ZERO).unwrap().function)
            .collect();
        assert_eq!(order, [3, 1, 2]);
        assert!(matches!(
            queues.next(Duration::from_millis(1)),
            Err(RecvTimeoutError::Timeout)
        ));
        drop(background_tx);
        assert!(matches!(
            queues.next(Duration::from_millis(1)),
            Err(RecvTimeoutError::Disconnected)
        ));
    }

    #[test]
    fn no_waiting_thread_means_background_only() {
        let (background_tx, background_rx) = crossbeam_channel::unbounded();
        let queues = RequestQueues {
            waited_on: crossbeam_channel::never(),
            background: background_rx,
        };
        background_tx.send(request(7)).unwrap();
        assert_eq!(queues.next(Duration::ZERO).unwrap().function, 7);
    }
}
