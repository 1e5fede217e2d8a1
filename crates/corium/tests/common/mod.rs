//! The loopback harness shared by the runtime's integration tests: a server on a free
//! port that stops on demand, and a client.
#![allow(dead_code)] // Each test file uses its own subset.

use std::net::SocketAddr;
use std::time::Duration;

use corium::{Client, EndpointConfig, Router, Server};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Generous upper bound so that a hang fails the test instead of blocking CI.
pub const LIMIT: Duration = Duration::from_secs(30);

/// A server running on `127.0.0.1` until [`Running::shutdown`].
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// `coap://ADDR` + `path`.
    pub fn uri(&self, path: &str) -> String {
        format!("coap://{}{}", self.addr, path)
    }

    /// Stops the server and checks that it stopped cleanly, in time.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("shutdown finished in time")
            .expect("server task")
            .expect("server result");
    }
}

/// Starts `router` with `config` on a free loopback port.
pub async fn start_with(config: EndpointConfig, router: Router) -> Running {
    let server = Server::builder()
        .config(config)
        .bind(&["127.0.0.1:0".parse().unwrap()], router)
        .await
        .expect("bind server");
    let addr = server.local_addrs()[0];
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

/// Starts `router` with the default configuration.
pub async fn start(router: Router) -> Running {
    start_with(EndpointConfig::default(), router).await
}

/// A client on a free loopback port.
pub async fn client() -> Client {
    Client::bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind client")
}
