//! The release `webhook-host` binary started for a benchmark, and its memory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts the host with `config` (TOML), plugins from `dir/plugins`, data in
/// `dir/<data>`, on PostgreSQL when `database_url` is given (else SQLite);
/// returns it and where it listens.
pub fn start(dir: &Path, config: &str, data: &str, database_url: Option<&str>) -> (Child, SocketAddr) {
    let file = dir.join(format!("{data}.toml"));
    std::fs::write(&file, config).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_webhook-host"));
    command
        .arg("--config")
        .arg(&file)
        .arg("serve")
        .env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("DATA_DIR", dir.join(data))
        .env("PLUGINS_DIR", dir.join("plugins"))
        .env("FAL_WEBHOOK_SECRET", super::loadgen::SECRET)
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // Lets a run try the host with another number of runtime threads.
    if let Ok(threads) = std::env::var("TOKIO_WORKER_THREADS") {
        command.env("TOKIO_WORKER_THREADS", threads);
    }
    // And with other allocator tunables (glibc's, for the host alone).
    if let Ok(tunables) = std::env::var("HOST_GLIBC_TUNABLES") {
        command.env("GLIBC_TUNABLES", tunables);
    }
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the host exited").unwrap();
        if let Some(addr) = line.strip_prefix("webhook-host listening on http://") {
            break addr.parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// Resident memory of a process, MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// CPU time (user + system) a process has used so far, seconds.
#[allow(dead_code)]
pub fn cpu_secs(pid: u32) -> f64 {
    stat_cpu_secs(&format!("/proc/{pid}/stat"))
}

/// utime + stime of a `/proc/…/stat` file, seconds.
fn stat_cpu_secs(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at 3;
    // utime and stime are the 14th and 15th, in clock ticks.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / per_sec
}

/// CPU time used so far by every process named `name` (all PostgreSQL
/// backends, say), seconds. A process that exits in between takes its
/// share with it, so measure across connections that stay open.
#[allow(dead_code)]
pub fn cpu_secs_of_all(name: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == name)
        })
        .map(cpu_secs)
        .sum()
}

/// CPU time the calling thread has used, seconds.
#[allow(dead_code)]
pub fn thread_cpu_secs() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

/// CPU time used so far by this process's threads named `name`, seconds.
#[allow(dead_code)]
pub fn threads_cpu_secs(name: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|tid| {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                .is_ok_and(|comm| comm.trim() == name)
        })
        .map(|tid| stat_cpu_secs(&format!("/proc/self/task/{tid}/stat")))
        .sum()
}

/// `perf record` of process `pid` into the file named by the environment
/// variable `variable`, when that is set, until the guard is dropped.
#[allow(dead_code)]
pub fn profile(variable: &str, pid: u32) -> Option<Profile> {
    let file = std::env::var(variable).ok()?;
    let child = Command::new("perf")
        .args([
            "record",
            "-F",
            "997",
            "--call-graph",
            "dwarf,16384",
            "-o",
            &file,
            "-p",
        ])
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    Some(Profile(child))
}

/// A running `perf record`; stopped (SIGINT, so it writes its file) on drop.
pub struct Profile(Child);

impl Drop for Profile {
    fn drop(&mut self) {
        // SAFETY: kill sends a signal to the child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let _ = self.0.wait();
    }
}
