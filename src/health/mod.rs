//! Active health checking and leader detection: `probe` (one probe, typed
//! failures), `counter` (rise/fall), `leader` (who may lead), `monitor` (the
//! probe loops and the aggregator that publishes routing tables).

pub mod counter;
pub mod leader;
pub mod monitor;
pub mod probe;
