//! The analyses of a checked policy, all over the reference evaluator and the
//! exact sets of the IR: PCI checks (`pci`), rule hygiene (`hygiene`),
//! asserts and tests (`verify`), change sets between two policies (`diff`)
//! and the segmentation-test matrix (`probes`).

pub mod diff;
pub mod feeds;
pub mod hygiene;
pub mod pci;
pub mod probes;
pub mod verify;
