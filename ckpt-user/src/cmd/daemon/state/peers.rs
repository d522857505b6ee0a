//! Unix stream peers learnt from the other end. A client that connects before its server
//! accepts has a peer with no socket, so no inode, when its facts are read (in flight); the
//! accepted end, read later, names the client as its peer. Whichever of the two the daemon
//! hears of first, the client's peer inode is filled in from the other, and the verdict that
//! depends on it (is the peer held inside the dump?) follows.

use std::collections::HashMap;

use crate::facts::{FileFact, UnixPeer};
use crate::scope::AF_UNIX;

/// The peer of a unix socket, if it has one.
fn unix_peer(f: &FileFact) -> Option<&UnixPeer> {
    f.socket
        .as_ref()
        .filter(|s| s.family == AF_UNIX)
        .and_then(|s| s.peer.as_ref())
}

fn unix_peer_mut(f: &mut FileFact) -> Option<&mut UnixPeer> {
    f.socket
        .as_mut()
        .filter(|s| s.family == AF_UNIX)
        .and_then(|s| s.peer.as_mut())
}

/// Kept unix sockets by their peer's inode.
#[derive(Default)]
pub struct Peers {
    /// Peer inode → the inode of the kept socket whose peer it is.
    of_peer: HashMap<u64, u64>,
}

impl Peers {
    pub fn clear(&mut self) {
        self.of_peer.clear();
    }

    /// `f` is kept. Fills in an in-flight peer from an accepted end kept before, and
    /// remembers a known one: returns its inode, whose in-flight holders `f` may have accepted.
    pub fn kept(&mut self, f: &mut FileFact) -> Option<u64> {
        let ino = f.ino;
        let peer = unix_peer_mut(f)?;
        if peer.ino == 0 {
            if !peer.closed
                && let Some(&accepted) = self.of_peer.get(&ino)
            {
                peer.ino = accepted;
            }
            return None;
        }
        self.of_peer.insert(peer.ino, ino);
        Some(peer.ino)
    }

    /// `f` is no longer kept by anyone.
    pub fn gone(&mut self, f: &FileFact) {
        if let Some(peer) = unix_peer(f).filter(|p| p.ino != 0)
            && self.of_peer.get(&peer.ino) == Some(&f.ino)
        {
            self.of_peer.remove(&peer.ino);
        }
    }

    /// An in-flight `f` whose server accepted it as `accepted`: its peer is known now.
    pub fn accepted(f: &mut FileFact, accepted: u64) -> bool {
        match unix_peer_mut(f) {
            Some(p) if p.ino == 0 && !p.closed => {
                p.ino = accepted;
                true
            }
            _ => false,
        }
    }
}
