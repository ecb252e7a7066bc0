//! Running as a service: systemd's notify protocol, the watchdog rule, and stop signals.
//!
//! - [`Notifier`] speaks `sd_notify(3)` over the datagram socket in `$NOTIFY_SOCKET` (a path,
//!   or an abstract name when it starts with `@`): `READY=1`, `STATUS=...`, `WATCHDOG=1`,
//!   `STOPPING=1`. Without the variable it does nothing.
//! - [`Watchdog`] decides whether the pipeline made progress since the last ping: every
//!   pipeline thread went round its loop, and frames were composed or the source is
//!   legitimately waiting for its camera. A thread stuck in a call stops the pings, so
//!   systemd restarts dermcam after `WatchdogSec`.
//!
//! SIGTERM and SIGINT are turned into a clean stop by
//! [`crate::display::console::install_stop_signals`] (one handler for the whole process).

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Errors of the service integration.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// `$NOTIFY_SOCKET` is not a usable address.
    #[error("NOTIFY_SOCKET={value:?} is not a usable socket address: {source}")]
    Address {
        /// The variable's value.
        value: String,
        /// Cause.
        source: io::Error,
    },
    /// Sending a notification failed.
    #[error("cannot notify systemd at {address:?}: {source}")]
    Send {
        /// The variable's value.
        address: String,
        /// Cause.
        source: io::Error,
    },
}

/// Sends systemd notifications (or nothing, outside systemd).
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr, String)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Notifier {
            target: None,
            watchdog: None,
        }
    }

    /// From `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` (honouring `$WATCHDOG_PID` when set).
    pub fn from_env() -> Result<Self, ServiceError> {
        let socket = std::env::var("NOTIFY_SOCKET").ok();
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        Self::from_values(socket.as_deref(), usec.as_deref(), pid.as_deref())
    }

    /// From the variables' values (for tests).
    pub fn from_values(
        notify_socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
    ) -> Result<Self, ServiceError> {
        let Some(value) = notify_socket.filter(|v| !v.is_empty()) else {
            return Ok(Self::disabled());
        };
        let bad = |source| ServiceError::Address {
            value: value.to_string(),
            source,
        };
        let addr = if let Some(name) = value.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes()).map_err(bad)?
        } else {
            SocketAddr::from_pathname(value).map_err(bad)?
        };
        let socket = UnixDatagram::unbound().map_err(bad)?;
        let for_us = watchdog_pid
            .and_then(|p| p.trim().parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us)
            .map(|u| Duration::from_micros(u / 2).max(Duration::from_millis(1)));
        Ok(Notifier {
            target: Some((socket, addr, value.to_string())),
            watchdog,
        })
    }

    /// Whether notifications go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// How often to ping the watchdog (half of `WATCHDOG_USEC`), if it is on.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one notification (newline-separated `KEY=VALUE` lines).
    pub fn notify(&self, message: &str) -> Result<(), ServiceError> {
        let Some((socket, addr, address)) = &self.target else {
            return Ok(());
        };
        socket
            .send_to_addr(message.as_bytes(), addr)
            .map(drop)
            .map_err(|source| ServiceError::Send {
                address: address.clone(),
                source,
            })
    }

    /// `READY=1` with a status.
    pub fn ready(&self, status: &str) -> Result<(), ServiceError> {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    /// `STATUS=...`.
    pub fn status(&self, status: &str) -> Result<(), ServiceError> {
        self.notify(&format!("STATUS={}", one_line(status)))
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) -> Result<(), ServiceError> {
        self.notify("WATCHDOG=1")
    }

    /// `STOPPING=1` with a status.
    pub fn stopping(&self, status: &str) -> Result<(), ServiceError> {
        self.notify(&format!("STOPPING=1\nSTATUS={}", one_line(status)))
    }
}

/// A status must be one line.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// A sample of the pipeline's liveness, taken at each watchdog period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Liveness {
    /// Loop iterations of each pipeline thread (capture, inference, compose); each loop
    /// goes round at least every 100 ms unless it is stuck in a call.
    pub heartbeats: [u64; 3],
    /// Frames composed and shown.
    pub composed: u64,
    /// The source is legitimately waiting (camera absent or reconnecting).
    pub source_waiting: bool,
}

/// The watchdog rule: ping only when the pipeline made progress since the previous sample.
#[derive(Debug, Clone, Default)]
pub struct Watchdog {
    last: Liveness,
}

impl Watchdog {
    /// A rule whose first sample is compared with all-zero counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether to ping, given the sample at the end of this period: every thread's heartbeat
    /// advanced, and frames were composed or the source is waiting for its camera.
    pub fn check(&mut self, now: Liveness) -> bool {
        let threads_alive = now
            .heartbeats
            .iter()
            .zip(&self.last.heartbeats)
            .all(|(n, l)| n > l);
        let progress = now.composed > self.last.composed || now.source_waiting;
        self.last = now;
        threads_alive && progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(h: u64, composed: u64, waiting: bool) -> Liveness {
        Liveness {
            heartbeats: [h; 3],
            composed,
            source_waiting: waiting,
        }
    }

    #[test]
    fn watchdog_pings_only_on_progress() {
        let mut w = Watchdog::new();
        assert!(w.check(sample(5, 3, false)), "frames composed");
        assert!(
            !w.check(sample(9, 3, false)),
            "no frame composed, source streaming"
        );
        assert!(
            w.check(sample(12, 3, true)),
            "source reconnecting: waiting is progress"
        );
        let mut stuck = sample(20, 9, true);
        stuck.heartbeats[1] = 12; // inference stuck in a call
        assert!(!w.check(stuck), "a stuck thread stops the pings");
        assert!(w.check(sample(30, 10, false)));
    }

    #[test]
    fn notify_socket_values() {
        assert!(!Notifier::from_values(None, None, None)
            .expect("none")
            .is_enabled());
        let n = Notifier::from_values(Some("@dermcam-test"), Some("4000000"), None).expect("ok");
        assert!(n.is_enabled());
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(2)));
        let other = Notifier::from_values(Some("/run/x"), Some("4000000"), Some("1")).expect("ok");
        assert_eq!(
            other.watchdog_interval(),
            None,
            "WATCHDOG_PID of another process"
        );
    }
}
