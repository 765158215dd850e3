//! The `chatsdk` binary: parses the command line, sets up logging, runs a node until SIGTERM or
//! SIGINT, then drains it. Everything else lives in the `chatsdk_node` library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use chatsdk_node::cli;
use chatsdk_node::config::{self, Config};
use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's allocator: the write path allocates many small, short-lived
/// buffers across threads, where glibc's arenas spent ~18 % of a durable send's CPU in
/// malloc/free and chunk consolidation (perf, `chatsdk-bench durable`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "chatsdk",
    version,
    about = "A self-hosted chat backend in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a node (a one-node cluster unless --join is given).
    Serve(ServeArgs),
    /// Shows the cluster as the admin API sees it: nodes, shards, leaders.
    Status(AdminArgs),
    /// Cluster operations: join tokens.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Node operations: drain, remove.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Mints tokens for a user with a server API key (creates the user if needed).
    Token {
        /// The user's id.
        #[arg(long)]
        user: String,
        /// The user's display name (set when the user is created or updated).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        remote: UrlArg,
        /// A server API key of the app (also CHATSDK_API_KEY).
        #[arg(long, env = "CHATSDK_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
    },
    /// Saves an online, consistent backup of a running node into a file (admin key).
    Backup {
        /// Where to write it (written as <file>.partial, renamed once complete and checked).
        file: PathBuf,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Restores a backup into a new data directory; `serve --data-dir` then starts the node.
    Restore {
        /// A file written by `chatsdk backup`.
        file: PathBuf,
        /// The data directory to create (must not exist, or be empty).
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Prints the version.
    Version,
}

#[derive(clap::Args)]
struct UrlArg {
    /// Base URL of a node of the cluster (also CHATSDK_URL).
    #[arg(long, env = "CHATSDK_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
}

#[derive(clap::Args)]
struct AdminArgs {
    #[command(flatten)]
    remote: UrlArg,
    /// The admin key, `server.admin_api_key` of the node (also CHATSDK_ADMIN_KEY).
    #[arg(long, env = "CHATSDK_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
}

impl AdminArgs {
    fn remote(&self) -> cli::Remote {
        cli::Remote {
            url: self.remote.url.clone(),
            key: self.admin_key.clone(),
        }
    }
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Mints a join token for `serve --join-token` (shown once; it expires).
    JoinToken {
        /// Seconds it admits nodes for (at most a week).
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// Spent by the first node that joins with it.
        #[arg(long)]
        single_use: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Replaces the cluster CA: nodes renew under a new one, and what the old one signs is
    /// refused once they all have (a node removal does this by itself).
    RotateCa {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Replaces the secret user tokens are signed with (after a node, its disk or a backup may
    /// have been copied): tokens signed with the old one pass for the grace period only.
    RotateTokenSecret {
        /// Seconds tokens signed with the old secret stay valid (default: the access token
        /// lifetime; at most 30 days).
        #[arg(long)]
        grace: Option<u64>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Drains a node: readiness off, its realtime clients asked to reconnect elsewhere.
    Drain {
        /// The node's id (see `chatsdk status`).
        id: u64,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Removes a node: its replicas move to the others, then it leaves the cluster.
    Remove {
        /// The node's id (see `chatsdk status`).
        id: u64,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (also CHATSDK_CONFIG).
    #[arg(long, env = "CHATSDK_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides server.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// HTTP address for REST and WebSocket (overrides server.http).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// UDP port of the realtime QUIC endpoint, on the IP of --http (overrides quic.port).
    #[arg(long)]
    quic_port: Option<u16>,
    /// Node-to-node QUIC address (overrides cluster.addr).
    #[arg(long)]
    cluster_addr: Option<SocketAddr>,
    /// A node of the cluster to join, host:port (overrides cluster.join; with --join-token,
    /// or cluster.join_token_url in the config).
    #[arg(long)]
    join: Option<config::PeerAddr>,
    /// Join token printed by a node of the cluster.
    #[arg(long, requires = "join")]
    join_token: Option<String>,
    /// Dev mode: seed the demo app and print ready-to-use credentials.
    #[arg(long)]
    dev: bool,
    /// Let a node whose --join names itself create a new cluster when its data directory is
    /// empty (sets cluster.bootstrap; for the first start of a cluster).
    #[arg(long)]
    bootstrap: bool,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Prints the effective configuration (file, environment, flags and defaults), with
    /// secrets redacted unless --show-secrets is given.
    Print {
        #[command(flatten)]
        args: ServeArgs,
        /// Print secrets (admin key, join token) as they are.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Checks a configuration (file, `CHATSDK_` variables and `serve` flags) without starting
    /// anything; exits non-zero with the reason when `serve` would refuse it.
    Check(ServeArgs),
}

fn effective(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut c = config::load_from_process(args.config.as_deref())?;
    if let Some(d) = &args.data_dir {
        c.server.data_dir = d.clone();
    }
    if let Some(a) = args.http {
        c.server.http = a;
    }
    if let Some(p) = args.quic_port {
        c.quic.port = p;
    }
    if let Some(a) = args.cluster_addr {
        c.cluster.addr = a;
    }
    if let Some(join) = &args.join {
        c.cluster.join = Some(join.clone());
        if args.join_token.is_some() {
            c.cluster.join_token = args.join_token.clone();
        }
    }
    if args.dev {
        c.server.dev = true;
    }
    if args.bootstrap {
        c.cluster.bootstrap = true;
    }
    c.validate()?;
    Ok(c)
}

/// Runs a client command on a small runtime and prints what it returns.
fn remote<F>(work: F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = Result<String, cli::CliError>>,
{
    let out = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(work)?;
    print!("{out}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("chatsdk {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Print { args, show_secrets },
        } => {
            let c = effective(&args)?;
            let shown = if show_secrets { c } else { c.redacted() };
            print!("{}", shown.to_toml()?);
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check(args),
        } => {
            let c = effective(&args)?;
            println!(
                "configuration ok: http {}, cluster {}, data in {}{}",
                c.server.http,
                c.cluster.addr,
                c.server.data_dir.display(),
                match &c.cluster.join {
                    Some(j) => format!(", joins {j}"),
                    None => String::new(),
                }
            );
            Ok(())
        }
        Command::Backup { file, admin } => {
            let r = admin.remote();
            remote(async move { cli::backup(&r, &file).await })
        }
        Command::Restore { file, data_dir } => {
            remote(async move { cli::restore(&file, &data_dir).await })
        }
        Command::Status(admin) => {
            let r = admin.remote();
            remote(async move { cli::status(&r).await })
        }
        Command::Cluster {
            command:
                ClusterCommand::JoinToken {
                    ttl,
                    single_use,
                    admin,
                },
        } => {
            let r = admin.remote();
            remote(async move {
                let (token, note) = cli::join_token(&r, ttl, single_use).await?;
                eprint!("{note}");
                Ok(token)
            })
        }
        Command::Cluster {
            command: ClusterCommand::RotateCa { admin },
        } => {
            let r = admin.remote();
            remote(async move { cli::rotate_ca(&r).await })
        }
        Command::Cluster {
            command: ClusterCommand::RotateTokenSecret { grace, admin },
        } => {
            let r = admin.remote();
            remote(async move { cli::rotate_token_secret(&r, grace).await })
        }
        Command::Node { command } => match command {
            NodeCommand::Drain { id, admin } => {
                let r = admin.remote();
                remote(async move { cli::drain_node(&r, id).await })
            }
            NodeCommand::Remove { id, admin } => {
                let r = admin.remote();
                remote(async move { cli::remove_node(&r, id).await })
            }
        },
        Command::Token {
            user,
            name,
            remote: url,
            api_key,
        } => {
            let r = cli::Remote {
                url: url.url,
                key: api_key,
            };
            remote(async move { cli::token(&r, &user, name.as_deref()).await })
        }
        Command::Serve(args) => {
            // Validated before any port is bound.
            let c = effective(&args)?;
            chatsdk_node::logging::init(&c.log);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(serve(c))
        }
    }
}

/// The exit status of a node stopped by a storage failure (`EX_IOERR`).
const EXIT_STORAGE_FAILED: i32 = 74;

async fn serve(c: Config) -> anyhow::Result<()> {
    // Listened for before anything starts: a SIGTERM that arrives while the node starts (or
    // just after it printed its banner) drains it instead of killing it.
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    chatsdk_storage::fatal::on_failure(|why| {
        let line = format!(
            "storage failed ({why}): the node stops now (after a failed write or fsync the disk and the page cache may disagree); restart it to recover from what is on disk and catch up from its peers"
        );
        tracing::error!("{line}");
        eprintln!("chatsdk: {line}");
        std::process::exit(EXIT_STORAGE_FAILED);
    });
    let node = chatsdk_node::start(&c).await.context("starting the node")?;
    let (scheme, ws) = if node.https {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    let base = format!("{scheme}://{}", node.http);
    println!(
        "chatsdk {} listening on {base} (data in {})",
        env!("CARGO_PKG_VERSION"),
        c.server.data_dir.display()
    );
    if let Some((app, key)) = &node.credentials.default_app {
        println!("default app {app}\nserver API key (shown once): {key}");
    }
    if let Some(dev) = &node.credentials.dev {
        println!(
            "dev mode: demo app {} with users user-1 (Alice), user-2 (Bob), user-3 (Carol)",
            dev.app_id
        );
        println!("  server API key (shown once): {}", dev.api_key);
        println!("  token for user-1: {}", dev.token);
        println!("  realtime token for user-1: {}", dev.ws_token);
        println!(
            "  try: curl -H 'Authorization: Bearer {}' {base}/api/channels/{}/messages",
            dev.token, dev.channel_id
        );
        println!("  realtime: {ws}://{}/connection/websocket", node.http);
        println!("  demo chat page (Alice, Bob and Carol): {base}/demo");
        if node.quic.is_some() {
            println!(
                "  the QUIC endpoint's self-signed certificate: {}",
                c.server
                    .data_dir
                    .join("tls")
                    .join("quic-cert.pem")
                    .display()
            );
        }
    }
    if let Some(q) = node.quic {
        println!("realtime over QUIC on udp {q} (ALPN chatsdk)");
    }
    let cluster = node.chat.cluster();
    println!(
        "node {} of cluster {}, node-to-node on udp {}",
        cluster.id(),
        cluster.cluster_id(),
        cluster.addr()
    );
    println!("metrics: {base}/metrics");
    if c.server.admin_api_key.is_some() {
        println!("admin API: {base}/admin (see `chatsdk status`), console: {base}/console");
    }
    println!("join tokens for more nodes: `chatsdk cluster join-token` (admin key; they expire)");
    wait_for_signal(term).await?;
    println!("draining");
    node.shutdown().await;
    Ok(())
}

async fn wait_for_signal(mut term: tokio::signal::unix::Signal) -> anyhow::Result<()> {
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    Ok(())
}
