//! `librebind.so`, the shim behind wrap mode (`websockify PORT -- COMMAND`).
//!
//! The proxy starts COMMAND with `LD_PRELOAD=librebind.so`, `REBIND_OLD_PORT` (the port the
//! proxy listens on, which COMMAND also wants) and `REBIND_NEW_PORT` (a loopback port the proxy
//! reserved for it). This library replaces `bind()`: a bind of an IPv4 or IPv6 socket to the
//! old port becomes a bind to the new port on the loopback address of the same family
//! (`127.0.0.1` or `::1`), and the proxy relays its clients there. Every other bind passes
//! through unchanged, as does everything when the variables are missing or malformed.
//!
//! The proxy holds the new port with `SO_REUSEADDR` sockets that never listen, so no other
//! program can be given it while COMMAND starts; the shim sets `SO_REUSEADDR` on COMMAND's
//! socket so that its bind succeeds next to the reservation. (websockify's `rebind.so` binds
//! port 0 and closes it first, which races, and knows IPv4 only.)
//!
//! The shim is one of the two places with `unsafe` in the project (the plugin ABI is the
//! other): the exported `bind` receives raw pointers from C code, and it finds and calls
//! libc's own `bind` (`dlsym`, then a function pointer made from its address), reads the
//! caller's address structure, sets `SO_REUSEADDR` and `errno`. Every block says why it is
//! sound.

use std::mem::size_of;
use std::sync::OnceLock;

use libc::{c_int, c_void, sockaddr, sockaddr_in, sockaddr_in6, socklen_t};

type BindFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;

/// The ports from the environment, read once: `(old, new)`.
fn ports() -> Option<(u16, u16)> {
    static PORTS: OnceLock<Option<(u16, u16)>> = OnceLock::new();
    *PORTS.get_or_init(|| {
        let port = |name: &str| std::env::var(name).ok()?.trim().parse::<u16>().ok();
        Some((port("REBIND_OLD_PORT")?, port("REBIND_NEW_PORT")?))
    })
}

/// The `bind` this library hides: the next one in the lookup order (libc's).
fn next_bind() -> Option<BindFn> {
    static NEXT: OnceLock<usize> = OnceLock::new();
    let address = *NEXT.get_or_init(|| {
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name is always safe to call; it
        // returns null or the address of the next `bind` symbol.
        unsafe { libc::dlsym(libc::RTLD_NEXT, c"bind".as_ptr()) as usize }
    });
    if address == 0 {
        return None;
    }
    // SAFETY: the symbol named `bind` in libc has exactly this signature (POSIX bind(2)).
    Some(unsafe { std::mem::transmute::<usize, BindFn>(address) })
}

/// Allows the bind next to the proxy's reservation; a failure only means the bind may fail
/// as it would have anyway.
fn reuse_address(fd: c_int) {
    let on: c_int = 1;
    // SAFETY: `on` lives across the call and its size is passed; setsockopt does not keep it.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&on as *const c_int).cast::<c_void>(),
            size_of::<c_int>() as socklen_t,
        );
    }
}

/// `bind(2)`, moving the old port to the new one on loopback.
///
/// # Safety
/// The caller passes what bind(2) takes: `addr` points to `len` readable bytes (or is null,
/// which the real bind reports as EFAULT).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let Some(next) = next_bind() else {
        // SAFETY: errno is this thread's; writing it is how a C function reports failure.
        unsafe { *libc::__errno_location() = libc::ENOSYS };
        return -1;
    };
    let Some((old, new)) = ports() else {
        // SAFETY: the caller's arguments, passed on unchanged.
        return unsafe { next(fd, addr, len) };
    };
    let len_of = |n: usize| usize::try_from(len).is_ok_and(|l| l >= n);
    if !addr.is_null() && len_of(size_of::<libc::sa_family_t>()) {
        // SAFETY: `addr` is non-null and has at least the family field (checked above).
        let family = c_int::from(unsafe { (*addr).sa_family });
        if family == libc::AF_INET && len_of(size_of::<sockaddr_in>()) {
            // SAFETY: an AF_INET address of at least sockaddr_in's size; read unaligned since
            // the caller's buffer may be a byte array.
            let mut v4 = unsafe { std::ptr::read_unaligned(addr.cast::<sockaddr_in>()) };
            if u16::from_be(v4.sin_port) == old {
                v4.sin_port = new.to_be();
                v4.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
                reuse_address(fd);
                let size = size_of::<sockaddr_in>() as socklen_t;
                // SAFETY: `v4` is a complete sockaddr_in that lives across the call.
                return unsafe { next(fd, (&v4 as *const sockaddr_in).cast(), size) };
            }
        } else if family == libc::AF_INET6 && len_of(size_of::<sockaddr_in6>()) {
            // SAFETY: as above, for AF_INET6.
            let mut v6 = unsafe { std::ptr::read_unaligned(addr.cast::<sockaddr_in6>()) };
            if u16::from_be(v6.sin6_port) == old {
                v6.sin6_port = new.to_be();
                v6.sin6_addr.s6_addr = std::net::Ipv6Addr::LOCALHOST.octets();
                reuse_address(fd);
                let size = size_of::<sockaddr_in6>() as socklen_t;
                // SAFETY: `v6` is a complete sockaddr_in6 that lives across the call.
                return unsafe { next(fd, (&v6 as *const sockaddr_in6).cast(), size) };
            }
        }
    }
    // SAFETY: the caller's arguments, passed on unchanged.
    unsafe { next(fd, addr, len) }
}
