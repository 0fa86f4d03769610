//! The built-in scheduler: runs the jobs of `[maintenance]` exactly once per
//! occurrence across any number of strata processes on one database.

pub mod cron;
