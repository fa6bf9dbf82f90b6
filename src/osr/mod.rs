//! On-stack replacement: moving a baseline frame that is running a loop
//! onto optimized code at its next back-edge.
//!
//! A *continuation* for loop L of function f is f's code entered at L's
//! header, taking the state live there as parameters (see `ir::live`). Baseline
//! code checks L's OSR entry slot on every back-edge; once the continuation
//! is published there, the frame calls it with its live state and returns
//! whatever it returns. The baseline frame stays on the stack underneath,
//! so stack slots whose address escaped keep being used in place.

pub mod captures;
pub mod continuation;
pub mod peel;
