//! Whether attempts can leave the machine: the engine's `online` / `offline`
//! state, and the cheap checks behind it.
//!
//! Nothing is checked while attempts succeed. After a transport failure to a
//! non-loopback endpoint the engine looks whether the machine has a network
//! interface up other than loopback (`/sys/class/net`), and for a connect
//! that found no route, whether the kernel now has one (a UDP `connect`,
//! which sends nothing). If not, the attempt is held instead of counted, and
//! the engine is offline until the same checks pass again ([`watch`] runs
//! them every second, only while offline). The interfaces are also looked
//! at once at start and after a resume from sleep.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use url::{Host, Url};

use crate::clock::Clock;
use crate::sync::Locked;

/// How often the checks run while offline.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Whether attempts can leave the machine (`GET /v1/health`'s `network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Attempts go out.
    Online,
    /// No interface up but loopback, or no route to an endpoint: attempts
    /// to non-loopback endpoints are held, not counted as failures.
    Offline,
}

impl Network {
    /// `"online"` or `"offline"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Online => "online",
            Network::Offline => "offline",
        }
    }
}

/// The engine's network state, shared by the scheduler (which sets it) and
/// the handle (which shows it).
#[derive(Debug)]
pub(crate) struct NetworkState {
    state: watch::Sender<Network>,
    /// Addresses a connect found no route to, checked again while offline.
    unroutable: std::sync::Mutex<Vec<SocketAddr>>,
    /// How many times the engine went offline (see [`NetworkState::mark`]).
    went_offline: AtomicU64,
}

impl Default for NetworkState {
    fn default() -> Self {
        Self {
            state: watch::Sender::new(Network::Online),
            unroutable: std::sync::Mutex::new(Vec::new()),
            went_offline: AtomicU64::new(0),
        }
    }
}

impl NetworkState {
    /// The state now.
    pub(crate) fn now(&self) -> Network {
        *self.state.borrow()
    }

    /// Changes to the state.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Network> {
        self.state.subscribe()
    }

    /// Sets the state; returns whether it changed (logged at info then).
    pub(crate) fn set(&self, to: Network) -> bool {
        let changed = self.state.send_if_modified(|now| {
            let changed = *now != to;
            *now = to;
            changed
        });
        if changed {
            if to == Network::Offline {
                self.went_offline.fetch_add(1, Ordering::AcqRel);
            }
            match to {
                Network::Offline => tracing::info!(
                    "offline: no network interface up or no route to an endpoint; deliveries are held, not failed"
                ),
                Network::Online => {
                    self.unroutable.locked().clear();
                    tracing::info!("online again: held deliveries go out");
                }
            }
        }
        changed
    }

    /// Taken when an attempt starts, for [`NetworkState::cannot_leave`].
    pub(crate) fn mark(&self) -> u64 {
        self.went_offline.load(Ordering::Acquire)
    }

    /// After a transport failure of an attempt to `url` (`unreachable`: the
    /// connect found no route; `since`: the [`NetworkState::mark`] taken when
    /// it started): whether it could not leave the machine, now or because
    /// the engine went offline while it ran (it timed out on a connection
    /// whose link went down). If it cannot now, the engine is offline.
    pub(crate) async fn cannot_leave(&self, url: &Url, unreachable: bool, since: u64) -> bool {
        if is_loopback(url) {
            return false;
        }
        if self.mark() != since {
            return true;
        }
        let no_route = if unreachable {
            let addrs = resolve(url).await;
            let missing: Vec<SocketAddr> = addrs.into_iter().filter(|a| !has_route(*a)).collect();
            let none = !missing.is_empty();
            self.unroutable.locked().extend(missing);
            none
        } else {
            false
        };
        let offline = no_route || !interfaces_up(Path::new(SYS_NET));
        if offline {
            self.set(Network::Offline);
        }
        offline
    }

    /// Offline now if no interface but loopback is up (at start, and after
    /// a resume from sleep: cheap, and shown before any attempt fails).
    pub(crate) fn check_interfaces(&self) {
        if !interfaces_up(Path::new(SYS_NET)) {
            self.set(Network::Offline);
        }
    }

    /// Whether the checks pass again (an interface up, a route to every
    /// address that had none).
    fn back(&self) -> bool {
        let addrs = self.unroutable.locked().clone();
        interfaces_up(Path::new(SYS_NET)) && addrs.into_iter().all(has_route)
    }
}

/// While offline, checks every [`CHECK_EVERY`] whether the network is back;
/// idle (no wake-up) while online. Runs until `cancel`.
pub(crate) async fn watch(
    state: std::sync::Arc<NetworkState>,
    clock: Clock,
    cancel: CancellationToken,
) {
    let mut changes = state.subscribe();
    state.check_interfaces();
    loop {
        if state.now() == Network::Offline {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = clock.sleep(CHECK_EVERY) => {}
            }
            if state.back() {
                state.set(Network::Online);
            }
        } else {
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// Where Linux lists network interfaces.
const SYS_NET: &str = "/sys/class/net";

/// Whether `url` names this machine (`localhost`, 127.0.0.0/8, `::1`).
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Whether an interface other than loopback is up (administratively, and its
/// link up or unknown, as tunnels report it), as listed under `dir`. Where
/// there is no such list (not Linux), assumed so.
pub(crate) fn interfaces_up(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true;
    };
    const IFF_UP: u32 = 0x1;
    const IFF_LOOPBACK: u32 = 0x8;
    entries.flatten().any(|entry| {
        let path = entry.path();
        let read = |name: &str| std::fs::read_to_string(path.join(name)).unwrap_or_default();
        let flags = u32::from_str_radix(read("flags").trim().trim_start_matches("0x"), 16);
        let Ok(flags) = flags else {
            return false;
        };
        let oper = read("operstate");
        flags & IFF_UP != 0 && flags & IFF_LOOPBACK == 0 && matches!(oper.trim(), "up" | "unknown")
    })
}

/// The addresses `url` names (looked up for a host name; none if that fails).
async fn resolve(url: &Url) -> Vec<SocketAddr> {
    let port = url.port_or_known_default().unwrap_or(443);
    match url.host() {
        Some(Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Some(Host::Domain(d)) => tokio::net::lookup_host((d, port))
            .await
            .map(Iterator::collect)
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

/// Whether the kernel has a route to `addr`: a UDP `connect` looks it up
/// and sends nothing.
fn has_route(addr: SocketAddr) -> bool {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    UdpSocket::bind(local).and_then(|s| s.connect(addr)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(dir: &Path, name: &str, flags: &str, oper: &str) {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).expect("dir");
        std::fs::write(d.join("flags"), format!("{flags}\n")).expect("flags");
        std::fs::write(d.join("operstate"), format!("{oper}\n")).expect("operstate");
    }

    #[test]
    fn only_an_interface_up_other_than_loopback_counts() {
        let dir = tempfile::tempdir().expect("dir");
        iface(dir.path(), "lo", "0x9", "unknown");
        iface(dir.path(), "eth0", "0x1002", "down");
        iface(dir.path(), "wlan0", "0x1003", "down");
        assert!(!interfaces_up(dir.path()), "loopback and links down");
        iface(dir.path(), "wg0", "0x91", "unknown");
        assert!(interfaces_up(dir.path()), "a tunnel up");
        std::fs::remove_dir_all(dir.path().join("wg0")).expect("rm");
        iface(dir.path(), "eth0", "0x1003", "up");
        assert!(interfaces_up(dir.path()));
    }

    #[test]
    fn loopback_endpoints_are_known() {
        for (url, lo) in [
            ("https://localhost:9/h", true),
            ("https://127.0.0.2/h", true),
            ("https://[::1]/h", true),
            ("https://10.0.0.1/h", false),
            ("https://crm.office.lan/h", false),
        ] {
            assert_eq!(is_loopback(&Url::parse(url).expect("url")), lo, "{url}");
        }
    }

    #[test]
    fn loopback_always_has_a_route() {
        assert!(has_route("127.0.0.1:9".parse().expect("addr")));
    }

    #[tokio::test]
    async fn an_attempt_that_ran_while_the_engine_went_offline_is_held() {
        let state = NetworkState::default();
        let url = Url::parse("https://10.213.7.2/h").expect("url");
        let since = state.mark();
        state.set(Network::Offline);
        state.set(Network::Online);
        assert!(state.cannot_leave(&url, false, since).await);
    }

    #[tokio::test]
    async fn a_loopback_endpoint_never_makes_the_engine_offline() {
        let state = NetworkState::default();
        let url = Url::parse("https://127.0.0.1:9/h").expect("url");
        assert!(!state.cannot_leave(&url, true, state.mark()).await);
        assert_eq!(state.now(), Network::Online);
    }
}
