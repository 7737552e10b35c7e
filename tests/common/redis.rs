//! A real `redis-server` for tests, on a free loopback port, killed on
//! drop. `.ci/run` installs Debian's package.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Redis {
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl Redis {
    /// Starts one and waits until it answers PING.
    pub fn start() -> Redis {
        let addr = super::dead_addr();
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &addr.port().to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian package redis-server; .ci/run installs it)");
        let redis = Redis {
            addr,
            child: Some(child),
        };
        super::wait_until("redis-server to answer PING", super::TIMEOUT, || {
            redis.ping()
        });
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Kills the server and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
