//! A real Mosquitto broker on 127.0.0.1 for tests: the district's or city's
//! broker in upstream and district tests. Persistent, so a durable
//! subscriber's queue survives a restart of the broker.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

/// A real Mosquitto on 127.0.0.1, persistent so a durable subscriber's queue
/// survives its restart.
pub struct Mosquitto {
    pub port: u16,
    conf: std::path::PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts Mosquitto with its files in `dir`, listening on `port`.
    pub fn start(dir: &Path, port: u16) -> Mosquitto {
        let conf = dir.join("mosquitto.conf");
        // Run as root, Mosquitto drops to its own user and could not write
        // its persistence file into our temp dir (sessions lost on restart).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777));
        }
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n",
                dir.display()
            ),
        )
        .unwrap();
        let mut m = Mosquitto {
            port,
            conf,
            child: None,
        };
        m.spawn();
        m
    }

    /// Starts (or restarts) the process and waits for its port.
    pub fn spawn(&mut self) {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("mosquitto is not installed (scripts/test installs the Debian package)");
        self.child = Some(Command::new(bin).arg("-c").arg(&self.conf).spawn().unwrap());
        let addr = format!("127.0.0.1:{}", self.port);
        for _ in 0..100 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mosquitto did not start on {addr}");
    }

    /// Graceful stop (SIGTERM): Mosquitto writes its persistence file.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
