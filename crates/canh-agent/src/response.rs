//! Process response: kill a process without racing pid reuse.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Start time of `pid` in clock ticks since boot (field 22 of `/proc/PID/stat`).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Sends SIGKILL to `pid` through a pidfd, after checking `start_time` when given.
///
/// The pidfd pins the process: once it is open, a check of `/proc/PID/stat` that matches
/// `start_time` proves the signal goes to the intended process and not to a reused pid.
pub fn kill_process(pid: u32, expected_start: Option<u64>) -> Result<(), String> {
    if pid <= 1 || pid == std::process::id() {
        return Err(format!("refusing to kill pid {pid}"));
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is shared.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(format!("pid {pid}: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    if let Some(expected) = expected_start
        && start_time(pid) != Some(expected)
    {
        return Err(format!("pid {pid} is no longer the process that was meant"));
    }
    // SAFETY: pidfd_send_signal with a valid pidfd, a signal number, a null siginfo and no
    // flags; the kernel reads nothing from our memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(format!("pid {pid}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_terminates_the_intended_child() {
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let st = start_time(pid).unwrap();
        kill_process(pid, Some(st)).unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn kill_refuses_a_mismatched_start_time() {
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let st = start_time(pid).unwrap();
        assert!(kill_process(pid, Some(st + 1)).is_err());
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn kill_refuses_init_and_itself() {
        assert!(kill_process(1, None).is_err());
        assert!(kill_process(std::process::id(), None).is_err());
    }
}
