//! A tiny read-only FUSE server (raw /dev/fuse protocol, no libfuse) for `reg_fuse`: its
//! root directory holds one file, `hello`, mode 0444. It runs in a peer process outside
//! the subject's tree, and stops when the subject exits or the mount goes away.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::ctx::{Ctx, mount};
use crate::procs::{Peer, spawn_peer};
use crate::sys::{self, Result};

pub const HELLO: &str = "hello";
const CONTENT: &[u8] = b"hello, fdzoo\n";
const ROOT_ID: u64 = 1;
const HELLO_ID: u64 = 2;

// Opcodes (include/uapi/linux/fuse.h).
const LOOKUP: u32 = 1;
const FORGET: u32 = 2;
const GETATTR: u32 = 3;
const OPEN: u32 = 14;
const READ: u32 = 15;
const STATFS: u32 = 17;
const RELEASE: u32 = 18;
const FLUSH: u32 = 25;
const INIT: u32 = 26;
const INTERRUPT: u32 = 36;
const DESTROY: u32 = 38;
const BATCH_FORGET: u32 = 42;

/// Size of struct fuse_in_header.
const IN_HEADER: usize = 40;

/// Mounts the server's filesystem on `mnt` from a peer; returns once it is mounted.
pub fn serve_hello(ctx: &mut Ctx, mnt: &Path) -> Result<()> {
    ctx.will_mount(mnt);
    let mnt = mnt.to_path_buf();
    spawn_peer(ctx, &[], move |peer| {
        let dev = sys::open("/dev/fuse", libc::O_RDWR)
            .map_err(|e| e.unsupported_on(&[libc::ENOENT, libc::ENODEV]))?;
        let data = format!("fd={},rootmode=40000,user_id=0,group_id=0", dev.as_raw_fd());
        mount("fdzoo", &mnt, "fuse", &data)?;
        peer.ready();
        serve(peer, &dev);
        Ok(())
    })?;
    Ok(())
}

/// Answers requests until the subject exits or the connection ends.
fn serve(peer: &Peer, dev: &OwnedFd) {
    let mut buf = vec![0u8; 1 << 20];
    while peer.wait_subject_or(dev.as_raw_fd()) {
        // SAFETY: `buf` is valid for its length.
        let n = unsafe { libc::read(dev.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR | libc::EAGAIN | libc::ENOENT) => continue,
                _ => return, // ENODEV: unmounted
            }
        }
        let req = &buf[..n as usize];
        if req.len() < IN_HEADER {
            continue;
        }
        let opcode = u32_at(req, 4);
        let unique = u64_at(req, 8);
        let node = u64_at(req, 16);
        if opcode == DESTROY {
            return;
        }
        if let Some(reply) = answer(opcode, node, &req[IN_HEADER..]) {
            send(dev, unique, reply);
        }
    }
}

/// The reply to one request: Ok(payload) or Err(errno); None for requests without reply.
fn answer(opcode: u32, node: u64, arg: &[u8]) -> Option<std::result::Result<Vec<u8>, i32>> {
    Some(match opcode {
        FORGET | BATCH_FORGET | INTERRUPT => return None,
        INIT => Ok(init_out(arg)),
        LOOKUP if node == ROOT_ID && arg.split(|&b| b == 0).next() == Some(HELLO.as_bytes()) => {
            let mut out = Vec::new();
            for word in [HELLO_ID, 0, 1, 1] {
                out.extend(word.to_ne_bytes()); // nodeid, generation, entry/attr valid (s)
            }
            out.extend([0u8; 8]); // entry/attr valid (ns)
            out.extend(attr(HELLO_ID));
            Ok(out)
        }
        LOOKUP => Err(libc::ENOENT),
        GETATTR if node == ROOT_ID || node == HELLO_ID => {
            let mut out = 1u64.to_ne_bytes().to_vec(); // attr_valid (s)
            out.extend([0u8; 8]); // attr_valid_nsec, dummy
            out.extend(attr(node));
            Ok(out)
        }
        OPEN if node == HELLO_ID => Ok(vec![0; 16]), // fh, open_flags, backing_id
        READ if arg.len() >= 20 => {
            let offset = (u64_at(arg, 8) as usize).min(CONTENT.len());
            let size = u32_at(arg, 16) as usize;
            Ok(CONTENT[offset..(offset + size).min(CONTENT.len())].to_vec())
        }
        STATFS => {
            let mut out = vec![0u8; 80]; // struct fuse_kstatfs
            out[40..44].copy_from_slice(&4096u32.to_ne_bytes()); // bsize
            out[44..48].copy_from_slice(&255u32.to_ne_bytes()); // namelen
            Ok(out)
        }
        RELEASE | FLUSH => Ok(Vec::new()),
        _ => Err(libc::ENOSYS),
    })
}

/// struct fuse_init_out for protocol 7.31 with no optional features.
fn init_out(init_in: &[u8]) -> Vec<u8> {
    let max_readahead = if init_in.len() >= 12 {
        u32_at(init_in, 8)
    } else {
        0
    };
    let mut out = vec![0u8; 64];
    out[0..4].copy_from_slice(&7u32.to_ne_bytes());
    out[4..8].copy_from_slice(&31u32.to_ne_bytes());
    out[8..12].copy_from_slice(&max_readahead.to_ne_bytes());
    out[20..24].copy_from_slice(&4096u32.to_ne_bytes()); // max_write
    out
}

/// struct fuse_attr of the root directory or of `hello`.
fn attr(node: u64) -> Vec<u8> {
    let (mode, size, nlink) = if node == ROOT_ID {
        (libc::S_IFDIR | 0o755, 0, 2)
    } else {
        (libc::S_IFREG | 0o444, CONTENT.len() as u64, 1)
    };
    let mut out = Vec::with_capacity(88);
    out.extend(node.to_ne_bytes()); // ino
    out.extend(size.to_ne_bytes());
    out.extend(size.div_ceil(512).to_ne_bytes()); // blocks
    out.extend([0u8; 36]); // atime, mtime, ctime and their nsec
    for word in [mode, nlink, 0, 0, 0, 4096, 0] {
        out.extend(word.to_ne_bytes()); // mode, nlink, uid, gid, rdev, blksize, flags
    }
    out
}

/// Writes struct fuse_out_header and the payload (or the negated errno) in one go.
fn send(dev: &OwnedFd, unique: u64, reply: std::result::Result<Vec<u8>, i32>) {
    let (error, payload) = match reply {
        Ok(payload) => (0, payload),
        Err(errno) => (-errno, Vec::new()),
    };
    let mut msg = ((16 + payload.len()) as u32).to_ne_bytes().to_vec();
    msg.extend(error.to_ne_bytes());
    msg.extend(unique.to_ne_bytes());
    msg.extend(payload);
    let _ = sys::write_all(dev, &msg, "write(/dev/fuse)");
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap_or_default())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().unwrap_or_default())
}
