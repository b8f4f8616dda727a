//! The command-line front end: argument definitions and their execution.

pub mod args;
pub mod run;
