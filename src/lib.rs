//! dermcam: an edge daemon for handheld dermatoscopes.
//!
//! The modules follow the data flow of a frame:
//!
//! ```text
//! capture ─▶ convert ─▶ (frame pool) ─▶ preprocess ─▶ model ─▶ gradcam ─▶ heatmap ─▶ compose ─▶ display
//! ```
//!
//! `pipeline` wires them into threads with a fixed pool of buffers; `app` holds the
//! subcommands of the `dermcam` binary. dermcam is a screening aid, not a diagnosis.

pub mod alloc_count;
pub mod app;
pub mod capture;
pub mod compose;
pub mod config;
pub mod controls;
pub mod convert;
pub mod display;
pub mod frame;
pub mod gradcam;
pub mod heatmap;
pub mod model;
pub mod pipeline;
pub mod preprocess;
pub mod record;
pub mod service;
