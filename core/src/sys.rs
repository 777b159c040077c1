//! The one operating-system helper shared by the server and the tools:
//! raising the open-files limit (every client connection takes a
//! descriptor).

/// Raises `RLIMIT_NOFILE` and returns the soft limit in force afterwards.
///
/// - `None`: the soft limit is raised to the hard limit (what the server
///   does at start; the hard limit is the operator's, e.g. systemd's
///   `LimitNOFILE`).
/// - `Some(want)`: soft and hard are raised to `want` (capped by
///   `/proc/sys/fs/nr_open`) when the process may (root), else the soft
///   limit is raised as far as the hard limit allows (the load generator).
pub fn raise_nofile_limit(want: Option<u64>) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        let target = match want {
            None => lim.rlim_max,
            Some(w) => {
                let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(1 << 20);
                w.min(nr_open) as libc::rlim_t
            }
        };
        if lim.rlim_cur >= target {
            return lim.rlim_cur;
        }
        if target > lim.rlim_max {
            let up = libc::rlimit {
                rlim_cur: target,
                rlim_max: target,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &up) == 0 {
                return target;
            }
        }
        let soft = libc::rlimit {
            rlim_cur: lim.rlim_max.min(target),
            rlim_max: lim.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0 {
            soft.rlim_cur
        } else {
            lim.rlim_cur
        }
    }
}
