//! Results derived from a finished model that several targets need, computed
//! once on first use and shared by the targets lowering it in parallel.
//!
//! Only a finished model may be asked (the analyses after `build_model` and
//! the targets do; `build_model` itself, which makes the model step by step,
//! never does). A clone starts empty, so a changed copy never answers from
//! its original's results.

use std::sync::OnceLock;

use crate::ir::eval::{Evaluator, Index};
use crate::ir::{Model, ServiceSet, ZoneId};
use crate::lower::atoms::{atoms, Atom};

#[derive(Default)]
pub struct Derived {
    allowed: OnceLock<Vec<(ZoneId, ZoneId, ServiceSet)>>,
    atoms: OnceLock<Vec<Atom>>,
    index: OnceLock<Index>,
}

impl Clone for Derived {
    fn clone(&self) -> Self {
        Derived::default()
    }
}

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Derived")
    }
}

impl Model {
    /// Every ordered pair of zones some traffic may go between (flows less
    /// denies), with what may, sorted by pair.
    pub fn allowed_pairs(&self) -> &[(ZoneId, ZoneId, ServiceSet)] {
        self.derived.allowed.get_or_init(|| {
            let ev = Evaluator::new(self);
            ev.pairs()
                .into_iter()
                .filter_map(|(from, to)| {
                    let set = ev.allowed(from, to);
                    (!set.is_empty()).then_some((from, to, set))
                })
                .collect()
        })
    }

    /// What evaluators of this model look up.
    pub(crate) fn index(&self) -> &Index {
        self.derived.index.get_or_init(|| Index::build(self))
    }

    /// The model's atoms (see [`crate::lower::atoms`]), v4 then v6, by address.
    pub fn atoms(&self) -> &[Atom] {
        self.derived.atoms.get_or_init(|| atoms(&Evaluator::new(self)))
    }
}
