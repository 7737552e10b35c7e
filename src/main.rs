//! The ringress binary: command line, logging, start-up, and the signal
//! loop (SIGHUP reloads, SIGTERM/SIGINT drain and exit).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ringress::{Config, IoMode, ServerHandle, ServerOptions};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A thread-per-core HTTP/1.1 reverse proxy on io_uring.
#[derive(Parser, Debug)]
#[command(name = "ringress", version)]
struct Cli {
    /// Config file (TOML).
    #[arg(short, long, default_value = "config/ringress.toml")]
    config: PathBuf,
    /// Worker threads (default: [runtime] threads, else one per core).
    #[arg(short, long)]
    threads: Option<usize>,
    /// Do not pin workers to cores.
    #[arg(long)]
    no_pin: bool,
    /// I/O driver: auto, io_uring or epoll.
    #[arg(long, value_parser = parse_io)]
    io: Option<IoMode>,
    /// Validate the config, print every problem, and exit.
    #[arg(long)]
    check: bool,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, default_value = "info")]
    log: String,
    /// Let the heap use transparent huge pages (see the README).
    #[arg(long)]
    huge_pages: bool,
}

fn parse_io(s: &str) -> Result<IoMode, String> {
    IoMode::parse(s).ok_or_else(|| format!("`{s}` is not one of auto, io_uring, epoll"))
}

/// Turns transparent huge pages off for the process as it is loaded,
/// before the first heap allocation. mimalloc asks for them on its heap,
/// and the kernel then backs sparse 2 MiB regions with whole huge pages:
/// with 10,000 idle connections resident memory grew from 0.4 to 1.9-2.9
/// KiB per connection over ten seconds, for about 1.5% less CPU per
/// request under load. nginx and HAProxy (glibc malloc) get no huge pages
/// either. It has to happen this early: the flag stops later faults from
/// getting huge pages, but the allocations made before `main` (the
/// runtime's, then the command line's) already had two of them, 4 MiB of
/// mostly empty heap, which made idle memory 9.9 MiB instead of 6.3 and
/// the per-connection figure depend on how much of them start-up had used.
/// Runs from `.init_array` with priority 101: after the standard
/// library's 99 (which only records argv) and before every constructor
/// without a priority, so before anything allocates.
// SAFETY: an `.init_array` entry must be a function the loader may call
// with (argc, argv, envp) before `main`; this one matches that signature,
// touches no Rust runtime state, does not allocate and cannot unwind.
#[used]
#[unsafe(link_section = ".init_array.00101")]
static TURN_OFF_HUGE_PAGES: extern "C" fn(
    libc::c_int,
    *const *const libc::c_char,
    *const *const libc::c_char,
) = turn_off_huge_pages;

extern "C" fn turn_off_huge_pages(
    _argc: libc::c_int,
    _argv: *const *const libc::c_char,
    _envp: *const *const libc::c_char,
) {
    // A failure (a kernel without the flag) leaves huge pages as they
    // were; `main` reports it.
    let _ = ringress::set_huge_pages_disabled(true);
}

/// `--huge-pages`: gives the heap back the huge pages turned off at load.
/// Otherwise checks that they are off and says so in the debug log if not.
fn huge_pages(allow: bool) {
    let result = if allow {
        ringress::set_huge_pages_disabled(false)
    } else {
        match ringress::huge_pages_disabled() {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::debug!("transparent huge pages are on: turning them off failed");
                return;
            }
            Err(e) => Err(e),
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "cannot set transparent huge pages as asked");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    huge_pages(cli.huge_pages);

    let config = match Config::from_file(&cli.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{}: {} problem(s):", cli.config.display(), errors.0.len());
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            return ExitCode::from(2);
        }
    };
    for w in &config.warnings {
        if cli.check {
            eprintln!("  warning: {w}");
        } else {
            tracing::warn!("{w}");
        }
    }
    if cli.check {
        println!("{}: ok", cli.config.display());
        return ExitCode::SUCCESS;
    }
    let admin = config.admin.bind;
    let listeners: Vec<String> = config
        .listeners
        .iter()
        .map(|l| format!("{}={}", l.name, l.bind))
        .collect();
    let opts = ServerOptions {
        threads: cli.threads,
        pin: cli.no_pin.then_some(false),
        io: cli.io,
        release_memory: Some(ringress::release_memory),
    };
    let signals = Signals::new([SIGHUP, SIGTERM, SIGINT]);
    let server = match ServerHandle::start(config, opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringress: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(
        workers = server.worker_count(),
        driver = server.drivers().first().copied().unwrap_or("none"),
        listeners = ?listeners,
        "ringress started"
    );
    if let Some(bind) = admin {
        match server.start_admin(bind, cli.config.clone()) {
            Ok(addr) => tracing::info!(bind = %addr, "admin listener started"),
            Err(e) => {
                eprintln!("ringress: cannot start the admin listener on {bind}: {e}");
                server.shutdown();
                return ExitCode::from(1);
            }
        }
    }
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringress: cannot install signal handlers: {e}");
            server.shutdown();
            return ExitCode::from(1);
        }
    };
    for signal in signals.forever() {
        if signal == SIGHUP {
            let loaded = Config::from_file(&cli.config).inspect(|c| {
                for w in &c.warnings {
                    tracing::warn!("{w}");
                }
            });
            match loaded.and_then(|c| server.reload(c)) {
                Ok(generation) => tracing::info!(generation, "config reloaded"),
                Err(errors) => {
                    tracing::error!("reload rejected, keeping the running config:");
                    for e in &errors.0 {
                        tracing::error!("  {e}");
                    }
                }
            }
        } else {
            tracing::info!("draining");
            server.shutdown();
            tracing::info!("stopped");
            return ExitCode::SUCCESS;
        }
    }
    ExitCode::SUCCESS
}
