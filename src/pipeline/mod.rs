//! The frame pipeline: conversion, analysis and composition, wired into threads that hand
//! buffers to each other through fixed pools.
//!
//! ```text
//!  source ──▶ [capture thread: convert] ──frames pool──▶ [inference thread: analyze] ──analyses pool──┐
//!                         │                                                                          │
//!                         └──────────────frames pool──▶ [compose thread: blend + overlay] ◀──────────┘──▶ sink
//! ```

pub mod analyze;
pub mod pool;
pub mod probe;
pub mod run;
pub mod smooth;

pub use analyze::{Analysis, AnalyzeError, Analyzer};
pub use probe::{NoProbe, Stage, StageProbe};
pub use smooth::ProbabilitySmoother;
