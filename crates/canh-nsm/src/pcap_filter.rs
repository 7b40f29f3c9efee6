//! Filter expressions (`tcpdump` syntax) compiled to classic BPF by the system's libpcap.
//!
//! libpcap is loaded when a filter expression is first compiled (`dlopen`), so the sensor
//! neither links against it nor needs it unless `--bpf EXPR` is used; without it, a compiled
//! program from `tcpdump -ddd EXPR` still works (`--bpf-file`). The compiler is libpcap's own,
//! so an expression means exactly what it means to tcpdump and Suricata.
#![allow(unsafe_code)]

use crate::decode::LinkType;
use crate::live::{BpfInsn, BpfProgram, LiveCaptureError};
use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::sync::OnceLock;

/// `struct bpf_program`.
#[repr(C)]
struct RawProgram {
    bf_len: c_uint,
    bf_insns: *mut libc::sock_filter,
}

type OpenDead = unsafe extern "C" fn(c_int, c_int) -> *mut c_void;
type Compile =
    unsafe extern "C" fn(*mut c_void, *mut RawProgram, *const c_char, c_int, u32) -> c_int;
type GetErr = unsafe extern "C" fn(*mut c_void) -> *mut c_char;
type FreeCode = unsafe extern "C" fn(*mut RawProgram);
type Close = unsafe extern "C" fn(*mut c_void);

struct Libpcap {
    open_dead: OpenDead,
    compile: Compile,
    geterr: GetErr,
    freecode: FreeCode,
    close: Close,
}

/// The shared object names tried, newest first (Debian and Ubuntu ship `libpcap.so.0.8`).
const LIBRARIES: [&str; 3] = ["libpcap.so.0.8", "libpcap.so.1", "libpcap.so"];
/// `DLT_EN10MB`.
const DLT_EN10MB: c_int = 1;
/// `DLT_RAW` on Linux.
const DLT_RAW: c_int = 12;
/// `PCAP_NETMASK_UNKNOWN`.
const NETMASK_UNKNOWN: u32 = 0xffff_ffff;

fn library() -> Result<&'static Libpcap, LiveCaptureError> {
    static LIB: OnceLock<Result<Libpcap, String>> = OnceLock::new();
    LIB.get_or_init(load)
        .as_ref()
        .map_err(|e| LiveCaptureError::InvalidFilter(e.clone()))
}

fn load() -> Result<Libpcap, String> {
    let mut handle = std::ptr::null_mut();
    for name in LIBRARIES {
        let Ok(c) = CString::new(name) else { continue };
        // SAFETY: `c` is NUL-terminated; dlopen has no other preconditions.
        handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if !handle.is_null() {
            break;
        }
    }
    if handle.is_null() {
        return Err(
            "compiling a filter expression needs libpcap (apt-get install libpcap0.8); \
                    or give the output of `tcpdump -ddd EXPR` with --bpf-file"
                .to_owned(),
        );
    }
    let sym = |name: &str| -> Result<*mut c_void, String> {
        let c = CString::new(name).map_err(|e| e.to_string())?;
        // SAFETY: `handle` is a live library handle (never closed) and `c` is NUL-terminated.
        let p = unsafe { libc::dlsym(handle, c.as_ptr()) };
        if p.is_null() {
            Err(format!("libpcap has no {name}"))
        } else {
            Ok(p)
        }
    };
    // SAFETY: each symbol is the libpcap function of that name, whose C signature the
    // function pointer type spells out (pcap/pcap.h).
    unsafe {
        Ok(Libpcap {
            open_dead: std::mem::transmute::<*mut c_void, OpenDead>(sym("pcap_open_dead")?),
            compile: std::mem::transmute::<*mut c_void, Compile>(sym("pcap_compile")?),
            geterr: std::mem::transmute::<*mut c_void, GetErr>(sym("pcap_geterr")?),
            freecode: std::mem::transmute::<*mut c_void, FreeCode>(sym("pcap_freecode")?),
            close: std::mem::transmute::<*mut c_void, Close>(sym("pcap_close")?),
        })
    }
}

/// Compiles `expr` (tcpdump syntax) for packets of `link` cut at `snaplen` bytes, optimised.
pub fn compile(expr: &str, link: LinkType, snaplen: usize) -> Result<BpfProgram, LiveCaptureError> {
    let bad = LiveCaptureError::InvalidFilter;
    let lib = library()?;
    let dlt = match link {
        LinkType::Ethernet => DLT_EN10MB,
        LinkType::Raw => DLT_RAW,
        other => return Err(bad(format!("no filter compiler for link type {other:?}"))),
    };
    let text = CString::new(expr).map_err(|_| bad("the expression contains a NUL byte".into()))?;
    let snaplen = c_int::try_from(snaplen).unwrap_or(c_int::MAX);
    // SAFETY: pcap_open_dead only allocates a handle for compiling; checked for NULL.
    let pcap = unsafe { (lib.open_dead)(dlt, snaplen) };
    if pcap.is_null() {
        return Err(bad("libpcap could not make a compiler handle".into()));
    }
    let mut prog = RawProgram {
        bf_len: 0,
        bf_insns: std::ptr::null_mut(),
    };
    // SAFETY: `pcap` is a live handle, `prog` a writable bpf_program, `text` NUL-terminated.
    let rc = unsafe { (lib.compile)(pcap, &mut prog, text.as_ptr(), 1, NETMASK_UNKNOWN) };
    let result = if rc != 0 {
        // SAFETY: pcap_geterr returns the handle's NUL-terminated error buffer.
        let msg = unsafe { CStr::from_ptr((lib.geterr)(pcap)) }
            .to_string_lossy()
            .into_owned();
        Err(bad(format!("{expr:?}: {msg}")))
    } else {
        let len = prog.bf_len as usize;
        let insns = if prog.bf_insns.is_null() || len == 0 {
            Vec::new()
        } else {
            // SAFETY: on success libpcap fills `bf_insns` with `bf_len` instructions.
            unsafe { std::slice::from_raw_parts(prog.bf_insns, len) }
                .iter()
                .map(|i| BpfInsn {
                    code: i.code,
                    jt: i.jt,
                    jf: i.jf,
                    k: i.k,
                })
                .collect()
        };
        // SAFETY: `prog` was filled by pcap_compile and is freed once.
        unsafe { (lib.freecode)(&mut prog) };
        if insns.is_empty() {
            Err(bad(format!("{expr:?}: libpcap returned an empty program")))
        } else {
            Ok(BpfProgram { insns })
        }
    };
    // SAFETY: `pcap` came from pcap_open_dead and is closed once.
    unsafe { (lib.close)(pcap) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_like_tcpdump_and_reports_syntax_errors() {
        // `tcpdump -ddd 'ip and udp'` on an Ethernet interface.
        let want = BpfProgram::parse(
            "6\n40 0 0 12\n21 0 3 2048\n48 0 0 23\n21 0 1 17\n6 0 0 262144\n6 0 0 0\n",
        )
        .unwrap();
        let got = compile("ip and udp", LinkType::Ethernet, 262_144).unwrap();
        assert_eq!(got, want);
        let raw = compile("udp port 53", LinkType::Raw, 262_144).unwrap();
        assert_ne!(raw.insns, got.insns);
        let err = compile("ip and and", LinkType::Ethernet, 262_144).unwrap_err();
        assert!(err.to_string().contains("syntax error"), "{err}");
        assert!(compile("ip\0", LinkType::Ethernet, 65_535).is_err());
    }
}
