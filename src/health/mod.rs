//! Active health checking and leader detection: `probe` (one probe, typed
//! failures), `counter` (rise/fall), `leader` (who may lead), `membership`
//! (which backends: discovery sets, reload decisions), `monitor` (the
//! probe loops and the aggregator that publishes routing tables).

pub mod counter;
pub mod leader;
pub mod membership;
pub mod monitor;
pub mod probe;
