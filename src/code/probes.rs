//! Host functions that baseline code calls to record value profiles.

use std::sync::atomic::{AtomicU64, Ordering};

/// The most frequent values a site saw: `VALUE_SLOTS` (value, count) pairs
/// claimed first come first served, then a count of everything else.
pub const VALUE_SLOTS: usize = 4;
pub const VALUE_TABLE_WORDS: usize = 2 * VALUE_SLOTS + 1;

/// `void record_value(u64 *table, u64 value)`: counts `value` in a value
/// table of the counter table (`VALUE_SLOTS` pairs of value and count, then
/// a count of values that found no slot). A pair is claimed by the first
/// value to find its count at zero.
///
/// Job threads may race here. Every access is an atomic of its own, so
/// nothing is torn or undefined; a race may, while a slot is being claimed,
/// count a value against the slot's previous (zero) value. Counts are
/// read-modify-writes, so the profiler emptying a table (a guard's
/// missed-value tables, `Speculation::forget_missed_values`) is never
/// undone by a count written back from before it: at worst a slot being
/// counted while it is emptied is left claimed with one count for a value
/// of zero, until the next emptying.
/// The table is a hint for optimization: every speculation made from it is
/// checked at run time, so an imprecise count can cost speed, never
/// correctness.
extern "C" fn record_value(table: *const AtomicU64, value: u64) {
    // SAFETY: generated code passes the address of one CPU's copy of a
    // value table (`ir::edit::counter_pointer` of `CounterTable::address_of`
    // of a table's first word): the job's counter table (baseline probes,
    // promoted calls' recent targets), which lives until the job's module
    // is freed, or a version's missed-value table, which lives as long as
    // the version's code (the version manager keeps it). Either holds
    // VALUE_TABLE_WORDS AtomicU64s from there, within one copy.
    let words = unsafe { std::slice::from_raw_parts(table, VALUE_TABLE_WORDS) };
    // Relaxed throughout: these are statistics, read by the compiler thread
    // with Relaxed loads; no other memory is published through them.
    for slot in 0..VALUE_SLOTS {
        let (v, count) = (&words[2 * slot], &words[2 * slot + 1]);
        let c = count.load(Ordering::Relaxed);
        if c == 0 {
            if count
                .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                v.store(value, Ordering::Relaxed);
                return;
            }
            continue;
        }
        if v.load(Ordering::Relaxed) == value {
            count.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    let other = &words[2 * VALUE_SLOTS];
    other.fetch_add(1, Ordering::Relaxed);
}

/// Address baseline code calls, as `void (ptr table, i64 value)`.
pub fn record_value_address() -> usize {
    record_value as extern "C" fn(*const AtomicU64, u64) as usize
}
