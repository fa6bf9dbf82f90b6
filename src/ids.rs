//! Typed ids for a job's functions, loops and counters, so that a loop id
//! cannot index the function table (or a function-local loop index the
//! job-wide one, or a version's guard slot the job's counters), and
//! `Unit`, what a version is for. A leaf module: every
//! layer names these, so they depend on nothing. Each is an index into the table it names; tables are
//! plain `Vec`s and slices indexed by the id.

use std::ops::{Index, IndexMut};

macro_rules! id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub usize);

        impl $name {
            pub fn index(self) -> usize {
                self.0
            }
        }

        impl From<$name> for usize {
            fn from(id: $name) -> usize {
                id.0
            }
        }

        impl<T> Index<$name> for [T] {
            type Output = T;
            fn index(&self, id: $name) -> &T {
                &self[id.0]
            }
        }

        impl<T> IndexMut<$name> for [T] {
            fn index_mut(&mut self, id: $name) -> &mut T {
                &mut self[id.0]
            }
        }

        impl<T> Index<$name> for Vec<T> {
            type Output = T;
            fn index(&self, id: $name) -> &T {
                &self[id.0]
            }
        }

        impl<T> IndexMut<$name> for Vec<T> {
            fn index_mut(&mut self, id: $name) -> &mut T {
                &mut self[id.0]
            }
        }
    };
}

id!(
    /// A function of the job: its place in `JobLayout::functions` and in
    /// the slot table.
    FunctionId
);
id!(
    /// A loop of the whole job: its place in `JobLayout::loops` and in the
    /// OSR entry slot table. (Within a function, `FunctionLayout::loops`
    /// is indexed by plain position.)
    LoopId
);
id!(
    /// A counter of the job's counter table (`code::CounterTable`): a
    /// function's entries, a loop's back-edges, a branch edge, a loop's OSR
    /// transitions, or a word of a value table (see `ir::sites`).
    CounterId
);
id!(
    /// A counter of one optimized version's guard table (see
    /// `profile::GuardSlots`).
    GuardSlot
);

impl CounterId {
    /// The counter `words` after this one (a word of a value table that
    /// starts here).
    pub fn plus(self, words: usize) -> CounterId {
        CounterId(self.0 + words)
    }
}

/// What a version is for: a whole function (entered through its slot) or
/// a loop (an OSR continuation, entered through the loop's entry slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Function(FunctionId),
    /// By job-wide loop id (`JobLayout::loops`).
    Loop(LoopId),
}
