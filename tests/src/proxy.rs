//! A TCP proxy in front of the API server that a test can cut (every connection closed, new
//! ones refused) and heal: a network partition between one client and the control plane.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Proxy {
    pub address: SocketAddr,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Set (under the tasks' lock) while cut: a connection accepted just as the cut
    /// drained the tasks is closed, not left relaying through the partition.
    is_cut: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on a free loopback port, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let proxy = Proxy {
            address,
            upstream,
            tasks: Arc::new(Mutex::new(Vec::new())),
            is_cut: Arc::new(AtomicBool::new(false)),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let (upstream, tasks, is_cut) = (self.upstream, self.tasks.clone(), self.is_cut.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut tasks = tasks.lock().unwrap_or_else(|e| e.into_inner());
                if is_cut.load(Ordering::SeqCst) {
                    relay.abort();
                    return;
                }
                tasks.push(relay);
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(accept);
    }

    /// Closes every connection and stops listening: connects are refused.
    pub fn cut(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        self.is_cut.store(true, Ordering::SeqCst);
        for task in tasks.drain(..) {
            task.abort();
        }
    }

    /// Listens again on the same port (retried for a while: an outgoing connection of this
    /// machine may hold it as its local port for a moment while it was free).
    pub async fn heal(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.address).await {
                Ok(listener) => break listener,
                Err(e) if tries < 50 => {
                    tries += 1;
                    tracing::debug!(error = %e, "rebind; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.address),
            }
        };
        self.is_cut.store(false, Ordering::SeqCst);
        self.serve(listener);
    }
}
