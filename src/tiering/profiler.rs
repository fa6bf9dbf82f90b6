//! The profiler thread: every `profiler.interval_ms` it reads the counters
//! of functions still on baseline and queues compile requests for hot ones.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};

use super::CompileRequest;
use crate::runtime::Shared;
use crate::versions::TierUpState;

pub fn run(shared: Arc<Shared>, requests: Sender<CompileRequest>) {
    let interval = Duration::from_millis(shared.config.profiler.interval_ms);
    let layout = &shared.layout;
    // Functions that may still need a request; installed and given-up ones
    // drop out so a tick costs little once the job is warm.
    let mut watching: Vec<usize> = (0..layout.functions.len()).collect();
    // Acquire: pairs with the Release store of `stop` at shutdown.
    while !shared.stop.load(Ordering::Acquire) {
        std::thread::sleep(interval);
        let now = Instant::now();
        watching.retain(|&id| {
            let f = &layout.functions[id];
            let calls = shared.counters.read(f.entry_counter);
            let backedges: u64 = f
                .loops
                .iter()
                .map(|l| shared.counters.read(l.counter))
                .sum();
            if !shared.policy.is_hot(calls, backedges) {
                return true;
            }
            let previous = shared.versions.state(id);
            match previous {
                TierUpState::Installed | TierUpState::GaveUp { .. } => return false,
                TierUpState::Requested => return true,
                _ => {}
            }
            if !shared.versions.try_request(id, now) {
                return true;
            }
            let request = CompileRequest {
                function: id,
                calls,
                backedges,
                queued_at: now,
                done: None,
            };
            match requests.try_send(request) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    shared.versions.cancel_request(id, previous);
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        });
    }
}
