//! Userland port proxy, for boards without nftables: published ports relayed by the daemon.
//!
//! Guarantees: a published TCP port accepts connections and relays bytes both ways to the
//! container until either side closes; a published UDP port relays each client's datagrams
//! through its own socket to the container and the replies back, forgetting a client after
//! [`UDP_IDLE`] of silence. Listeners live on one thread inside the given namespace; removing a
//! port closes its listener at once (open TCP relays finish on their own). Every task runs
//! on that thread's own executor, so every socket a relay opens is in the same namespace.

use super::firewall::Proto;
use super::netns::{self, Netns};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::mpsc;
use std::time::Duration;

/// How long a UDP client mapping lives without traffic.
pub const UDP_IDLE: Duration = Duration::from_secs(30);

enum Command {
    Add {
        proto: Proto,
        listen: SocketAddr,
        target: SocketAddr,
        done: mpsc::Sender<io::Result<SocketAddr>>,
    },
    Remove {
        proto: Proto,
        port: u16,
    },
    Stop,
}

/// Handle to the proxy thread; dropping it stops every relay.
pub struct Proxy {
    commands: smol::channel::Sender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

async fn relay_tcp(client: smol::net::TcpStream, target: SocketAddr) {
    let Ok(upstream) = smol::net::TcpStream::connect(target).await else {
        return;
    };
    let (client2, upstream2) = (client.clone(), upstream.clone());
    let to_target = async move {
        let _ = smol::io::copy(client2, &mut upstream2.clone()).await;
        let _ = upstream2.shutdown(std::net::Shutdown::Write);
    };
    let to_client = async move {
        let _ = smol::io::copy(upstream, &mut client.clone()).await;
        let _ = client.shutdown(std::net::Shutdown::Write);
    };
    smol::future::zip(to_target, to_client).await;
}

/// Spawn a detached task on the thread's executor, if it still exists.
fn spawn_on(ex: &Weak<smol::LocalExecutor<'static>>, task: impl std::future::Future<Output = ()> + 'static) {
    if let Some(ex) = ex.upgrade() {
        ex.spawn(task).detach();
    }
}

async fn serve_tcp(
    ex: Weak<smol::LocalExecutor<'static>>,
    listener: smol::net::TcpListener,
    target: SocketAddr,
) {
    loop {
        match listener.accept().await {
            Ok((s, _)) => spawn_on(&ex, relay_tcp(s, target)),
            Err(e) => {
                log::warn!("proxy: accepting for {target}: {e}");
                smol::Timer::after(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_udp(ex: Weak<smol::LocalExecutor<'static>>, sock: smol::net::UdpSocket, target: SocketAddr) {
    // Client address → the socket connected to the target on its behalf.
    let flows: std::rc::Rc<std::cell::RefCell<HashMap<SocketAddr, smol::net::UdpSocket>>> =
        Default::default();
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((n, client)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let existing = flows.borrow().get(&client).cloned();
        let flow = match existing {
            Some(f) => f,
            None => {
                // A SocketAddr, not ("0.0.0.0", 0): a host string would link glibc's
                // getaddrinfo (NSS, static dlopen, its resolver: 135 KB of the binary).
                let any = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0));
                let Ok(f) = smol::net::UdpSocket::bind(any).await else {
                    continue;
                };
                if f.connect(target).await.is_err() {
                    continue;
                }
                flows.borrow_mut().insert(client, f.clone());
                let (front, back, flows) = (sock.clone(), f.clone(), flows.clone());
                spawn_on(&ex, async move {
                    let mut buf = vec![0u8; 65535];
                    loop {
                        let got = smol::future::or(async { back.recv(&mut buf).await.ok() }, async {
                            smol::Timer::after(UDP_IDLE).await;
                            None
                        })
                        .await;
                        let Some(n) = got else { break };
                        let _ = front.send_to(&buf[..n], client).await;
                    }
                    flows.borrow_mut().remove(&client);
                });
                f
            }
        };
        let _ = flow.send(&buf[..n]).await;
    }
}

impl Proxy {
    /// Start the proxy thread inside `ns`.
    pub fn start(ns: &Netns) -> io::Result<Proxy> {
        let (tx, rx) = smol::channel::unbounded::<Command>();
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        let ns = ns.clone();
        let thread = std::thread::Builder::new()
            .name("shoal-proxy".into())
            .spawn(move || {
                if let Err(e) = netns::enter(&ns) {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                let _ = ready_tx.send(Ok(()));
                // Tasks spawn sub-tasks through a Weak: no cycle, so when the thread ends the executor
                // and every task in it (with its sockets) are dropped.
                let ex = Rc::new(smol::LocalExecutor::new());
                smol::block_on(ex.run(async {
                    let mut tasks: HashMap<(Proto, u16), smol::Task<()>> = HashMap::new();
                    while let Ok(cmd) = rx.recv().await {
                        match cmd {
                            Command::Add {
                                proto,
                                listen,
                                target,
                                done,
                            } => {
                                let result = (|| -> io::Result<(SocketAddr, smol::Task<()>)> {
                                    Ok(match proto {
                                        Proto::Tcp => {
                                            let l = smol::net::TcpListener::try_from(
                                                std::net::TcpListener::bind(listen)?,
                                            )?;
                                            (
                                                l.local_addr()?,
                                                ex.spawn(serve_tcp(Rc::downgrade(&ex), l, target)),
                                            )
                                        }
                                        Proto::Udp => {
                                            let s = smol::net::UdpSocket::try_from(
                                                std::net::UdpSocket::bind(listen)?,
                                            )?;
                                            (
                                                s.local_addr()?,
                                                ex.spawn(serve_udp(Rc::downgrade(&ex), s, target)),
                                            )
                                        }
                                    })
                                })();
                                let _ = done.send(result.map(|(addr, task)| {
                                    tasks.insert((proto, addr.port()), task);
                                    addr
                                }));
                            }
                            Command::Remove { proto, port } => {
                                tasks.remove(&(proto, port));
                            }
                            Command::Stop => break,
                        }
                    }
                }));
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Proxy {
                commands: tx,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::other("proxy thread ended before starting")),
        }
    }

    /// Relay `proto` traffic arriving on `listen` (port 0 picks one) to `target`.
    pub fn add(&self, proto: Proto, listen: SocketAddr, target: SocketAddr) -> io::Result<SocketAddr> {
        let (done, wait) = mpsc::channel();
        self.commands
            .send_blocking(Command::Add {
                proto,
                listen,
                target,
                done,
            })
            .map_err(|_| io::Error::other("proxy thread is gone"))?;
        wait.recv()
            .map_err(|_| io::Error::other("proxy thread is gone"))?
    }

    /// Stop relaying `proto` port `port`.
    pub fn remove(&self, proto: Proto, port: u16) {
        let _ = self.commands.send_blocking(Command::Remove { proto, port });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.commands.send_blocking(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
