//! Deleting the veths of containers that are gone, off the exit path.
//!
//! Deleting a link waits for an RCU grace period (about 20 ms here, more on a slow board),
//! and a container's exit, `wait` and `run --rm` should not. Guarantees: links are deleted by
//! interface index, never by name, so a deletion that runs late cannot remove a newer link
//! that took the same name; deletions run in the order given; a link already gone (its
//! namespace died first) is not an error.

use super::netlink::Netlink;
use super::netns::Netns;
use std::io;
use std::sync::mpsc;

/// Handle to the reaper thread; dropping it lets the thread finish what is queued and end.
pub struct Reaper {
    queue: mpsc::Sender<(u32, String)>,
}

impl Reaper {
    /// Start the thread with its own netlink socket in `ns`.
    pub fn start(ns: &Netns) -> io::Result<Reaper> {
        let mut nl = Netlink::open(ns)?;
        let (queue, rx) = mpsc::channel::<(u32, String)>();
        std::thread::Builder::new()
            .name("shoal-reaper".into())
            .spawn(move || {
                for (index, name) in rx {
                    match nl.delete_index(index, &name) {
                        Ok(()) => {}
                        // ENODEV: the namespace took the pair with it already.
                        Err(e) if e.to_string().contains("No such device") => {}
                        Err(e) => log::warn!("{e}"),
                    }
                }
            })?;
        Ok(Reaper { queue })
    }

    /// Queue the deletion of link `index` (called `name`).
    pub fn delete(&self, index: u32, name: &str) {
        let _ = self.queue.send((index, name.to_string()));
    }
}
