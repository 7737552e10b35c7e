//! The ringress binary: command line, logging, start-up (refused while
//! another process listens on our addresses, unless upgrading), and the
//! signal loop (SIGHUP reloads, SIGUSR1 reopens log files, SIGTERM/SIGINT
//! drain and exit).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ringress::process_log::{self, LogSink};
use ringress::{Config, IoMode, ServerHandle, ServerOptions, instance};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `--version`: the crate's version and the library this build gzips small
/// whole bodies with at level 1 (build.rs), for benchmarks to record.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (whole-body gzip: ",
    env!("RINGRESS_WHOLE_GZIP"),
    ")"
);

/// A thread-per-core HTTP/1.1 reverse proxy on io_uring.
#[derive(Parser, Debug)]
#[command(name = "ringress", version = VERSION)]
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
    /// Start alongside a running ringress on the same listeners and take
    /// its admin listener over; then stop the old one with SIGTERM.
    #[arg(long)]
    upgrade: bool,
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
    // First of all: until a handler is installed, SIGUSR1 and SIGHUP kill
    // the process (their default action), and log rotation may send them
    // at any time.
    let signals = Signals::new([SIGHUP, SIGTERM, SIGINT, SIGUSR1]);

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
    if cli.check {
        for w in &config.warnings {
            eprintln!("  warning: {w}");
        }
        println!("{}: ok", cli.config.display());
        return ExitCode::SUCCESS;
    }
    let log = match process_log::install(&cli.log, &config.log) {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("ringress: cannot set up the process log: {e}");
            return ExitCode::from(1);
        }
    };
    huge_pages(cli.huge_pages);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringress: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let server = match start(&cli, config) {
        Ok(server) => server,
        Err(code) => return code,
    };
    serve_signals(&mut signals, server, &log, &cli)
}

/// Starts the workers (alongside a running process with `--upgrade`)
/// and the admin listener.
fn start(cli: &Cli, config: Config) -> Result<ServerHandle, ExitCode> {
    if let Err(refusal) = check_alone(&config, cli.upgrade) {
        eprintln!("ringress: {refusal}");
        return Err(ExitCode::from(1));
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
    let started = if cli.upgrade {
        ServerHandle::start_alongside(config, opts)
    } else {
        ServerHandle::start(config, opts)
    };
    let server = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringress: {e}");
            return Err(ExitCode::from(1));
        }
    };
    tracing::info!(
        workers = server.worker_count(),
        driver = server.drivers().first().copied().unwrap_or("none"),
        whole_gzip = ringress::compress::WHOLE_GZIP_BACKEND,
        listeners = ?listeners,
        pid = std::process::id(),
        "ringress started"
    );
    if let Some(bind) = admin {
        let started = if cli.upgrade {
            server.take_over_admin(bind, cli.config.clone())
        } else {
            server.start_admin(bind, cli.config.clone())
        };
        match started {
            Ok(addr) => tracing::info!(bind = %addr, "admin listener started"),
            Err(e) => {
                eprintln!("ringress: cannot start the admin listener on {bind}: {e}");
                server.shutdown();
                return Err(ExitCode::from(1));
            }
        }
    }
    Ok(server)
}

/// Reloads on SIGHUP, reopens the logs on SIGUSR1, drains and exits on
/// SIGTERM or SIGINT.
fn serve_signals(
    signals: &mut Signals,
    server: ServerHandle,
    log: &LogSink,
    cli: &Cli,
) -> ExitCode {
    for signal in signals.forever() {
        match signal {
            SIGHUP => reload(&server, &cli.config),
            SIGUSR1 => reopen_logs(&server, log),
            _ => {
                tracing::info!("draining");
                server.shutdown();
                // The workers' last lines, handed to the log's writer.
                log.flush(Duration::from_secs(2));
                tracing::info!("stopped");
                return ExitCode::SUCCESS;
            }
        }
    }
    ExitCode::SUCCESS
}

/// Refuses to start while another process listens on one of our
/// addresses (the listeners' and the admin one): SO_REUSEPORT would let
/// both run and split the connections between them. `--upgrade` starts
/// alongside on purpose.
fn check_alone(config: &Config, upgrade: bool) -> Result<(), String> {
    let mut addrs: Vec<_> = config.listeners.iter().map(|l| l.bind).collect();
    addrs.extend(config.admin.bind);
    let Some(in_use) = instance::find_in_use(&addrs) else {
        if upgrade {
            tracing::info!("--upgrade: no running instance found, starting normally");
        }
        return Ok(());
    };
    if upgrade {
        // Checked before binding anything: once our listeners are up they
        // take every new connection, and giving up then would reset the
        // ones queued on them.
        for addr in addrs.iter().filter(|a| a.port() != 0) {
            instance::can_join(*addr).map_err(|e| {
                format!(
                    "--upgrade: cannot listen on {addr} alongside the running process: {e} \
                     (its socket lacks SO_REUSEPORT, or another user owns it)"
                )
            })?;
        }
        tracing::info!("upgrade: starting alongside, {in_use}");
        return Ok(());
    }
    Err(format!(
        "{in_use}; is another ringress running? Stop it first, or start this one \
         with --upgrade to replace it without dropping connections"
    ))
}

/// SIGHUP: reads the config file again and publishes it.
fn reload(server: &ServerHandle, path: &std::path::Path) {
    let loaded = Config::from_file(path)
        .inspect(|c| {
            for w in &c.warnings {
                tracing::warn!("{w}");
            }
        })
        .inspect_err(|_| server.reload_failed());
    match loaded.and_then(|c| server.reload(c)) {
        Ok(generation) => tracing::info!(generation, "config reloaded"),
        Err(errors) => {
            tracing::error!("reload rejected, keeping the running config:");
            for e in &errors.0 {
                tracing::error!("  {e}");
            }
        }
    }
}

/// SIGUSR1: reopens the process log file and the access log, so lines go
/// to new files after logrotate moved the old ones. Never stops the
/// process: a file that cannot be opened keeps the old one in use.
fn reopen_logs(server: &ServerHandle, log: &LogSink) {
    match log.reopen() {
        Ok(()) => {
            if let Some(path) = log.path() {
                tracing::info!(path = %path.display(), "process log reopened");
            }
        }
        Err(error) => {
            tracing::error!(%error, "cannot reopen the process log, keeping the old file")
        }
    }
    server.reopen_logs();
}
