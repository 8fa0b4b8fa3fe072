//! What Signpost tells operators: metrics, the census of legacy clients, the straggler page.

pub mod census;
pub mod metrics;
pub mod page;
pub mod table;
