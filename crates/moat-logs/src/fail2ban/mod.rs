//! fail2ban compatibility: its configuration files ([`ini`]), filters ([`filter`] reads one,
//! [`matcher`] runs it), the `<tag>`s ([`tags`]) and dates ([`date`]).

mod compiled;
pub mod date;
pub mod filter;
pub mod ini;
pub mod jails;
pub mod matcher;
mod mlfid;
mod multiline;
pub mod tags;

pub use filter::{load, FilterDef, FilterError, FilterSpec};
pub use matcher::{Failure, Filter, Outcome};
