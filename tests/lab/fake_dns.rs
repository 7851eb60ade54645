//! A fake upstream resolver for tests, inside a lab namespace: it answers every query, over
//! UDP and TCP, with one A record. Tests never send DNS anywhere else.

use shoal::net::netns::{self, Netns};
use shoal::wire::dns::{Message, RData, Record, CLASS_IN};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

fn answer(query: &[u8], a: Ipv4Addr) -> Option<Vec<u8>> {
    let q = Message::parse_bytes(query).ok()?;
    let mut r = Message::response_to(&q, 0);
    let question = q.questions.first()?;
    r.answers.push(Record {
        name: question.name.clone(),
        class: CLASS_IN,
        ttl: 30,
        data: RData::A(a),
    });
    r.emit(512).ok()
}

/// Serve on `bind` (port 0: any) inside `lab`, answering `a` to everything.
pub fn upstream(lab: &Netns, bind: &str, a: Ipv4Addr) -> SocketAddr {
    let bind = bind.to_string();
    let (udp, tcp) = netns::run_in(lab, move || {
        let u = UdpSocket::bind(bind.as_str())?;
        let t = TcpListener::bind(u.local_addr()?)?;
        Ok((u, t))
    })
    .expect("fake upstream");
    let addr = udp.local_addr().expect("local addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, peer)) = udp.recv_from(&mut buf) {
            if let Some(reply) = answer(&buf[..n], a) {
                let _ = udp.send_to(&reply, peer);
            }
        }
    });
    std::thread::spawn(move || {
        for mut s in tcp.incoming().flatten() {
            let mut len = [0u8; 2];
            if s.read_exact(&mut len).is_err() {
                continue;
            }
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if s.read_exact(&mut q).is_err() {
                continue;
            }
            if let Some(reply) = answer(&q, a) {
                let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                framed.extend(reply);
                let _ = s.write_all(&framed);
            }
        }
    });
    addr
}
