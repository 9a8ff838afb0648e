//! The command line, in kubectl's conventions: `--kubeconfig`, `--context`, `-n`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-lucid",
    bin_name = "kubectl lucid",
    version,
    about = "Lucid services on Kubernetes: import docker-compose files, plan the rollout with no cluster, watch it live",
    after_help = "Examples:
  # Turn the phase compose files into Lucid resources in ./lucid (atomically)
  kubectl lucid import docker-compose.foundation.yml docker-compose.core.yml --env-dir configs/environment -o lucid

  # See the rollout order and what each service waits for, with no cluster
  kubectl lucid plan -f lucid

  # Apply, then wait until every phase is Ready (exit 1 if something is Degraded)
  kubectl apply -f lucid -n lucid && kubectl lucid status -n lucid --wait --timeout 10m"
)]
pub struct Cli {
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the cluster is, as kubectl takes it.
#[derive(Args, Debug, Clone, Default)]
pub struct KubeArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace (default: the context's namespace, else "default").
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    pub namespace: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Convert docker-compose files into LucidPhase, LucidService, ConfigMap and Secret manifests.
    #[command(
        after_help = "Exit codes: 0 everything carried over; 2 written, but some compose settings could not be carried over (listed per service on stderr); 1 nothing written (errors listed with file and key).

Examples:
  # Several files, merged as compose merges them; ${VAR} from the environment and .env
  kubectl lucid import docker-compose.foundation.yml docker-compose.core.yml -o lucid

  # The seeds' env_file paths (/mnt/myssd/...) looked up by file name in a local directory
  kubectl lucid import docker-compose.all.yml --env-dir configs/environment -o lucid

  # Straight to the cluster (Secret values are shown only when stdout is not a terminal)
  kubectl lucid import docker-compose.all.yml | kubectl apply -n lucid -f -"
    )]
    Import(ImportArgs),
    /// Show the rollout plan of manifests, with no cluster: phases in order and what each service waits for.
    #[command(
        after_help = "Exit codes: 0 the graph is sound; 1 it has errors (missing references, cycles), reported with the operator's own messages.

Examples:
  kubectl lucid plan -f lucid
  kubectl lucid plan -f lucid -o json
  # The graph as a picture, for reviews and docs
  kubectl lucid plan -f lucid -o svg > rollout.svg
  kubectl lucid plan -f lucid -o dot | dot -Tpng > rollout.png
  # The exact Deployments, Services, claims and NetworkPolicies the operator would create
  kubectl lucid plan -f lucid --render -n lucid"
    )]
    Plan(PlanArgs),
    /// Show the live rollout as a tree of phases and services.
    #[command(
        after_help = "Exit codes with --wait: 0 all Ready; 1 something Degraded; 3 timed out.

Examples:
  kubectl lucid status -n lucid
  kubectl lucid status -n lucid --watch
  kubectl lucid status -n lucid --wait --timeout 5m"
    )]
    Status(StatusArgs),
    /// Try a rolled-back update again, with no change to its spec.
    #[command(
        after_help = "An update that failed and was rolled back is not tried again until its spec (or a ConfigMap or Secret it reads) changes. When the cause was outside the spec (a registry that was down, a node that was full), this asks for another try: it sets the annotation lucid.io/retry on the LucidService. The spec is not touched.

Exit codes: 0 asked; 1 the service does not exist or the annotation could not be set.

Examples:
  kubectl lucid retry lucid-redis -n lucid
  kubectl lucid retry lucid-redis -n lucid && kubectl lucid status -n lucid --wait"
    )]
    Retry(RetryArgs),
    /// Serve a local, read-only web page of the live rollout graph.
    #[command(
        after_help = "The page is served by this process with your kubeconfig: nothing runs in the cluster. It binds loopback unless --address says otherwise, answers only requests addressed to it (Host header), and changes nothing.

Examples:
  kubectl lucid dashboard -n lucid
  kubectl lucid dashboard -n lucid --port 7070 --open"
    )]
    Dashboard(DashboardArgs),
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  source <(kubectl lucid completion bash)
  kubectl lucid completion zsh > \"${fpath[1]}/_kubectl-lucid\"
  kubectl lucid completion fish > ~/.config/fish/completions/kubectl-lucid.fish")]
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Compose files, merged in order as `docker-compose -f a -f b` merges them.
    #[arg(required = true, value_name = "COMPOSE_FILE")]
    pub files: Vec<PathBuf>,
    /// Find each env_file by its file name in this directory instead of at its path.
    #[arg(long, value_name = "DIR")]
    pub env_dir: Option<PathBuf>,
    /// The `.env` used for ${VAR} interpolation (default: .env beside the first file).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Write one file per object into this new directory, atomically (default: stdout).
    #[arg(short = 'o', long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Manifest files or directories (as written by `import -o`); `-` for stdin.
    #[arg(short = 'f', long = "filename", required = true, value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Print the objects the operator would create for each service instead of the plan.
    #[arg(long)]
    pub render: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

#[derive(Args, Debug)]
pub struct RetryArgs {
    /// The LucidService to try again.
    pub service: String,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Keep the tree on screen and redraw it on every change.
    #[arg(short = 'w', long, conflicts_with = "wait")]
    pub watch: bool,
    /// Wait until every phase and service is Ready (exit 0) or something is Degraded (exit 1).
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, e.g. 90s, 5m.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
}

#[derive(Args, Debug)]
pub struct DashboardArgs {
    /// The address to listen on. Anything but loopback lets others on the network see the
    /// namespace with your credentials.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: std::net::IpAddr,
    /// The port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Open the page in the desktop's browser.
    #[arg(long)]
    pub open: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Yaml,
    Json,
    /// The graph as Graphviz DOT (phases as clusters, `dependsOn` as edges).
    Dot,
    /// The graph drawn as SVG, laid out by phase and step (no Graphviz needed).
    Svg,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::import::duration_seconds(s)
        .map(|secs| std::time::Duration::from_secs(secs as u64))
        .ok_or_else(|| format!("{s:?} is not a duration like 90s or 5m"))
}
