//! Raw V4L2 bindings (vendored v4l2-sys-mit 0.3.0), generated once from
//! `<linux/videodev2.h>` by `scripts/gen-v4l2-bindings.sh` instead of at build time.
#![allow(clippy::all)]
#![allow(deref_nullptr)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(non_upper_case_globals)]
#![allow(dead_code)]
#![allow(rustdoc::all)]

include!("v4l2_bindings.rs");
