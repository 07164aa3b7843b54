//! sweep: hyperparameter optimization for people who pretrain and fine-tune language models.
//!
//! A study file (`study`) describes a search `space`; the `coordinator` asks a `sampler` for
//! configurations, runs each as a worker process through an `executor`, stores everything in
//! SQLite through the `store`, and stops hopeless trials through a `pruner`.

pub mod compare;
pub mod coordinator;
pub mod curve;
pub mod durable;
pub mod executor;
pub mod export;
pub mod front;
pub mod gp;
pub mod layout;
pub mod lock;
pub mod mofns;
pub mod objective;
pub mod pareto;
pub mod protocol;
pub mod pruner;
pub mod sampler;
pub mod server;
pub mod space;
pub mod store;
pub mod study;
pub mod testfns;
pub mod trial;
pub mod worker;
