//! The job as LLVM IR: loading it, normalising it, and analysing its
//! control flow (dominators, natural loops) to give functions, loops and
//! counters stable ids.

pub mod cfg;
pub mod demote;
pub mod edit;
pub mod flow;
pub mod frontend_cache;
pub mod func;
pub mod layout;
pub mod link;
pub mod live;
pub mod load;
pub mod normalize;
pub mod prepared_cache;
pub mod sites;
pub mod structors;
pub mod threads;
