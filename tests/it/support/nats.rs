//! A private NATS server with JetStream on a random loopback port, its store in a temp dir.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

fn nats_server() -> PathBuf {
    super::program(&["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"])
}

impl NatsServer {
    pub fn start() -> NatsServer {
        // A free port: taken from the kernel, released, handed to the server.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut s = NatsServer { dir: tempfile::tempdir().unwrap(), port, child: None };
        s.launch();
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let d = self.dir.path();
        let child = Command::new(nats_server())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(d.join("store"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("nats.stderr")).unwrap())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() || !super::running(&mut self.child) {
            let stderr = std::fs::read_to_string(d.join("nats.stderr")).unwrap_or_default();
            assert!(Instant::now() < deadline, "nats-server did not start: {stderr}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it (SIGTERM) and waits for it to exit; its store stays.
    pub fn stop(&mut self) {
        super::terminate(self.child.take());
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
