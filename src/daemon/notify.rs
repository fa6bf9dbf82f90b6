//! systemd's readiness protocol (`sd_notify`): with `Type=notify`,
//! systemd sets `NOTIFY_SOCKET` and waits for `READY=1`; `RELOADING=1`
//! and `STOPPING=1` tell it what the daemon is doing. Without the
//! variable, nothing is sent.

use std::os::unix::net::UnixDatagram;

/// Sends `state` to systemd, best effort.
pub fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let message = state;
    let sent = match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|address| socket.send_to_addr(message.as_bytes(), &address))
        }
        None => socket.send_to(message.as_bytes(), &path),
    };
    if let Err(e) = sent {
        say!("tierjit serve: cannot notify systemd at {path}: {e}");
    }
}
