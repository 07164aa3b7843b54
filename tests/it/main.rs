//! Integration tests: the real `sweep` binary, real worker processes, real SQLite files.

mod api;
mod bad_input;
mod checkpoints;
mod cluster;
mod control;
mod disk;
mod durability;
mod failures;
mod objectives;
mod prune;
mod resume;
mod run;
mod support;
mod web;
mod workers;
