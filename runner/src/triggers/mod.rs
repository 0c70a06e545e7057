//! Triggers turn outside events into worker runs. Each one only decides
//! *when*; the worker host decides *how*.

pub mod cron;
pub mod taskhub;
mod taskhub_spec;
