//! The process's own figures under the names every Prometheus client uses (`process_*`), so
//! the usual dashboards and alerts work. Read from `/proc/self` at each scrape; on a system
//! without `/proc` they are left out.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// What `/proc/self` says now.
#[derive(Debug, Default, PartialEq)]
struct Figures {
    cpu_seconds: f64,
    start_time_seconds: i64,
    threads: i64,
    virtual_bytes: i64,
    resident_bytes: i64,
    open_fds: i64,
    max_fds: Option<i64>,
}

/// Registers the figures in `r`; `now` is the server's clock (Unix seconds), from which the
/// start time is worked out.
pub fn register(r: &mut Registry, now: i64) {
    let Some(f) = read(now) else { return };
    let cpu = Counter::<f64, std::sync::atomic::AtomicU64>::default();
    cpu.inc_by(f.cpu_seconds);
    r.register_with_unit(
        "process_cpu",
        "User and system CPU time spent",
        Unit::Seconds,
        cpu,
    );
    let gauges = [
        (
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch",
            f.start_time_seconds,
        ),
        ("process_threads", "Threads of the process", f.threads),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size",
            f.virtual_bytes,
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size",
            f.resident_bytes,
        ),
        ("process_open_fds", "Open file descriptors", f.open_fds),
    ];
    for (name, help, v) in gauges {
        let g = Gauge::<i64>::default();
        g.set(v);
        r.register(name, help, g);
    }
    if let Some(max) = f.max_fds {
        let g = Gauge::<i64>::default();
        g.set(max);
        r.register(
            "process_max_fds",
            "The soft limit on open file descriptors",
            g,
        );
    }
}

fn read(now: i64) -> Option<Figures> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
    let mut f = parse_stat(
        &stat,
        now as f64,
        uptime.split_whitespace().next()?.parse().ok()?,
    )?;
    f.open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
    f.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| parse_max_fds(&l));
    Some(f)
}

/// Clock ticks per second: Linux reports 100 to user space on every architecture it runs on
/// (`USER_HZ`), whatever the kernel's own tick rate.
const TICKS: f64 = 100.0;
const PAGE: i64 = 4096;

/// `/proc/self/stat` (proc(5)): the fields after the command name, which is in parentheses
/// and may itself hold spaces and parentheses.
fn parse_stat(stat: &str, now: f64, uptime: f64) -> Option<Figures> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); field n is at index n - 3.
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    let utime = field(14)?;
    let stime = field(15)?;
    let threads = field(20)?;
    let starttime = field(22)?;
    let vsize = field(23)?;
    let rss = field(24)?;
    Some(Figures {
        cpu_seconds: (utime + stime) / TICKS,
        start_time_seconds: (now - uptime + starttime / TICKS) as i64,
        threads: threads as i64,
        virtual_bytes: vsize as i64,
        resident_bytes: rss as i64 * PAGE,
        open_fds: 0,
        max_fds: None,
    })
}

fn parse_max_fds(limits: &str) -> Option<i64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stat_line_is_read_past_a_command_name_with_spaces_and_parentheses() {
        // proc(5): pid (comm) state ppid ... utime(14) stime(15) ... num_threads(20)
        // itrealvalue(21) starttime(22) vsize(23) rss(24) ...
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 1000 \
                    104857600 2560 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let f = parse_stat(stat, 10_000.0, 500.0).unwrap();
        assert_eq!(f.cpu_seconds, 3.0);
        assert_eq!(f.threads, 7);
        assert_eq!(f.start_time_seconds, 10_000 - 500 + 10);
        assert_eq!(f.virtual_bytes, 104_857_600);
        assert_eq!(f.resident_bytes, 2560 * 4096);
    }

    #[test]
    fn the_open_files_limit_is_the_soft_one() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
    }

    #[test]
    fn this_process_reads_its_own_figures() {
        let f = read(1_800_000_000).expect("/proc/self");
        assert!(
            f.resident_bytes > 0 && f.threads >= 1 && f.open_fds >= 3,
            "{f:?}"
        );
    }
}
