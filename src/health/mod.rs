//! Active health checking and leader detection.

pub mod counter;
pub mod monitor;
pub mod probe;
